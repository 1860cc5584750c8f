"""The graph cut against onnx's own Extractor, on the shipped model and on small graphs built with onnx."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
from onnx import TensorProto, helper

from smallguard.server.bundle.graph_cut import cut_to_output
from tests.conftest import DIGITS, digits_rows


def session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def test_the_digits_model_keeps_what_onnx_extractor_keeps_and_everything_else_it_had() -> None:
    data = (DIGITS / "model.onnx").read_bytes()
    part = cut_to_output(data, "probabilities")
    assert part is not None
    original, cut = onnx.load_from_string(data), onnx.load_from_string(part)
    expected = onnx.utils.Extractor(original).extract_model(["pixels"], ["probabilities"])
    assert [n.SerializeToString() for n in cut.graph.node] == [n.SerializeToString() for n in expected.graph.node]
    assert [o.name for o in cut.graph.output] == ["probabilities"]
    assert sorted(i.name for i in cut.graph.initializer) == sorted(i.name for i in expected.graph.initializer)
    # every field the cut does not touch is as it was (the schema's unknown fields passed through)
    for name in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        assert getattr(cut, name) == getattr(original, name)
    assert cut.opset_import == original.opset_import and cut.metadata_props == original.metadata_props
    assert cut.graph.input == original.graph.input and cut.graph.name == original.graph.name
    onnx.checker.check_model(cut)
    pixels = np.asarray([row["pixels"] for row in digits_rows()], dtype=np.float32)
    assert np.array_equal(session(part).run(["probabilities"], {"pixels": pixels})[0],
                          session(data).run(["probabilities"], {"pixels": pixels})[0])


def two_outputs(extra: list[onnx.NodeProto] | None = None) -> onnx.ModelProto:
    """x -> Relu -> a (wanted); x * w -> b (not wanted), with w an initializer only b needs."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Mul", ["x", "w"], ["b"]), *(extra or [])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2], [2.0, 3.0])],
        value_info=[helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_what_only_other_outputs_need_goes() -> None:
    part = cut_to_output(two_outputs().SerializeToString(), "a")
    assert part is not None
    cut = onnx.load_from_string(part)
    assert [n.op_type for n in cut.graph.node] == ["Relu"]
    assert list(cut.graph.initializer) == [] and list(cut.graph.value_info) == []
    assert [o.name for o in cut.graph.output] == ["a"]
    x = np.asarray([[-1.0, 2.0]], dtype=np.float32)
    assert session(part).run(["a"], {"x": x})[0].tolist() == [[0.0, 2.0]]
    # the other way round, the initializer stays
    assert [i.name for i in onnx.load_from_string(cut_to_output(two_outputs().SerializeToString(), "b") or b"")
            .graph.initializer] == ["w"]


def test_nothing_to_cut_or_not_safe_to_cut_gives_none() -> None:
    single = two_outputs()
    del single.graph.output[1]
    del single.graph.node[1]
    assert cut_to_output(single.SerializeToString(), "a") is None  # nothing else in the graph
    assert cut_to_output(two_outputs().SerializeToString(), "missing") is None  # not an output of the graph
    branch = helper.make_graph([helper.make_node("Identity", ["b"], ["c"])], "branch", [],
                               [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 2])])
    with_if = two_outputs([helper.make_node("Constant", [], ["flag"], value=helper.make_tensor(
        "flag", TensorProto.BOOL, [], [True])), helper.make_node("If", ["flag"], ["d"], then_branch=branch,
                                                                 else_branch=branch)])
    assert cut_to_output(with_if.SerializeToString(), "a") is None  # a subgraph may read any tensor by name


def test_an_initializer_listed_as_an_input_goes_with_it() -> None:
    """Models of IR version 3 and older list every initializer among the graph's inputs: one the cut drops must
    leave the inputs too, or onnxruntime would ask the caller for it."""
    model = two_outputs()
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]))
    part = cut_to_output(model.SerializeToString(), "a")
    assert part is not None
    assert [i.name for i in onnx.load_from_string(part).graph.input] == ["x"]
    assert [i.name for i in session(part).get_inputs()] == ["x"]
    kept = cut_to_output(model.SerializeToString(), "b")  # the initializer stays, and so does its input entry
    assert [i.name for i in onnx.load_from_string(kept or b"").graph.input] == ["x", "w"]


def test_same_numbers_means_the_same_bits() -> None:
    from smallguard.server.bundle.onnx_session import same_numbers

    values = np.asarray([0.25, 0.75], dtype=np.float32)
    assert same_numbers(values, values.copy())
    assert not same_numbers(np.asarray([0.0], dtype=np.float32), np.asarray([-0.0], dtype=np.float32))
    assert not same_numbers(values, values.astype(np.float64))
    assert not same_numbers(values, values.reshape(1, 2))
    assert not same_numbers(values, np.nextafter(values, 1.0))
