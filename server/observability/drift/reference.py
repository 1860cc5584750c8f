"""reference.json: what "normal" looked like, from the calibration data, for the drift monitor.

Written by ``smallguard calibrate`` next to calibration.json, from the same labelled data
(every example of ``--data``: its inputs, and its confidence through the calibration just fitted):

- ``confidence``: the calibrated confidence's decile bin edges and the share of examples in each bin;
- ``decisions``: the share of ANSWER, ABSTAIN and ESCALATE that the threshold rule gives on that data
  (confidence below the threshold -> the policy's ``on_low_confidence``). Verifiers are *not* run:
  they read the request's context, which labelled data does not carry, so the reference rates are
  the confidence rule's alone and live verifier escalations count as a rise above them;
- ``inputs``: per tensor input, each feature's decile edges and proportions (one pooled row when the
  tensor has a variable shape or more than ``MAX_FEATURES`` elements); per text input, the length's
  decile edges and proportions and the character-class mix (letters, digits, spaces, punctuation
  and symbols, other) pooled over all characters.

The file is checked in full when it is read (and before it is written): a malformed one refuses the
bundle at start-up with a message naming the file and the key. Bins are described in ``psi.py``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from smallguard.server.domain.bundle_spec import BundleSpec, InputSpec
from smallguard.server.domain.errors import GuardError
from smallguard.server.domain.predictions import Decision
from smallguard.server.jsonfile import read_json, write_atomically
from smallguard.server.observability.drift.features import (
    CHAR_CLASSES,
    Bins,
    char_class_counts,
    feature_count,
    is_pooled,
    tensor_counts,
)
from smallguard.server.observability.drift.psi import QUANTILES, normalise, quantile_edges

REFERENCE_FILE = "reference.json"
FORMAT = 1
MIN_SAMPLES = 20
DECISIONS = tuple(d.name for d in Decision)
_SUM_TOLERANCE = 1e-6
_REQUIRED = ("format", "samples", "confidence", "decisions", "inputs")


class DriftReferenceError(GuardError):
    """A reference profile that cannot be used; names the file (when there is one) and the problem."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One signal's reference: its bins and the share of the reference data in each, one row per feature
    (padded with empty bins to a common width). ``bins`` is None for the character-class mix."""

    bins: Bins | None
    proportions: np.ndarray


@dataclass(frozen=True, slots=True)
class InputProfile:
    name: str
    kind: str  # "tensor" or "text"
    profiles: Mapping[str, Profile]  # tensor: {"values": ...}; text: {"length": ..., "chars": ...}
    pooled: bool = False


@dataclass(frozen=True, slots=True)
class Reference:
    path: Path | None
    samples: int
    confidence: Profile
    rates: Mapping[str, float]  # decision name -> share of the reference data
    threshold: float
    inputs: Mapping[str, InputProfile]
    created_at: str
    source: str


# ---------------------------------------------------------------------------------------------- building

def build_reference(spec: BundleSpec, feeds: Sequence[Mapping[str, np.ndarray]], confidences: np.ndarray,
                    threshold: float, decisions: Sequence[Decision] | None = None, source: str = "") -> dict[str, Any]:
    """The reference document for ``spec`` from its calibration data.

    ``feeds`` are the examples' checked model inputs (batch dimension of 1, as Predict builds them),
    ``confidences`` their calibrated confidences as served. ``decisions`` default to the threshold
    rule; an extractor's calibration may pass its own (per-field thresholds included).
    """
    confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if len(feeds) != len(confidences):
        raise DriftReferenceError(f"{len(feeds)} examples but {len(confidences)} confidences")
    if len(feeds) < MIN_SAMPLES:
        raise DriftReferenceError(f"{len(feeds)} examples are too few for a drift reference; at least {MIN_SAMPLES}")
    if decisions is None:
        low = spec.policy.on_low_confidence
        decisions = [low if c < threshold else Decision.ANSWER for c in confidences]
    chosen = [d.name for d in decisions]
    document = {
        "format": FORMAT,
        "model": {"name": spec.name, "version": spec.version},
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "samples": len(feeds),
        "quantiles": list(QUANTILES),
        "bins": "bin i holds v with edges[i-1] < v <= edges[i]; the first v <= edges[0], the last v > edges[-1]",
        "confidence": _histogram(confidences),
        "decisions": {
            "threshold": float(threshold),
            "rule": "confidence below the threshold -> on_low_confidence, else ANSWER; verifiers not run",
            "rates": {name: chosen.count(name) / len(chosen) for name in DECISIONS},
        },
        "inputs": {item.name: _input_summary(item, [feed[item.name][0] for feed in feeds]) for item in spec.inputs},
    }
    parse_reference(document, spec)  # never write what the server would refuse
    return document


def _histogram(values: np.ndarray) -> dict[str, list[float]]:
    edges = quantile_edges(values)
    bins = Bins([edges])
    counts = sum(bins.one_hot(np.array([v])) for v in np.asarray(values, dtype=np.float64))
    return {"edges": edges.tolist(), "proportions": normalise(counts)[0].tolist()}


def _input_summary(item: InputSpec, values: Sequence[Any]) -> dict[str, Any]:
    if item.kind == "text":
        texts = [str(v) for v in values]
        chars = normalise(sum(char_class_counts(t) for t in texts))[0]
        return {"kind": "text", "length": _histogram(np.array([len(t) for t in texts], dtype=np.float64)),
                "chars": dict(zip(CHAR_CLASSES, chars.tolist(), strict=True))}
    pooled = is_pooled(item)
    flat = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
    edges = [quantile_edges(np.concatenate(flat))] if pooled else [quantile_edges(c) for c in np.stack(flat).T]
    bins = Bins(edges)
    counts = sum(tensor_counts(bins, pooled, v) for v in flat)
    proportions = normalise(counts)
    return {"kind": "tensor", "pooled": pooled, "features": len(edges), "edges": [e.tolist() for e in edges],
            "proportions": [row[:len(e) + 1].tolist() for row, e in zip(proportions, edges, strict=True)]}


# ---------------------------------------------------------------------------------------------- the file

def write_reference(path: Path, document: Mapping[str, Any]) -> Path:
    """Write atomically (a server never reads half a file), numbers of a list on one line."""
    text = json.dumps(document, indent=2, allow_nan=False)
    text = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    write_atomically(path, text + "\n")
    return path


def write_reference_beside(calibration_file: Path, spec: BundleSpec, feeds: Sequence[Mapping[str, np.ndarray]],
                           probabilities: np.ndarray, threshold: float, source: str = "",
                           decisions: Sequence[Decision] | None = None) -> Path:
    """``smallguard calibrate``'s one call: the reference next to the calibration file it just wrote.

    ``probabilities`` are the calibrated class probabilities (the served confidence is each row's
    maximum) or already the confidences. The file is the one bundle.yaml's ``drift.reference`` names
    when the calibration is the bundle's own, else ``reference.json`` beside ``calibration_file``.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    confidences = scores.max(axis=1) if scores.ndim == 2 else scores
    own = spec.calibration_path is not None and calibration_file.resolve() == spec.calibration_path.resolve()
    path = spec.folder / spec.drift.reference if own else calibration_file.with_name(REFERENCE_FILE)
    return write_reference(path, build_reference(spec, feeds, confidences, threshold, decisions, source=source))


