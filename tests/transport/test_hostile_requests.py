"""Requests a hostile or broken client sends: garbage bytes on every RPC get INVALID_ARGUMENT naming the
message expected (not grpc's INTERNAL and a traceback), and a huge name echoed in an error is cut, so the
status still carries its code."""

from __future__ import annotations

import logging

import grpc
import pytest

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import Running

GARBAGE = b"\xff\xfe\x00\x01"
EXPECTED = {
    "/smallguard.v1.Guard/Predict": "smallguard.v1.PredictRequest",
    "/smallguard.v1.Guard/PredictBatch": "smallguard.v1.PredictBatchRequest",
    "/smallguard.v1.Guard/ListModels": "smallguard.v1.ListModelsRequest",
    "/smallguard.v1.Guard/GetModel": "smallguard.v1.GetModelRequest",
    "/smallguard.v1.Guard/Feedback": "smallguard.v1.FeedbackRequest",
    "/smallguard.v1.Guard/ReloadModels": "smallguard.v1.ReloadModelsRequest",
    "/smallguard.v1.Guard/ListCases": "smallguard.v1.ListCasesRequest",
    "/smallguard.v1.Guard/GetCase": "smallguard.v1.GetCaseRequest",
    "/smallguard.v1.Guard/ClaimCase": "smallguard.v1.ClaimCaseRequest",
    "/smallguard.v1.Guard/ResolveCase": "smallguard.v1.ResolveCaseRequest",
    "/smallguard.v1.Guard/DismissCase": "smallguard.v1.DismissCaseRequest",
    "/grpc.health.v1.Health/Check": "grpc.health.v1.HealthCheckRequest",
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_garbage_bytes_get_invalid_argument_on_every_rpc(shipped: Running, method: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    call = shipped.channel.unary_unary(method)  # no serializers: the bytes go as they are
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as caught:
        call(GARBAGE, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid {EXPECTED[method]}" in caught.value.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback logged per request
    assert shipped.stub.ListModels(pb.ListModelsRequest()).models  # and the server goes on serving


@pytest.mark.parametrize("method", ["/grpc.health.v1.Health/Watch", "/smallguard.v1.Guard/WaitForReview"])
def test_garbage_on_a_stream_gets_invalid_argument(shipped: Running, method: str) -> None:
    watch = shipped.channel.unary_stream(method)
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(watch(GARBAGE, timeout=10)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("request_", [
    pb.GetModelRequest(name="x" * 17_000),
    pb.FeedbackRequest(request_id="r" * 256, label="3"),  # the longest request id there is
])
def test_a_huge_caller_string_is_cut_in_the_error_that_repeats_it(shipped: Running, request_: object) -> None:
    call = shipped.stub.GetModel if isinstance(request_, pb.GetModelRequest) else shipped.stub.Feedback
    with pytest.raises(grpc.RpcError) as caught:
        call(request_, timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # not RESOURCE_EXHAUSTED: the status fits
    size = 17_000 if isinstance(request_, pb.GetModelRequest) else 256
    assert f"({size} characters)" in caught.value.details() and len(caught.value.details()) < 1000


BAD_IDS = [("r" * 257, "request_id: 257 characters; expected at most 256"),
           ("a\x00b", "request_id: holds the control character '\\x00' at 1; expected printable text"),
           ("line\nbreak", "request_id: holds the control character '\\n' at 4; expected printable text")]


@pytest.mark.parametrize(("request_id", "message"), BAD_IDS, ids=["too long", "a NUL", "a newline"])
def test_a_request_id_the_store_could_not_keep_is_refused_wherever_it_comes_in(shipped: Running, request_id: str,
                                                                               message: str) -> None:
    """A request id is stored with every decision: PostgreSQL refuses a NUL in text, and a refused row once held up
    the decision log's writes. Each way an id comes in names it and what is expected, and the server serves on."""
    pixels = [1.0] * 64
    single = pb.PredictRequest(model="digits", request_id=request_id, inputs=[pb.Tensor(
        name="pixels", dtype=pb.FLOAT32, shape=[64], contents=pb.TensorContents(float_contents=pixels))])
    with pytest.raises(grpc.RpcError) as caught:
        shipped.stub.Predict(single, timeout=10)
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    good = pb.PredictRequest(model="digits", inputs=single.inputs)
    batch = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", items=[
        pb.PredictRequest(request_id=request_id, inputs=single.inputs), pb.PredictRequest(inputs=single.inputs)]),
        timeout=10)
    assert [r.WhichOneof("result") for r in batch.results] == ["error", "response"]
    assert batch.results[0].error.message == f"items[0].{message}"
    stacked = shipped.stub.PredictBatch(pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(
        name="pixels", dtype=pb.FLOAT32, shape=[2, 64], contents=pb.TensorContents(float_contents=pixels * 2))],
        items=[pb.PredictRequest(request_id=request_id), pb.PredictRequest(request_id="fine")]), timeout=10)
    assert [r.WhichOneof("result") for r in stacked.results] == ["error", "response"]
    assert stacked.results[1].response.request_id == "fine"
    for call, request in ((shipped.stub.Feedback, pb.FeedbackRequest(request_id=request_id, label="3")),
                          (lambda r, timeout: next(iter(shipped.stub.WaitForReview(r, timeout=timeout))),
                           pb.WaitForReviewRequest(request_id=request_id))):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert shipped.stub.Predict(good, timeout=10).request_id  # and the server goes on serving


def test_a_huge_input_name_is_cut_too(shipped: Running) -> None:
    request = pb.PredictRequest(model="digits", inputs=[pb.Tensor(name="p" * 20_000, dtype=pb.FLOAT32, shape=[64])])
    request.inputs[0].contents.float_contents.extend([1.0] * 64)
    with pytest.raises(grpc.RpcError) as caught:
        shipped.stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "(20000 characters)" in caught.value.details() and len(caught.value.details()) < 1000


def test_reflection_can_be_turned_off_for_production() -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from smallguard.server.assembly import create_server
    from smallguard.server.settings import Settings
    from tests.conftest import MODELS

    for enabled in (1, 0):
        server = create_server(Settings(host="127.0.0.1", port=0, model_repository=MODELS, reflection=enabled))
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = reflection_pb2_grpc.ServerReflectionStub(channel)
                replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                    timeout=10)
                if enabled:
                    names = {s.name for s in next(replies).list_services_response.service}
                    assert "smallguard.v1.Guard" in names
                else:
                    with pytest.raises(grpc.RpcError) as caught:
                        next(replies)
                    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            server.stop(0)


def test_a_shape_of_many_huge_dimensions_is_refused_before_any_arithmetic(shipped: Running) -> None:
    """Under the size limit, 400,000 dimensions of 2**62 once made the element count a product of 25 million
    bits: minutes of CPU holding the interpreter, every other caller stalled. Now its length is checked first."""
    request = pb.PredictRequest(model="digits", inputs=[pb.Tensor(name="pixels", dtype=pb.FLOAT32,
                                                                  shape=[2**62] * 400_000)])
    assert len(request.SerializeToString()) < 4 * 1024 * 1024  # within --max-request-bytes: the check is ours
    with pytest.raises(grpc.RpcError) as caught:
        shipped.stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "inputs[pixels].shape: 400000 dimensions; at most 32"
    assert shipped.stub.ListModels(pb.ListModelsRequest(), timeout=10).models  # and the server goes on serving
