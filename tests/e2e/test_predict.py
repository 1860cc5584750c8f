"""End to end: the shipped models served on a real port, called over loopback as a client would."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import DIGITS, Running, digits_request, digits_rows, pixels

pytestmark = pytest.mark.e2e


def test_predict_decides_on_every_held_out_digit_by_the_rules(shipped: Running) -> None:
    """Each answer's decision follows from its confidence and the threshold; most are right."""
    rows = digits_rows()
    decisions, correct_answered, answered = {}, 0, 0
    for row in rows:
        response = shipped.stub.Predict(digits_request(row["pixels"]))
        assert response.model == "digits" and response.model_version
        assert response.request_id
        assert 0.0 <= response.confidence <= 1.0 and 0.0 <= response.raw_confidence <= 1.0
        assert response.classification.label in [str(d) for d in range(10)]
        assert response.classification.probability == pytest.approx(response.confidence)
        top = [s.probability for s in response.classification.top_k]
        assert len(top) == 3 and top == sorted(top, reverse=True)
        assert [v.name for v in response.verifiers] == ["label-allowed"]
        assert response.verifiers[0].status == pb.VerifierResult.SKIPPED  # no allowed_labels in the context
        codes = [r.code for r in response.reasons]
        if response.confidence >= response.threshold:
            assert response.decision == pb.ANSWER and codes == []
            answered += 1
            correct_answered += response.classification.label == row["label"]
        else:
            assert response.decision == pb.ABSTAIN and codes == [pb.Reason.LOW_CONFIDENCE]
        decisions[response.decision] = decisions.get(response.decision, 0) + 1
    assert decisions.get(pb.ANSWER, 0) > len(rows) * 0.5
    assert correct_answered / answered > 0.95


def test_raw_little_endian_bytes_give_the_same_answer_as_typed_values(shipped: Running) -> None:
    values = digits_rows()[0]["pixels"]
    typed = shipped.stub.Predict(digits_request(values))
    raw = np.asarray(values, dtype="<f4").tobytes()
    by_bytes = shipped.stub.Predict(pb.PredictRequest(model="digits", inputs=[pixels([], raw_contents=raw)]))
    assert by_bytes.classification.label == typed.classification.label
    assert by_bytes.confidence == pytest.approx(typed.confidence)


def test_request_id_is_kept_when_given_and_made_when_not(shipped: Running) -> None:
    values = digits_rows()[0]["pixels"]
    assert shipped.stub.Predict(digits_request(values, request_id="abc-123")).request_id == "abc-123"
    made = {shipped.stub.Predict(digits_request(values)).request_id for _ in range(3)}
    assert len(made) == 3


def test_context_reaches_the_verifier_and_its_failure_escalates(shipped: Running) -> None:
    row = next(r for r in digits_rows() if r["label"] == "3")
    response = shipped.stub.Predict(digits_request(row["pixels"], context={"allowed_labels": "0,1"}))
    assert response.verifiers[0].status == pb.VerifierResult.FAILED
    assert response.decision == pb.ESCALATE
    failed = [r for r in response.reasons if r.code == pb.Reason.VERIFIER_FAILED]
    assert failed and failed[0].verifier == "label-allowed" and failed[0].message
    allowed = shipped.stub.Predict(digits_request(row["pixels"], context={"allowed_labels": "0,1,2,3,4,5,6,7,8,9"}))
    assert allowed.verifiers[0].status == pb.VerifierResult.PASSED


def test_list_and_get_model_show_inputs_verifiers_and_calibration(shipped: Running) -> None:
    listed = shipped.stub.ListModels(pb.ListModelsRequest())
    assert "digits" in [m.name for m in listed.models]
    info = shipped.stub.GetModel(pb.GetModelRequest(name="digits"))
    calibration = json.loads((DIGITS / "calibration.json").read_text())
    assert info.kind == pb.ModelInfo.CLASSIFIER
    assert [(i.name, i.dtype, list(i.shape)) for i in info.inputs] == [("pixels", pb.FLOAT32, [64])]
    assert info.inputs[0].has_range and (info.inputs[0].min, info.inputs[0].max) == (0.0, 16.0)
    assert list(info.labels) == [str(d) for d in range(10)]
    assert info.verifiers[0].use == "label-allowed" and info.verifiers[0].on_fail == pb.ESCALATE
    assert info.verifiers[0].distribution.startswith("smallguard==")
    assert info.verifiers[0].params["context_key"] == "allowed_labels"
    assert info.calibration.calibrated and info.calibration.method == calibration["method"]
    assert info.calibration.threshold == pytest.approx(calibration["threshold"])
    assert info.calibration.guarantee.target_risk == pytest.approx(calibration["guarantee"]["target_risk"])
    assert info.calibration.metrics_after["ece"] == pytest.approx(calibration["metrics"]["after"]["ece"])


