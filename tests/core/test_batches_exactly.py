"""Which models' concurrent calls may be served as one batch: checked at load, on the model itself."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from smallguard.server.bundle.loader import load_bundle
from smallguard.server.core.models import LoadedModel
from smallguard.verifiers import VerifierRegistry
from tests.conftest import DIGITS, MODELS

BUNDLE = """name: {name}
version: "1"
kind: classifier
model: model.onnx
inputs:
  - name: x
    dtype: float32
    shape: [4]
    range: [0.0, 1.0]
output:
  name: p
  type: probabilities
labels: ["a", "b", "c", "d"]
uncalibrated: true
verifiers:
  - use: label-allowed
    params: {{context_key: allowed_labels}}
"""


@pytest.fixture(scope="module")
def registry() -> VerifierRegistry:
    return VerifierRegistry.discover()


def bundle(folder: Path, name: str, centred_on_the_batch: bool) -> Path:
    """A softmax over four inputs; ``centred_on_the_batch``: less the batch's mean first, so that a row's
    output depends on the rows beside it (as a model that normalises over the batch would)."""
    nodes = [helper.make_node("Softmax", ["c" if centred_on_the_batch else "x"], ["p"], axis=1)]
    if centred_on_the_batch:
        nodes[:0] = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
                     helper.make_node("Sub", ["x", "m"], ["c"])]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / name).mkdir()
    (folder / name / "model.onnx").write_bytes(model.SerializeToString())
    (folder / name / "bundle.yaml").write_text(BUNDLE.format(name=name))
    return folder / name


def test_a_model_whose_rows_get_the_same_floats_in_a_batch_is_served_together(
        tmp_path: Path, registry: VerifierRegistry) -> None:
    assert LoadedModel.ready(load_bundle(bundle(tmp_path, "rowwise", False), registry, 1)).batches_exactly
    assert LoadedModel.ready(load_bundle(DIGITS, registry, 1)).batches_exactly


def test_a_model_whose_rows_depend_on_the_batch_is_served_call_by_call(
        tmp_path: Path, registry: VerifierRegistry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="smallguard.server.core.models")
    model = LoadedModel.ready(load_bundle(bundle(tmp_path, "centred", True), registry, 1))
    assert not model.batches_exactly
    assert "centred: a row's result in a batch of 2 differs from its result alone" in caplog.text


def test_an_extractor_is_served_call_by_call(registry: VerifierRegistry) -> None:
    """Its head runs the model once per text: a batch would only make the calls wait for each other."""
    assert not LoadedModel.ready(load_bundle(MODELS / "invoice-extractor", registry, 1)).batches_exactly
