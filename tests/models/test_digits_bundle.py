"""The shipped digits bundle: its files agree with each other and with what `smallguard calibrate` recorded.

Nothing here retrains the network; everything that follows from the shipped model.onnx and
data files (the calibrated test metrics, the fitted method, the threshold) is recomputed from
the split recorded in calibration.json's ``procedure`` and compared with the file.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from smallguard.server.calibration import (
    METHODS,
    Calibration,
    choose_threshold,
    load_calibration,
    logits_from_probabilities,
    summary,
)
from smallguard.server.calibration.procedure import split_indices
from tests.conftest import DIGITS

LABELS = [str(d) for d in range(10)]


def rows(split: str) -> tuple[np.ndarray, np.ndarray]:
    lines = (DIGITS / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    pixels = np.array([r["pixels"] for r in records], dtype=np.float32)
    labels = np.array([LABELS.index(r["label"]) for r in records])
    return pixels, labels


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return load_calibration(DIGITS / "calibration.json")


def probabilities(session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    (p,) = session.run(["probabilities"], {"pixels": pixels})
    return p.astype(np.float64)


def test_data_files_hold_64_pixels_in_range_and_a_label() -> None:
    for split, size in (("test", 360), ("calibration", 359)):
        pixels, labels = rows(split)
        assert pixels.shape == (size, 64)
        assert pixels.min() >= 0.0 and pixels.max() <= 16.0
        assert set(labels) == set(range(10))  # stratified: every class present


def test_model_matches_the_bundle_declaration(session: ort.InferenceSession) -> None:
    bundle = yaml.safe_load((DIGITS / "bundle.yaml").read_text())
    (declared,) = bundle["inputs"]
    (model_input,) = session.get_inputs()
    assert (model_input.name, model_input.type, model_input.shape[1:]) == (declared["name"], "tensor(float)", [64])
    assert declared["dtype"] == "float32" and declared["shape"] == [64] and declared["range"] == [0.0, 16.0]
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    assert bundle["output"] == {"name": "probabilities", "type": "probabilities"}
    assert bundle["labels"] == LABELS
    assert (DIGITS / bundle["model"]).stat().st_size < 100_000
    assert (DIGITS / bundle["calibration"]).is_file()


def test_model_gives_probabilities_and_is_accurate(session: ort.InferenceSession) -> None:
    pixels, labels = rows("test")
    predicted, p = session.run(["label", "probabilities"], {"pixels": pixels})
    assert p.shape == (len(labels), 10) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(predicted, p.argmax(axis=1))
    accuracy = np.mean(predicted == labels)
    assert 0.9 < accuracy < 1.0  # good, and wrong often enough to have something to guard


def test_calibration_loads_and_improved_ece_on_the_test_split(calibration: Calibration) -> None:
    assert 0 < calibration.threshold < 1
    metrics = calibration.metrics
    assert metrics["evaluated_on"].startswith("test.jsonl") and metrics["samples"] == 360
    assert metrics["after"]["ece"] <= metrics["before"]["ece"]
    assert metrics["after"]["nll"] <= metrics["before"]["nll"]
    assert calibration.guarantee["statement"].startswith("With probability at least 95%")


def test_recorded_test_metrics_are_what_the_shipped_files_give(
    session: ort.InferenceSession, calibration: Calibration
) -> None:
    pixels, labels = rows("test")
    raw = probabilities(session, pixels)
    calibrated = calibration.calibrator.probabilities(logits_from_probabilities(raw))
    recorded = calibration.metrics
    assert summary(raw, labels) == pytest.approx(recorded["before"], abs=1e-6)
    assert summary(calibrated, labels) == pytest.approx(recorded["after"], abs=1e-6)

    answered = calibrated.max(axis=1) >= calibration.threshold
    test = calibration.raw["test"]
    assert (test["samples"], test["answered"]) == (len(labels), int(answered.sum()))
    assert test["coverage"] == pytest.approx(answered.mean())
    assert test["risk"] == pytest.approx(np.mean(calibrated.argmax(axis=1)[answered] != labels[answered]))
    assert test["risk"] <= calibration.guarantee["target_risk"]
    assert test["coverage"] > 0.5


def test_method_and_threshold_are_reproduced_from_the_recorded_split(
    session: ort.InferenceSession, calibration: Calibration
) -> None:
    """Refit the recorded method on the recorded fit part; re-choose the threshold on the rest."""
    procedure = calibration.raw["procedure"]
    assert procedure["data"] == "calibration.jsonl" and procedure["requested_method"] == "auto"
    pixels, labels = rows("calibration")
    logits = logits_from_probabilities(probabilities(session, pixels))
    split = split_indices(len(labels), 0.0, procedure["fit_fraction"], procedure["seed"])
    assert len(split.fit) == calibration.fit_samples
    refit = METHODS[calibration.method].fit(logits[split.fit], labels[split.fit])
    assert refit.to_params() == pytest.approx(dict(calibration.params), rel=1e-4)
    scores = procedure["method_selection"]["scores"]
    assert min(scores, key=scores.get) == calibration.method

    held = calibration.calibrator.probabilities(logits[split.threshold])
    guarantee = calibration.guarantee
    choice = choose_threshold(held.max(axis=1), held.argmax(axis=1) == labels[split.threshold],
                              guarantee["target_risk"], guarantee["delta"])
    assert choice.threshold == pytest.approx(calibration.threshold, abs=1e-6)
    assert choice.guarantee() == pytest.approx(dict(guarantee))