def test_health_is_serving_overall_for_the_service_and_per_model(shipped: Running) -> None:
    stub = health_pb2_grpc.HealthStub(shipped.channel)
    for service in ("", "smallguard.v1.Guard", "digits"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as error:
        stub.Check(health_pb2.HealthCheckRequest(service="no-such-model"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _bad(values: list[float], **change: object) -> pb.PredictRequest:
    request = digits_request(values)
    tensor = request.inputs[0]
    for key, value in change.items():
        if key == "values":
            del tensor.contents.float_contents[:]
            tensor.contents.float_contents.extend(value)  # type: ignore[arg-type]
        elif key == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)  # type: ignore[arg-type]
        else:
            setattr(tensor, key, value)
    return request


def _bad_requests() -> list[tuple[str, pb.PredictRequest, grpc.StatusCode, str]]:
    good = [1.0] * 64
    nan, inf = list(good), list(good)
    nan[5], inf[9] = float("nan"), float("inf")
    wide = [1.0] * 128
    double = pb.PredictRequest(model="digits", inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT64, shape=[64])])
    double.inputs[0].contents.double_contents.extend(good)
    huge = pb.PredictRequest(model="digits", inputs=[pixels([], raw_contents=b"\0" * (5 * 1024 * 1024))])
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    return [
        ("unknown model", pb.PredictRequest(model="nope", inputs=[pixels(good)]), grpc.StatusCode.NOT_FOUND,
         "no model named 'nope'"),
        ("wrong version", digits_request(good, version="0.0.0-no"), grpc.StatusCode.NOT_FOUND, "not '0.0.0-no'"),
        ("wrong dtype", double, invalid, "dtype float64 does not match; expected float32 tensor of shape [64]"),
        ("wrong shape", _bad(wide, shape=[128]), invalid, "shape [128] does not match"),
        ("count vs shape", _bad([1.0] * 10), invalid, "10 values; shape [64] needs 64"),
        ("missing input", pb.PredictRequest(model="digits"), invalid, "inputs[pixels]: missing"),
        ("unknown input", _bad(good, name="pixelz"), invalid, "inputs[pixelz]: not an input of this model"),
        ("NaN", _bad(nan), invalid, "value nan at flat index 5 is not finite"),
        ("infinity", _bad(inf), invalid, "value inf at flat index 9 is not finite"),
        ("out of range", _bad([1.0] * 63 + [17.0]), invalid, "outside the declared range [0, 16]"),
        ("text to a tensor model", digits_request(good, text="hello"), invalid, "takes tensors, not text"),
        ("no dtype", _bad(good, dtype=pb.DATA_TYPE_UNSPECIFIED), invalid, "inputs[pixels].dtype"),
        ("oversized message", huge, invalid, "over this server's limit"),
    ]


@pytest.mark.parametrize(("case", "request_", "code", "text"), _bad_requests(), ids=lambda v: v if
                         isinstance(v, str) and " " in v else None)
def test_bad_input_gets_a_clear_status_and_the_next_request_is_served(
    shipped: Running, case: str, request_: pb.PredictRequest, code: grpc.StatusCode, text: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        shipped.stub.Predict(request_)
    assert error.value.code() == code, error.value.details()
    assert text in error.value.details()
    good = shipped.stub.Predict(digits_request(digits_rows()[0]["pixels"]))
    assert good.decision in (pb.ANSWER, pb.ABSTAIN)


def test_bytes_that_are_not_a_predict_request_get_invalid_argument(shipped: Running) -> None:
    call = shipped.channel.unary_unary("/smallguard.v1.Guard/Predict")
    with pytest.raises(grpc.RpcError) as error:
        call(b"\xff\xff\xff\xff")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid smallguard.v1.PredictRequest" in error.value.details()


def test_get_model_for_an_unknown_name_is_not_found(shipped: Running) -> None:
    with pytest.raises(grpc.RpcError) as error:
        shipped.stub.GetModel(pb.GetModelRequest(name="nope"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "loaded models: digits" in error.value.details()
