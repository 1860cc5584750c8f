"""calibration.json: the fitted method, its threshold and the evidence for both.

The file is checked in full when it is read, and every problem is reported as a
CalibrationError naming the file, because a bundle with a bad calibration must be refused at
start-up, not discovered on the first request. Writing goes through the same checks and an
atomic rename, so a server never reads a half-written file and we never write one we would refuse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smallguard.server.calibration.binary import BINARY_METHODS, BinaryCalibrator
from smallguard.server.calibration.checks import CalibrationError
from smallguard.server.calibration.methods import METHODS, Calibrator, load_method
from smallguard.server.calibration.threshold import ThresholdChoice
from smallguard.server.jsonfile import read_json, write_atomically

FORMAT = 1
EVALUATED_ON = "test split (never used for fitting)"
_REQUIRED = ("format", "method", "params", "threshold", "fitted_at", "fit_samples", "metrics", "guarantee")
_FIELD_REQUIRED = ("method", "params", "threshold", "metrics", "guarantee")


@dataclass(frozen=True, slots=True)
class FieldCalibration:
    """One extracted field's map from raw score to P(value exactly right), and its own threshold."""

    method: str
    calibrator: BinaryCalibrator
    threshold: float
    metrics: Mapping[str, Any]
    guarantee: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A loaded calibration.json: the calibrator to apply and the threshold it certifies.

    An extractor's file also has ``fields``: one FieldCalibration per field; its top-level
    method is then a binary map applied to the document score (the product of the calibrated
    field confidences), and its threshold is the document's.
    """

    method: str
    params: Mapping[str, Any]
    calibrator: Calibrator
    threshold: float
    metrics: Mapping[str, Any]
    guarantee: Mapping[str, Any]
    fitted_at: str
    fit_samples: int
    raw: Mapping[str, Any]
    fields: Mapping[str, FieldCalibration] = field(default_factory=dict)


def load_calibration(path: str | Path) -> Calibration:
    """Read and check a calibration file; raise CalibrationError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError("calibration file does not exist", path)
    document = read_json(path, CalibrationError)
    try:
        return parse_calibration(document)
    except CalibrationError as exc:
        raise CalibrationError(exc.problem, path) from None


def parse_calibration(document: Any) -> Calibration:
    """Check a decoded calibration document (no file involved)."""
    if not isinstance(document, dict):
        raise CalibrationError(f"expected a JSON object at the top level, got {type(document).__name__}")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise CalibrationError(f"missing key(s): {', '.join(missing)}")
    if document["format"] != FORMAT or isinstance(document["format"], bool):
        raise CalibrationError(f"format {document['format']!r} is not supported; this version reads format {FORMAT}")
    fields = _fields(document.get("fields", {}))
    method, params = document["method"], document["params"]
    calibrator = _calibrator(document, "", BINARY_METHODS if fields else METHODS)
    threshold = _threshold(document, "")
    fitted_at = document["fitted_at"]
    if not isinstance(fitted_at, str) or not _is_iso_datetime(fitted_at):
        raise CalibrationError(f"'fitted_at' must be an ISO-8601 date and time, got {fitted_at!r}")
    fit_samples = document["fit_samples"]
    if not isinstance(fit_samples, int) or isinstance(fit_samples, bool) or fit_samples < 1:
        raise CalibrationError(f"'fit_samples' must be a whole number >= 1, got {fit_samples!r}")
    _objects(document, "", ("metrics", "guarantee"))
    return Calibration(
        method=method,
        params=dict(params),
        calibrator=calibrator,
        threshold=float(threshold),
        metrics=document["metrics"],
        guarantee=document["guarantee"],
        fitted_at=fitted_at,
        fit_samples=fit_samples,
        raw=document,
        fields=fields,
    )


def _fields(section: Any) -> dict[str, FieldCalibration]:
    """An extractor's per-field calibrations: binary maps only (a field has one score, not classes)."""
    if not isinstance(section, dict):
        raise CalibrationError(f"'fields' must be an object of field name -> calibration, got {section!r}")
    fields = {}
    for name, entry in section.items():
        where = f"fields.{name}."
        if not isinstance(entry, dict):
            raise CalibrationError(f"'fields.{name}' must be an object, got {entry!r}")
        missing = [key for key in _FIELD_REQUIRED if key not in entry]
        if missing:
            raise CalibrationError(f"'fields.{name}' is missing key(s): {', '.join(missing)}")
        _objects(entry, where, ("metrics", "guarantee"))
        fields[name] = FieldCalibration(entry["method"], _calibrator(entry, where, BINARY_METHODS),
                                        _threshold(entry, where), entry["metrics"], entry["guarantee"])
    return fields


def _calibrator(entry: Mapping[str, Any], where: str, allowed: Mapping[str, Any]) -> Any:
    method, params = entry["method"], entry["params"]
    if not isinstance(method, str):
        raise CalibrationError(f"'{where}method' must be a string, got {method!r}")
    if not isinstance(params, dict):
        raise CalibrationError(f"'{where}params' must be an object, got {params!r}")
    if method in METHODS and method not in allowed:
        raise CalibrationError(f"'{where}method': {method!r} cannot calibrate a single score; an extractor's "
                               f"fields and document use one of {', '.join(sorted(allowed))}")
    try:
        return load_method(method, params)
    except CalibrationError as exc:
        part = "params" if method in METHODS else "method"
        raise CalibrationError(f"'{where}{part}': {exc.problem}") from None


def _threshold(entry: Mapping[str, Any], where: str) -> float:
    threshold = entry["threshold"]
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        raise CalibrationError(f"'{where}threshold' must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _objects(entry: Mapping[str, Any], where: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not isinstance(entry[key], dict):
            raise CalibrationError(f"'{where}{key}' must be an object, got {entry[key]!r}")


def write_calibration(
    path: str | Path,
    calibrator: Calibrator,
    choice: ThresholdChoice,
    *,
    fit_samples: int,
    before: Mapping[str, float],
    after: Mapping[str, float],
    evaluated_samples: int,
    test: Mapping[str, Any] | None = None,
    evaluated_on: str = EVALUATED_ON,
    fitted_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write calibration.json atomically and return the document written.

    ``before``/``after`` are metric summaries on data the fit never saw (``evaluated_on``);
    ``test`` is the realised coverage and risk at the threshold on that data; ``extra`` adds
    top-level keys (checked like the rest before anything is written).
    """
    path = Path(path)
    when = (fitted_at or datetime.now(UTC)).astimezone(UTC)
    document: dict[str, Any] = {
        "format": FORMAT,
        "method": calibrator.name,
        "params": calibrator.to_params(),
        "fitted_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "fit_samples": int(fit_samples),
        "metrics": {
            "evaluated_on": evaluated_on,
            "samples": int(evaluated_samples),
            "before": {k: float(v) for k, v in before.items()},
            "after": {k: float(v) for k, v in after.items()},
        },
        "threshold": choice.threshold,
        "guarantee": choice.guarantee(),
    }
    if test is not None:
        document["test"] = dict(test)
    document.update(extra or {})  # e.g. "procedure" (how it was fitted), an extractor's "fields"
    try:
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"cannot be written: {exc}", path) from None
    try:
        parse_calibration(json.loads(text))
    except CalibrationError as exc:
        raise CalibrationError(f"refusing to write an invalid calibration: {exc.problem}", path) from None
    write_atomically(path, text)
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_iso_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