def load_reference(path: Path, spec: BundleSpec) -> Reference:
    """Read and check ``path`` against the bundle; raise DriftReferenceError naming the file and the problem."""
    document = read_json(path, DriftReferenceError)
    try:
        return parse_reference(document, spec, path)
    except DriftReferenceError as exc:
        raise DriftReferenceError(exc.problem, path) from None


def parse_reference(document: Any, spec: BundleSpec, path: Path | None = None) -> Reference:
    """Check a decoded reference document against the bundle it is for (no file involved)."""
    if not isinstance(document, dict):
        raise DriftReferenceError(f"expected a JSON object at the top level, got {type(document).__name__}")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise DriftReferenceError(f"missing key(s): {', '.join(missing)}")
    if document["format"] != FORMAT or isinstance(document["format"], bool):
        raise DriftReferenceError(f"'format': {document['format']!r} is not supported; this version reads "
                                  f"format {FORMAT}")
    samples = document["samples"]
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < MIN_SAMPLES:
        raise DriftReferenceError(f"'samples': expected a whole number >= {MIN_SAMPLES}, got {samples!r}")
    decisions = _object(document["decisions"], "decisions")
    threshold = _number(decisions.get("threshold"), "decisions.threshold")
    rates_doc = _object(decisions.get("rates"), "decisions.rates")
    if sorted(rates_doc) != sorted(DECISIONS):
        raise DriftReferenceError(f"'decisions.rates': expected the keys {', '.join(DECISIONS)}, "
                                  f"got {sorted(rates_doc)}")
    rates = {name: _share(rates_doc[name], f"decisions.rates.{name}") for name in DECISIONS}
    _sums_to_one(list(rates.values()), "decisions.rates")
    inputs_doc = _object(document["inputs"], "inputs")
    declared = [item.name for item in spec.inputs]
    if sorted(inputs_doc) != sorted(declared):
        raise DriftReferenceError(f"'inputs': profiles {sorted(inputs_doc)} do not match the bundle's inputs "
                                  f"{sorted(declared)}; re-run smallguard calibrate")
    return Reference(
        path=path,
        samples=samples,
        confidence=_profile(document["confidence"], "confidence"),
        rates=rates,
        threshold=threshold,
        inputs={item.name: _input_profile(item, inputs_doc[item.name]) for item in spec.inputs},
        created_at=str(document.get("created_at", "")),
        source=str(document.get("source", "")),
    )


