"""Predict calls that arrive together are served in one batch, and each gets the answer it gets alone."""

from __future__ import annotations

import threading

import grpc
import pytest

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import digits_request, digits_rows, free_port, serving
from tests.e2e.conftest import samples, scrape
from tests.e2e.test_extractor import invoices
from tests.e2e.test_predict_batch import ALL_DIGITS, comparable

CALLERS = 48


def requests() -> list[pb.PredictRequest]:
    """Digits that answer, escalate and fail a verifier, some invalid ones, and invoices for a second model."""
    found = []
    for i, row in enumerate(digits_rows()[:40]):
        found.append(digits_request(row["pixels"], request_id=f"digit-{i}",
                                    context={"allowed_labels": "0,1,2,3,4,5,6,7" if i % 5 == 0 else ALL_DIGITS}))
    found.append(digits_request([0.5] * 63, request_id="short"))  # a shape the model does not take
    found.append(digits_request([float("nan")] * 64, request_id="nan"))
    found.append(digits_request([99.0] * 64, request_id="out-of-range"))
    for i, record in enumerate(invoices("test")[:5]):
        found.append(pb.PredictRequest(model="invoice-extractor", text=record["text"], request_id=f"invoice-{i}"))
    return found


def answer(stub: guard_pb2_grpc.GuardStub, request: pb.PredictRequest) -> tuple:
    try:
        return comparable(stub.Predict(request, timeout=30))
    except grpc.RpcError as error:
        return (error.code(), error.details())


def all_at_once(stubs: list[guard_pb2_grpc.GuardStub], calls: list[pb.PredictRequest]) -> list[tuple | None]:
    """Every call's answer, from CALLERS threads that start together, spread over ``stubs``."""
    got: list[tuple | None] = [None] * len(calls)
    barrier = threading.Barrier(CALLERS)

    def caller(k: int) -> None:
        barrier.wait()
        for j in range(k, len(calls), CALLERS):
            got[j] = answer(stubs[j % len(stubs)], calls[j])
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return got


@pytest.mark.e2e
def test_calls_served_together_get_the_answers_they_get_alone() -> None:
    """`smallguard serve` as deployed (no traces exported); a caller thread per call in flight."""
    port, metrics_port = free_port(), free_port()

    def served_together() -> dict[str, float]:
        family = scrape(metrics_port).get("smallguard_predict_served_together")
        return samples(family, "smallguard_predict_served_together_total", "smallguard_model_name") if family else {}

    with serving(port=port, metrics_port=metrics_port):
        channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
        stubs = [guard_pb2_grpc.GuardStub(channel) for channel in channels]
        calls = requests()
        alone = [answer(stubs[0], request) for request in calls]  # one at a time: each served alone
        assert served_together() == {"digits": 0}  # the extractor is never batched: no series
        assert {a[0] for a in alone[40:43]} == {grpc.StatusCode.INVALID_ARGUMENT}
        assert {a[3] for a in alone[:40]} >= {pb.ANSWER, pb.ESCALATE}

        together: dict[str, float] = {}
        for _ in range(30):  # rounds of every call at once, until calls have been served together
            assert all_at_once(stubs, calls * 2) == alone * 2
            together = served_together()
            if together.get("digits", 0) > 0:
                break
        assert together.get("digits", 0) > 0, "no two calls were ever served together"
        for channel in channels:
            channel.close()
