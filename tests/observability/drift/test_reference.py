"""reference.json: built from the calibration data by `smallguard calibrate`, checked when read, and a
malformed one refuses the bundle naming the file and the problem; a missing one turns drift monitoring off."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smallguard.server.assembly import build_guard, load_repository
from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.bundle.loader import load_bundle
from smallguard.server.commands.labelled_data import read_labelled
from smallguard.server.core.models import LoadedModel
from smallguard.server.domain.bundle_spec import BundleSpec, InputSpec, Policy
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.predictions import Decision
from smallguard.server.observability.drift import (
    DriftReferenceError,
    build_reference,
    load_reference,
    parse_reference,
    write_reference,
)
from smallguard.server.observability.drift.features import CHAR_CLASSES, char_class_counts
from smallguard.server.settings import Settings
from smallguard.server.transport import converters
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import ModelKind, VerifierRegistry
from tests.conftest import CALIBRATION, DIGITS, TEST, calibrate, copy_bundle, uncalibrated_digits
from tests.observability.drift.conftest import SHIPPED, digitize

GOOD_YAML = (DIGITS / "bundle.yaml").read_text()


@pytest.fixture(scope="module")
def registry() -> VerifierRegistry:
    return VerifierRegistry.discover()


def served_confidences(registry: VerifierRegistry) -> tuple[list[Any], np.ndarray]:
    """The calibration data's feeds and the confidences the server gives them (the Predict path's head)."""
    model = LoadedModel.ready(load_bundle(DIGITS, registry, 1))
    feeds = [example.feeds for example in read_labelled(CALIBRATION, model.spec)]
    return feeds, np.array([model.head.predict(feed).confidence for feed in feeds])


def test_the_shipped_reference_profiles_the_calibration_data_as_the_server_scores_it(
        registry: VerifierRegistry) -> None:
    feeds, confidences = served_confidences(registry)
    spec = read_bundle(DIGITS)
    reference = load_reference(DIGITS / "reference.json", spec)
    assert reference.samples == len(feeds) == 359

    # confidence: deciles of the served confidences, and the share in each bin counted independently
    edges = SHIPPED["confidence"]["edges"]
    # (to float32's precision: onnxruntime's kernels for another CPU kind may round a score's last bits otherwise)
    assert edges == pytest.approx(np.unique(np.quantile(confidences, np.arange(1, 10) / 10)).tolist(), rel=1e-6)
    assert SHIPPED["confidence"]["proportions"] == pytest.approx(digitize(confidences, edges).tolist())

    # the decision mix the threshold rule gives (digits: below the threshold -> ABSTAIN)
    threshold = reference.threshold
    assert threshold == pytest.approx(json.loads((DIGITS / "calibration.json").read_text())["threshold"])
    below = float(np.mean(confidences < threshold))
    assert reference.rates == pytest.approx({"ANSWER": 1 - below, "ABSTAIN": below, "ESCALATE": 0.0})
    assert 0.1 < below < 0.3

    # every pixel: its own deciles, and proportions that an independent count reproduces
    pixels = np.stack([feed["pixels"][0] for feed in feeds]).astype(np.float64)
    profile = SHIPPED["inputs"]["pixels"]
    assert profile["features"] == 64 and profile["pooled"] is False
    for feature in range(64):
        column = pixels[:, feature]
        assert profile["edges"][feature] == np.unique(np.quantile(column, np.arange(1, 10) / 10)).tolist()
        assert profile["proportions"][feature] == pytest.approx(digitize(column, profile["edges"][feature]).tolist())
    assert profile["edges"][0] == [0.0] and profile["proportions"][0] == [1.0, 0.0]  # a pixel that is always 0


def test_calibrate_writes_the_reference_next_to_the_calibration(tmp_path: Path) -> None:
    folder = uncalibrated_digits(tmp_path)
    (folder / "bundle.yaml").write_text(GOOD_YAML)
    result = calibrate(folder, "--data", CALIBRATION, "--test", TEST, "--method", "temperature")
    assert result.returncode == 0, result.stderr
    assert f"wrote {folder / 'reference.json'} (the drift reference)" in result.stdout
    written = json.loads((folder / "reference.json").read_text())
    for key in ("inputs", "samples", "quantiles"):  # the same data and method: the shipped profile
        assert written[key] == SHIPPED[key], key
    # what comes from the model's scores: equal to float32's precision (another CPU kind's onnxruntime kernels may
    # round a score's last bits otherwise)
    confidence, decisions = written["confidence"], written["decisions"]
    assert confidence["edges"] == pytest.approx(SHIPPED["confidence"]["edges"], rel=1e-6)
    assert confidence["proportions"] == pytest.approx(SHIPPED["confidence"]["proportions"])
    assert decisions["threshold"] == pytest.approx(SHIPPED["decisions"]["threshold"], rel=1e-6)
    assert decisions["rates"] == pytest.approx(SHIPPED["decisions"]["rates"])
    assert decisions.keys() == SHIPPED["decisions"].keys() and decisions["rule"] == SHIPPED["decisions"]["rule"]
    assert written["source"] == str(CALIBRATION) and written["model"] == {"name": "digits", "version": "1.0.0"}


def text_spec(folder: Path) -> BundleSpec:
    return BundleSpec(folder=folder, name="notes", version="1", kind=ModelKind.EXTRACTOR, description="",
                      model_path=folder / "model.onnx", inputs=(InputSpec(name="text", kind="text", dtype="string",
                                                                          max_chars=1000),),
                      output_name="", output_type="", labels=(), calibration_path=None, policy=Policy())


def test_a_text_input_is_profiled_by_length_and_character_classes(tmp_path: Path) -> None:
    # counted by hand: 11 letters (Invoice, café), 6 digits (1 2 3 5 0 and the Arabic-Indic three),
    # 5 spaces (four blanks and a tab), 4 punctuation or symbols (# : , €), 2 other (BEL, a combining accent)
    base = "Invoice #12: 3,50 € café\t\x07\u0301\u0663"
    assert char_class_counts(base).tolist() == [[11, 6, 5, 4, 2]]
    texts = [base * (1 + i % 4) for i in range(40)]
    spec = text_spec(tmp_path)
    feeds = [{"text": np.array([t], dtype=object)} for t in texts]
    document = build_reference(spec, feeds, np.linspace(0.5, 1.0, 40), threshold=0.8, source="hand-made")
    profile = document["inputs"]["text"]
    assert profile["chars"] == pytest.approx(dict(zip(CHAR_CLASSES, np.array([11, 6, 5, 4, 2]) / 28, strict=True)))
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    edges = profile["length"]["edges"]
    assert edges == [28.0, 56.0, 70.0, 84.0, 112.0]  # deciles of ten each of 28, 56, 84, 112 (70: interpolated)
    assert profile["length"]["proportions"] == pytest.approx(digitize(lengths, edges).tolist())
    assert profile["length"]["proportions"] == pytest.approx([0.25, 0.25, 0.0, 0.25, 0.25, 0.0])
    assert document["decisions"]["rates"]["ABSTAIN"] == pytest.approx(np.mean(np.linspace(0.5, 1.0, 40) < 0.8))
    path = write_reference(tmp_path / "reference.json", document)
    loaded = load_reference(path, spec)
    assert loaded.inputs["text"].kind == "text" and loaded.samples == 40


def test_building_needs_enough_examples_and_matching_confidences(tmp_path: Path) -> None:
    spec, feeds = text_spec(tmp_path), [{"text": np.array(["a b"], dtype=object)}] * 10
    with pytest.raises(DriftReferenceError, match="10 examples are too few for a drift reference; at least 20"):
        build_reference(spec, feeds, np.ones(10), threshold=0.5)
    with pytest.raises(DriftReferenceError, match="30 examples but 29 confidences"):
        build_reference(spec, feeds * 3, np.ones(29), threshold=0.5)
    escalating = build_reference(spec, feeds * 3, np.ones(30), threshold=0.5, decisions=[Decision.ESCALATE] * 30)
    assert escalating["decisions"]["rates"] == {"ANSWER": 0.0, "ABSTAIN": 0.0, "ESCALATE": 1.0}


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[key]
        target[last] = value
    return change


def _edit(change: Callable[[dict], None]) -> str:
    document = json.loads(json.dumps(SHIPPED))
    change(document)
    return json.dumps(document)


MALFORMED = {
    "not-json": ("{", "not valid JSON"),
    "a-list": ("[]", "expected a JSON object at the top level, got list"),
    "missing-key": (_edit(lambda d: d.pop("confidence")), "missing key(s): confidence"),
    "format": (_edit(_set("format", 2)), "'format': 2 is not supported; this version reads format 1"),
    "few-samples": (_edit(_set("samples", 3)), "'samples': expected a whole number >= 20, got 3"),
    "not-summing": (_edit(_set("confidence.proportions", [0.5] * 10)),
                    "'confidence.proportions': proportions must add up to 1, they add up to 5"),
    "unsorted-edges": (_edit(_set("confidence.edges", [0.9, 0.5, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999])),
                       "'confidence.edges': must be strictly increasing"),
    "bin-count": (_edit(_set("confidence.proportions", [0.5, 0.5])),
                  "'confidence.proportions': expected 10 numbers (one more than the edges)"),
    "negative": (_edit(_set("decisions.rates.ABSTAIN", -0.2)),
                 "'decisions.rates.ABSTAIN': expected a proportion between 0 and 1, got -0.2"),
    "nan-edge": (_edit(_set("confidence.edges", [float("nan")] * 9)), "'confidence.edges': expected a finite number"),
    "rates-keys": (_edit(_set("decisions.rates", {"ANSWER": 1.0})), "'decisions.rates': expected the keys ANSWER, "
                                                                     "ABSTAIN, ESCALATE"),
    "other-input": (_edit(lambda d: d.__setitem__("inputs", {"image": d["inputs"]["pixels"]})),
                    "'inputs': profiles ['image'] do not match the bundle's inputs ['pixels']"),
    "feature-count": (_edit(lambda d: d["inputs"]["pixels"].__setitem__("features", 63)),
                      "'inputs.pixels': profiles 63 feature(s) (pooled: False) but the bundle's input pixels of "
                      "shape [64] has 64"),
    "kind": (_edit(_set("inputs.pixels.kind", "text")),
             "'inputs.pixels.kind': 'text' does not match the bundle's input kind 'tensor'"),
    "feature-bins": (_edit(lambda d: d["inputs"]["pixels"]["proportions"].__setitem__(0, [0.5, 0.25, 0.25])),
                     "'inputs.pixels[0].proportions': expected 2 numbers"),
}


@pytest.mark.parametrize(("text", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_reference_refuses_the_bundle_naming_the_file_and_the_problem(
        tmp_path: Path, registry: VerifierRegistry, text: str, problem: str) -> None:
    folder = copy_bundle(DIGITS, tmp_path, "digits", GOOD_YAML)
    (folder / "reference.json").write_text(text)
    with pytest.raises(BundleError) as refused:
        load_repository(tmp_path, registry, 1)
    assert refused.value.path == str(folder / "reference.json")
    assert problem in refused.value.problem
    assert str(refused.value).startswith(f"{folder / 'reference.json'}: ")


def test_a_reference_for_other_inputs_is_refused_before_it_is_written(tmp_path: Path) -> None:
    with pytest.raises(DriftReferenceError, match="'inputs': profiles"):
        parse_reference(json.loads(_edit(lambda d: d.__setitem__("inputs", {}))), read_bundle(DIGITS))


def test_a_bundle_names_its_reference_file_in_drift_reference(tmp_path: Path, registry: VerifierRegistry) -> None:
    bundle_yaml = GOOD_YAML.replace("\ndrift:", "\ndrift:\n  reference: profile.json")
    folder = copy_bundle(DIGITS, tmp_path, "digits", bundle_yaml)
    (folder / "profile.json").write_text((DIGITS / "reference.json").read_text())
    model = load_repository(tmp_path, registry, 1).get("digits")
    assert model.drift is not None and model.drift.reference.path == folder / "profile.json"


def test_without_a_reference_drift_is_off_logged_once_and_shown_by_get_model(
        tmp_path: Path, registry: VerifierRegistry, caplog: pytest.LogCaptureFixture) -> None:
    folder = copy_bundle(DIGITS, tmp_path, "digits", GOOD_YAML)  # no reference.json copied
    with caplog.at_level(logging.WARNING):
        guard = build_guard(Settings(model_repository=tmp_path), registry=registry)
    said = [r.getMessage() for r in caplog.records if "drift is not monitored" in r.getMessage()]
    assert said == [f"model digits: drift is not monitored: {folder / 'reference.json'} does not exist "
                    "(smallguard calibrate writes it)"]
    report = guard.report("digits")
    assert report.model.drift is None
    status = converters.model_info(report).drift
    assert status.state == pb.DriftStatus.OFF and str(folder / "reference.json") in status.message
    assert not status.scores and status.window == 500 and status.min_samples == 100
