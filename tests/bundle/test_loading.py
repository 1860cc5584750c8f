"""A bundle that cannot load is refused at start-up with one message naming the file and the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from smallguard.server.assembly import load_repository
from smallguard.server.domain.errors import BundleError
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import VerifierRegistry
from tests.conftest import DIGITS, copy_bundle, digits_request, digits_rows, start_server

GOOD = (DIGITS / "bundle.yaml").read_text()


@pytest.fixture(scope="module")
def registry() -> VerifierRegistry:
    return VerifierRegistry.discover()


def refusal(
    tmp_path: Path, registry: VerifierRegistry, bundle_yaml: str, change: Callable[[Path], object] | None = None
) -> BundleError:
    folder = copy_bundle(DIGITS, tmp_path, "digits", bundle_yaml)
    if change:
        change(folder)
    with pytest.raises(BundleError) as error:
        load_repository(tmp_path, registry, 1)
    return error.value


def test_the_shipped_bundle_loads(registry: VerifierRegistry) -> None:
    repository = load_repository(DIGITS.parent, registry, 1)
    model = repository.get("digits")
    assert model.calibration is not None and 0 < model.threshold < 1


def test_a_model_runs_through_the_sessions_own_run_with_the_public_runs_results(registry: VerifierRegistry) -> None:
    """The request path skips onnxruntime's Python wrapper (its feed checks are done at load and per request);
    if a later onnxruntime drops the attribute this relies on, this fails and the wrapper is used."""
    onnx = load_repository(DIGITS.parent, registry, 1).get("digits").onnx
    pixels = np.asarray([row["pixels"] for row in digits_rows()[:32]], dtype=np.float32)
    assert onnx.unwrapped
    assert np.array_equal(onnx.run({"pixels": pixels}), onnx._session.run(["probabilities"], {"pixels": pixels})[0])


def test_a_classifier_runs_only_the_part_of_its_graph_that_gives_its_output(registry: VerifierRegistry) -> None:
    """The digits graph also computes the label (ArgMax, a label lookup, casts), which nothing reads: the served
    session holds only the nodes up to the probabilities, and gives the whole graph's floats bit for bit."""
    import onnxruntime as ort

    onnx = load_repository(DIGITS.parent, registry, 1).get("digits").onnx
    whole = ort.InferenceSession(str(DIGITS / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in whole.get_outputs()] == ["label", "probabilities"]
    assert onnx.output_names == ("probabilities",)
    pixels = np.asarray([row["pixels"] for split in ("test", "calibration") for row in digits_rows(split)],
                        dtype=np.float32)
    assert np.array_equal(onnx.run({"pixels": pixels}), whole.run(["probabilities"], {"pixels": pixels})[0])
    for row in pixels[:50]:  # one row at a time, as a single Predict runs it
        assert np.array_equal(onnx.run({"pixels": row[None]}), whole.run(["probabilities"], {"pixels": row[None]})[0])


def test_a_graph_the_cut_cannot_take_runs_whole(registry: VerifierRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut whose part onnxruntime refuses, or that gives other floats, leaves the graph whole: the bundle loads
    and serves as before."""
    import smallguard.server.bundle.onnx_session as onnx_session

    monkeypatch.setattr(onnx_session, "cut_to_output", lambda data, output: b"not a model")
    model = load_repository(DIGITS.parent, registry, 1).get("digits")
    assert model.onnx.output_names == ("label", "probabilities")
    row = digits_rows()[0]
    assert model.head.predict({"pixels": np.asarray([row["pixels"]], dtype=np.float32)}).prediction.label == str(
        row["label"])
    # a part that runs but gives other numbers: the whole graph again
    monkeypatch.setattr(onnx_session, "cut_to_output", lambda data, output: data)
    monkeypatch.setattr(onnx_session, "same_numbers", lambda part, whole: False)
    assert load_repository(DIGITS.parent, registry, 1).get("digits").onnx.output_names == ("label", "probabilities")


@pytest.mark.parametrize(("bundle_yaml", "file", "text"), [
    (GOOD.replace("name: pixels", "name: image"), "model.onnx",
     "the model's inputs ['pixels'] do not match the inputs bundle.yaml declares ['image']"),
    (GOOD.replace("shape: [64]", "shape: [32]"), "model.onnx", "bundle.yaml declares [32] per example"),
    (GOOD.replace("dtype: float32", "dtype: int64"), "model.onnx", "declared int64 in bundle.yaml"),
    (GOOD.replace("use: label-allowed", "use: no-such-verifier"), "bundle.yaml", "no-such-verifier"),
    (GOOD.replace("context_key: allowed_labels", "no_such_param: 1"), "bundle.yaml", "label-allowed"),
    (GOOD.replace("on_fail: escalate", "on_fail: explode"), "bundle.yaml", "on_fail: 'explode' is not allowed"),
    (GOOD.replace("name: probabilities", "name: scores"), "model.onnx", "the model has no output 'scores'"),
    (GOOD.replace('"9"]', '"9", "10"]'), "model.onnx", "has 10 columns but bundle.yaml lists 11 labels"),
    (GOOD.replace("kind: classifier", "kind: regressor"), "bundle.yaml", "'regressor' is not a model kind"),
    (GOOD + "\nsurprise: true\n", "bundle.yaml", "surprise: unknown key"),
    ("name: [unclosed", "bundle.yaml", "not valid YAML"),
    (GOOD.replace("calibration: calibration.json", "calibration: other.json"), "bundle.yaml",
     "'uncalibrated: true'"),
], ids=["input-name", "input-shape", "input-dtype", "unknown-verifier", "bad-params", "bad-on-fail",
        "missing-output", "label-count", "kind", "unknown-key", "yaml", "missing-calibration"])
def test_refused_bundle_names_file_and_problem(tmp_path: Path, registry: VerifierRegistry, bundle_yaml: str,
                                               file: str, text: str) -> None:
    error = refusal(tmp_path, registry, bundle_yaml)
    assert Path(error.path).name == file
    assert text in str(error)


def test_missing_model_file_is_named(tmp_path: Path, registry: VerifierRegistry) -> None:
    error = refusal(tmp_path, registry, GOOD, lambda folder: (folder / "model.onnx").unlink())
    assert "model.onnx" in str(error) and "does not exist" in str(error)


def test_a_corrupt_model_file_is_named(tmp_path: Path, registry: VerifierRegistry) -> None:
    error = refusal(tmp_path, registry, GOOD, lambda folder: (folder / "model.onnx").write_bytes(b"not onnx"))
    assert Path(error.path).name == "model.onnx" and "onnxruntime cannot load it" in str(error)


def test_a_bad_calibration_file_is_named(tmp_path: Path, registry: VerifierRegistry) -> None:
    error = refusal(tmp_path, registry, GOOD, lambda folder: (folder / "calibration.json").write_text("{oops"))
    assert Path(error.path).name == "calibration.json"


def test_two_bundles_with_one_name_are_refused(tmp_path: Path, registry: VerifierRegistry) -> None:
    copy_bundle(DIGITS, tmp_path, "a", GOOD)
    copy_bundle(DIGITS, tmp_path, "b", GOOD)
    with pytest.raises(BundleError, match="model name 'digits' is already used"):
        load_repository(tmp_path, registry, 1)


def test_an_empty_repository_is_refused(tmp_path: Path, registry: VerifierRegistry) -> None:
    with pytest.raises(BundleError, match="no bundles found"):
        load_repository(tmp_path, registry, 1)


def test_a_threshold_in_bundle_yaml_is_refused_when_calibrated(tmp_path: Path, registry: VerifierRegistry) -> None:
    error = refusal(tmp_path, registry, GOOD.replace("policy:", "policy:\n  threshold: 0.5"))
    assert "takes its threshold from its calibration file" in str(error)


def uncalibrated_yaml() -> str:
    return GOOD.replace("calibration: calibration.json", "uncalibrated: true").replace(
        "policy:", "policy:\n  threshold: 0.6")


def test_an_uncalibrated_bundle_that_opts_in_says_so_in_every_response(tmp_path: Path) -> None:
    folder = copy_bundle(DIGITS, tmp_path, "digits", uncalibrated_yaml())
    (folder / "calibration.json").unlink()
    running = start_server(tmp_path)
    try:
        for row in digits_rows()[:20]:
            response = running.stub.Predict(digits_request(row["pixels"]))
            codes = [r.code for r in response.reasons]
            assert pb.Reason.UNCALIBRATED in codes
            assert response.confidence == pytest.approx(response.raw_confidence)
            assert response.threshold == pytest.approx(0.6)
            assert (response.decision == pb.ANSWER) == (response.confidence >= 0.6)
        info = running.stub.GetModel(pb.GetModelRequest(name="digits"))
        assert not info.calibration.calibrated and info.calibration.method == "none"
    finally:
        running.stop()
