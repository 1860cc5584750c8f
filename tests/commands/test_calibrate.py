"""`smallguard calibrate` as an operator runs it: real model, real files, real server afterwards."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from smallguard.server.calibration import load_calibration
from smallguard.v1 import guard_pb2 as pb
from tests.conftest import (
    CALIBRATION,
    TEST,
    Running,
    calibrate,
    digits_request,
    digits_rows,
    start_server,
    uncalibrated_digits,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("repository")
    folder = uncalibrated_digits(root)
    result = calibrate(folder, "--data", CALIBRATION, "--test", TEST, "--method", "temperature",
                       "--report", folder / "report")
    return folder, result


def test_it_writes_a_calibration_that_lowers_ece_on_the_untouched_test_file(
    calibrated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, result = calibrated
    assert result.returncode == 0, result.stderr
    calibration = load_calibration(folder / "calibration.json")
    metrics = calibration.metrics
    assert metrics["samples"] == len(digits_rows("test"))
    assert metrics["evaluated_on"].startswith("test.jsonl (the --test file")
    assert metrics["after"]["ece"] < metrics["before"]["ece"]
    assert metrics["after"]["nll"] < metrics["before"]["nll"]
    assert metrics["after"]["accuracy"] == metrics["before"]["accuracy"]  # temperature never moves the argmax
    assert calibration.guarantee["target_risk"] == 0.03 and calibration.guarantee["delta"] == 0.05
    assert calibration.fit_samples + calibration.guarantee["samples"] == len(digits_rows("calibration"))
    assert "ECE (equal width)" in result.stdout and "With probability at least 95%" in result.stdout
    assert "scoring calibration.jsonl" in result.stderr  # the progress bar


def test_the_report_pictures_open_and_show_before_after_and_the_threshold(
    calibrated: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    import matplotlib.image

    folder, _ = calibrated
    report = folder / "report"
    for name in ("reliability.png", "risk_coverage.png"):
        image = matplotlib.image.imread(report / name)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # not a blank canvas
    text = (report / "REPORT.md").read_text()
    threshold = load_calibration(folder / "calibration.json").threshold
    assert f"{threshold:.6f}" in text and "![reliability before and after](reliability.png)" in text
    assert "| ECE (equal width) |" in text


@pytest.fixture(scope="module")
def served(calibrated: tuple[Path, subprocess.CompletedProcess[str]]) -> Iterator[Running]:
    folder, _ = calibrated
    running = start_server(folder.parent)
    yield running
    running.stop()


def test_the_server_applies_the_threshold_it_wrote(
    calibrated: tuple[Path, subprocess.CompletedProcess[str]], served: Running
) -> None:
    threshold = load_calibration(calibrated[0] / "calibration.json").threshold
    responses = [served.stub.Predict(digits_request(row["pixels"])) for row in digits_rows("test")]
    assert {r.threshold for r in responses} == {threshold}
    above = min((r for r in responses if r.confidence >= threshold), key=lambda r: r.confidence)
    below = max((r for r in responses if r.confidence < threshold), key=lambda r: r.confidence)
    assert above.decision == pb.ANSWER
    assert below.decision == pb.ABSTAIN and [r.code for r in below.reasons] == [pb.Reason.LOW_CONFIDENCE]
    assert below.confidence < threshold <= above.confidence


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda rows: rows[4].update(label="11"), "line 5, field 'label': '11' is not one of the bundle's labels"),
        (lambda rows: rows[2].pop("pixels"), "line 3, field 'pixels': missing"),
        (lambda rows: rows[6].update(pixels=[1.0] * 63), "line 7, field 'pixels': shape [63] does not match"),
        (lambda rows: rows[0].update(pixels=[99.0] * 64), "line 1, field 'pixels': value 99.0 at flat index 0"),
        (lambda rows: rows[1].pop("label"), "line 2, field 'label': missing"),
    ],
)
def test_bad_data_is_named_by_line_and_field(tmp_path: Path, change: object, expected: str) -> None:
    rows = digits_rows("calibration")
    change(rows)  # type: ignore[operator]
    folder = uncalibrated_digits(tmp_path)
    result = calibrate(folder, "--data", _write_jsonl(tmp_path / "data.jsonl", rows))
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (folder / "calibration.json").exists()


def test_a_line_that_does_not_parse_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(CALIBRATION.read_text() + '{"pixels": [1, 2\n')
    result = calibrate(uncalibrated_digits(tmp_path), "--data", data)
    assert result.returncode == 2 and f"line {len(digits_rows('calibration')) + 1}, field 'line': not valid JSON" \
        in result.stderr


def test_too_few_samples_for_the_guarantee_is_refused_without_writing(tmp_path: Path) -> None:
    folder = uncalibrated_digits(tmp_path)
    result = calibrate(folder, "--data", CALIBRATION, "--target-risk", "0.001")
    assert result.returncode == 1
    assert "too few samples for the requested guarantee" in result.stderr and "2995" in result.stderr
    assert not (folder / "calibration.json").exists()


def test_an_unreachable_target_writes_no_threshold(tmp_path: Path) -> None:
    folder = uncalibrated_digits(tmp_path)
    rows = digits_rows("calibration")
    rng = np.random.default_rng(0)
    for row in rows:  # a third of the labels wrong: no threshold has a 3% error rate
        if rng.random() < 0.34:
            row["label"] = str((int(row["label"]) + 1) % 10)
    result = calibrate(folder, "--data", _write_jsonl(tmp_path / "noisy.jsonl", rows * 3), "--method",
                       "temperature")
    assert result.returncode == 1 and "no threshold written" in result.stderr
    assert not (folder / "calibration.json").exists()


def test_csv_with_a_json_array_column_or_one_column_per_element(tmp_path: Path) -> None:
    rows = digits_rows("calibration")
    array_csv = tmp_path / "array.csv"
    array_csv.write_text("label,pixels\n" + "".join(f"{r['label']},\"{json.dumps(r['pixels'])}\"\n" for r in rows))
    wide_csv = tmp_path / "wide.csv"
    header = "label," + ",".join(f"pixels[{i}]" for i in range(64))
    wide_csv.write_text(header + "\n" + "".join(f"{r['label']}," + ",".join(map(str, r["pixels"])) + "\n"
                                                for r in rows))
    written = []
    for data in (array_csv, wide_csv):
        folder = uncalibrated_digits(tmp_path / data.stem)
        result = calibrate(folder, "--data", data, "--method", "temperature")
        assert result.returncode == 0, result.stderr
        written.append(load_calibration(folder / "calibration.json"))
    assert written[0].params == written[1].params and written[0].threshold == written[1].threshold


def test_bad_options_are_named(tmp_path: Path) -> None:
    folder = uncalibrated_digits(tmp_path)
    assert "--target-risk=1.5" in calibrate(folder, "--data", CALIBRATION, "--target-risk", "1.5").stderr
    result = calibrate(folder, "--data", CALIBRATION, "--method", "magic")
    assert result.returncode == 2 and "--method='magic': for a classifier, expected auto or one of" in result.stderr
    missing = calibrate(tmp_path / "nowhere", "--data", CALIBRATION)
    assert missing.returncode == 2 and "bundle.yaml" in missing.stderr