def _input_profile(item: InputSpec, doc: Any) -> InputProfile:
    where = f"inputs.{item.name}"
    doc = _object(doc, where)
    if doc.get("kind") != item.kind:
        raise DriftReferenceError(f"'{where}.kind': {doc.get('kind')!r} does not match the bundle's input kind "
                                  f"{item.kind!r}")
    if item.kind == "text":
        chars = _object(doc.get("chars"), f"{where}.chars")
        if sorted(chars) != sorted(CHAR_CLASSES):
            raise DriftReferenceError(f"'{where}.chars': expected the classes {', '.join(CHAR_CLASSES)}, "
                                 f"got {sorted(chars)}")
        mix = [_share(chars[name], f"{where}.chars.{name}") for name in CHAR_CLASSES]
        _sums_to_one(mix, f"{where}.chars")
        return InputProfile(item.name, "text", {"length": _profile(doc.get("length"), f"{where}.length"),
                                                "chars": Profile(None, np.array([mix]))})
    pooled, features = is_pooled(item), feature_count(item)
    if doc.get("pooled") is not pooled or doc.get("features") != features:
        raise DriftReferenceError(f"'{where}': profiles {doc.get('features')!r} feature(s) (pooled: "
                                  f"{doc.get('pooled')!r}) but the bundle's input {item.name} of shape "
                                  f"{list(item.shape)} has {features} (pooled: {pooled}); re-run smallguard calibrate")
    edges, proportions = doc.get("edges"), doc.get("proportions")
    if not isinstance(edges, list) or not isinstance(proportions, list) or len(edges) != features \
            or len(proportions) != features:
        raise DriftReferenceError(f"'{where}': expected 'edges' and 'proportions', each a list of {features} lists")
    rows = [_bins_and_shares(e, p, f"{where}[{i}]") for i, (e, p) in enumerate(zip(edges, proportions, strict=True))]
    return InputProfile(item.name, "tensor", {"values": _padded(rows)}, pooled=pooled)


def _profile(doc: Any, where: str) -> Profile:
    doc = _object(doc, where)
    return _padded([_bins_and_shares(doc.get("edges"), doc.get("proportions"), where)])


def _bins_and_shares(edges: Any, shares: Any, where: str) -> tuple[list[float], list[float]]:
    if not isinstance(edges, list) or not edges:
        raise DriftReferenceError(f"'{where}.edges': expected a non-empty list of numbers, got {edges!r}")
    values = [_number(e, f"{where}.edges") for e in edges]
    if any(b <= a for a, b in pairwise(values)):
        raise DriftReferenceError(f"'{where}.edges': must be strictly increasing, got {values}")
    if not isinstance(shares, list) or len(shares) != len(values) + 1:
        raise DriftReferenceError(f"'{where}.proportions': expected {len(values) + 1} numbers (one more than the "
                                  f"edges), got {shares!r}")
    proportions = [_share(s, f"{where}.proportions") for s in shares]
    _sums_to_one(proportions, f"{where}.proportions")
    return values, proportions


def _padded(rows: Sequence[tuple[list[float], list[float]]]) -> Profile:
    bins = Bins([edges for edges, _ in rows])
    table = np.zeros(bins.shape)
    for i, (_, shares) in enumerate(rows):
        table[i, :len(shares)] = shares
    return Profile(bins, table)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DriftReferenceError(f"'{where}': expected an object, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise DriftReferenceError(f"'{where}': expected a finite number, got {value!r}")
    return float(value)


def _share(value: Any, where: str) -> float:
    number = _number(value, where)
    if not 0 <= number <= 1:
        raise DriftReferenceError(f"'{where}': expected a proportion between 0 and 1, got {value!r}")
    return number


def _sums_to_one(values: Sequence[float], where: str) -> None:
    if abs(sum(values) - 1) > _SUM_TOLERANCE:
        raise DriftReferenceError(f"'{where}': proportions must add up to 1, they add up to {sum(values):.6g}")
