"""calibration.json: round trip, and a refusal naming the file and the problem for every defect."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smallguard.server.calibration import (
    CalibrationError,
    TemperatureScaling,
    ThresholdChoice,
    choose_threshold,
    load_calibration,
    write_calibration,
)

METRICS = {"ece": 0.05, "ece_equal_mass": 0.04, "mce": 0.3, "brier": 0.04, "nll": 0.1, "accuracy": 0.97}


def a_choice() -> ThresholdChoice:
    return choose_threshold(np.linspace(0.5, 1.0, 400), np.ones(400, dtype=bool), target_risk=0.02, delta=0.05)


def write(path: Path, **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "fit_samples": 179, "before": METRICS, "after": {**METRICS, "ece": 0.01}, "evaluated_samples": 360,
        "test": {"samples": 360, "answered": 300, "coverage": 300 / 360, "risk": 0.01},
        "fitted_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    arguments.update(overrides)
    return write_calibration(path, TemperatureScaling(1.7), a_choice(), **arguments)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    written = write(path)
    loaded = load_calibration(path)
    choice = a_choice()
    assert loaded.method == "temperature" and loaded.params == {"temperature": 1.7}
    assert loaded.calibrator == TemperatureScaling(1.7)
    assert loaded.threshold == choice.threshold
    assert loaded.fitted_at == "2025-01-02T03:04:05Z" and loaded.fit_samples == 179
    assert loaded.metrics == {"evaluated_on": "test split (never used for fitting)", "samples": 360,
                              "before": METRICS, "after": {**METRICS, "ece": 0.01}}
    assert loaded.guarantee == choice.guarantee()
    assert loaded.guarantee["statement"] == ("With probability at least 95%, the error rate among answered "
                                             "predictions is at most 2%.")
    assert loaded.raw == written == json.loads(path.read_text())
    assert list(written) == ["format", "method", "params", "fitted_at", "fit_samples", "metrics", "threshold",
                             "guarantee", "test"]
    assert written["test"]["answered"] == 300
    logits = np.array([[2.0, 0.0, -1.0]])
    assert np.allclose(loaded.calibrator.probabilities(logits), TemperatureScaling(1.7).probabilities(logits))


def test_fitted_at_defaults_to_now_in_utc(tmp_path: Path) -> None:
    written = write(tmp_path / "c.json", fitted_at=None, test=None)
    stamp = datetime.fromisoformat(written["fitted_at"])
    assert written["fitted_at"].endswith("Z") and abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    assert "test" not in written


def test_writing_is_atomic_and_refuses_what_it_could_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    write(path)
    before = path.read_text()
    with pytest.raises(CalibrationError) as error:
        write(path, before={"ece": float("nan")})
    assert str(path) in str(error.value) and "cannot be written" in str(error.value)
    with pytest.raises(CalibrationError, match="refusing to write an invalid calibration: 'fit_samples'"):
        write(path, fit_samples=0)
    assert path.read_text() == before  # the good file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]  # and no temporary files left behind
    assert path.stat().st_mode & 0o777 == 0o644


def good_document(tmp_path: Path) -> dict[str, Any]:
    return write(tmp_path / "good.json")


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


@pytest.mark.parametrize(("change", "problem"), [
    (_drop("threshold"), "missing key(s): threshold"),
    (_drop("params"), "missing key(s): params"),
    (_set("format", 2), "format 2 is not supported; this version reads format 1"),
    (_set("threshold", 1.5), "'threshold' must be a number in [0, 1], got 1.5"),
    (_set("threshold", -0.1), "'threshold' must be a number in [0, 1], got -0.1"),
    (_set("threshold", "0.9"), "'threshold' must be a number in [0, 1], got '0.9'"),
    (_set("threshold", True), "'threshold' must be a number in [0, 1], got True"),
    (_set("method", "beta"),
     "'method': unknown calibration method 'beta'; known methods: histogram, isotonic, platt, temperature"),
    (_set("method", 3), "'method' must be a string"),
    (_set("params", {"temperature": 0}), "'params': temperature must be a finite number > 0"),
    (_set("params", {"temperature": 1.0, "t2": 1}), "'params': unknown parameter(s) for method 'temperature': t2"),
    (_set("params", [1.7]), "'params' must be an object"),
    (_set("fitted_at", "yesterday"), "'fitted_at' must be an ISO-8601 date and time"),
    (_set("fit_samples", 0), "'fit_samples' must be a whole number >= 1"),
    (_set("metrics", []), "'metrics' must be an object"),
    (_set("guarantee", None), "'guarantee' must be an object"),
])
def test_every_defect_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], problem: str
) -> None:
    document = good_document(tmp_path)
    change(document)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CalibrationError) as error:
        load_calibration(path)
    assert str(error.value).startswith(f"{path}: {problem}")
    assert error.value.path == str(path) and error.value.problem.startswith(problem)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "calibration file does not exist"),
    ("{oops", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    ("[1, 2]", "expected a JSON object at the top level, got list"),
    (b"\xff\xfe{}", "cannot be read"),
])
def test_unreadable_files_are_refused_naming_the_file(tmp_path: Path, content: str | bytes | None,
                                                      problem: str) -> None:
    path = tmp_path / "calibration.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(CalibrationError) as error:
        load_calibration(path)
    assert str(error.value).startswith(f"{path}: {problem}")


def test_serving_a_calibration_does_not_import_scipy(tmp_path: Path) -> None:
    """Fitting needs scipy; loading and applying a calibration must not pay for it."""
    path = tmp_path / "calibration.json"
    write(path)
    script = (
        "import sys, numpy as np\n"
        "from smallguard.server.calibration import load_calibration, logits_from_probabilities\n"
        f"c = load_calibration({str(path)!r})\n"
        "c.calibrator.probabilities(logits_from_probabilities(np.array([[0.9, 0.1]])))\n"
        "print('scipy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
