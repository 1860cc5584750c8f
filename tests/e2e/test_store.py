"""The store end to end, as users meet it: feedback across workers and restarts, a PostgreSQL that goes away
and comes back while the server serves, and a worker killed mid-burst losing nothing it acknowledged."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import digits_request, digits_rows, free_port, serving
from tests.postgres import Cluster

pytestmark = pytest.mark.e2e


def feedback_on_a_new_channel(port: int, request_id: str, label: str) -> pb.FeedbackResponse:
    """What a separate service does: its own connection, which the kernel may hand to either worker."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return guard_pb2_grpc.GuardStub(channel).Feedback(pb.FeedbackRequest(request_id=request_id, label=label),
                                                          timeout=30)


def test_with_two_workers_every_feedback_matches_on_any_channel_and_after_a_restart(tmp_path: Path) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    rows = (digits_rows() * 3)[:1000]
    args = ("--workers", "2", "--store", store)
    with serving(*args, port=port) as process, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        ids = [stub.Predict(digits_request(row["pixels"]), timeout=30).request_id for row in rows]
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda i: feedback_on_a_new_channel(port, ids[i], rows[i]["label"]), range(500)))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    assert [r.request_id for r in before] == ids[:500] and not any(r.duplicate for r in before)
    with serving(*args, port=port), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(lambda i: feedback_on_a_new_channel(port, ids[i], rows[i]["label"]),
                                  range(1000)))
        report = guard_pb2_grpc.GuardStub(channel).GetModel(pb.GetModelRequest(name="digits"), timeout=30)
    assert [r.request_id for r in after] == ids  # 100% matched, before and after the restart
    assert [r.duplicate for r in after] == [True] * 500 + [False] * 500
    assert report.feedback.matched == 1000
    assert report.feedback.accuracy.labelled == sum(r.counted for r in before + after)


def health(channel: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_postgresql_that_goes_away_and_comes_back_costs_no_prediction() -> None:
    cluster = Cluster(free_port())  # a server of this test's own: it is stopped and started again
    try:
        port = free_port()
        rows = digits_rows()[:40]
        with serving("--store", cluster.database(), port=port), \
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = guard_pb2_grpc.GuardStub(channel)
            first = stub.Predict(digits_request(rows[0]["pixels"]), timeout=10)
            assert stub.Feedback(pb.FeedbackRequest(request_id=first.request_id, label=rows[0]["label"]),
                                 timeout=10).request_id == first.request_id
            assert health(channel, "smallguard.store") == health_pb2.HealthCheckResponse.SERVING

            cluster.halt()
            during = [stub.Predict(digits_request(row["pixels"]), timeout=10) for row in rows[1:20]]
            assert all(r.decision in (pb.ANSWER, pb.ABSTAIN, pb.ESCALATE) for r in during)
            wait_for(lambda: health(channel, "smallguard.store") == health_pb2.HealthCheckResponse.NOT_SERVING)
            assert health(channel, "") == health_pb2.HealthCheckResponse.SERVING  # Predict serves on
            with pytest.raises(grpc.RpcError) as caught:
                stub.Feedback(pb.FeedbackRequest(request_id=during[0].request_id, label=rows[1]["label"]),
                              timeout=20)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "the store postgresql+psycopg://smallguard@127.0.0.1" in caught.value.details()

            cluster.start()
            wait_for(lambda: health(channel, "smallguard.store") == health_pb2.HealthCheckResponse.SERVING)
            # the decisions made while it was away were kept in memory and written when it came back
            for response, row in zip(during, rows[1:20], strict=True):
                result = stub.Feedback(pb.FeedbackRequest(request_id=response.request_id, label=row["label"]),
                                       timeout=10)
                assert result.request_id == response.request_id and not result.duplicate
    finally:
        cluster.stop()


def test_a_worker_killed_mid_burst_loses_no_acknowledged_feedback(tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "store.sqlite3"
    rows = (digits_rows() * 2)[:600]
    acknowledged: list[str] = []
    lock = threading.Lock()
    with serving("--store", f"sqlite:///{database}", port=port) as process, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        ids = [stub.Predict(digits_request(row["pixels"]), timeout=30).request_id for row in rows]
        time.sleep(0.5)  # the decision log's writes (not themselves acknowledged to anyone as stored)

        def send(i: int) -> None:
            try:
                stub.Feedback(pb.FeedbackRequest(request_id=ids[i], label=rows[i]["label"]), timeout=10)
            except grpc.RpcError:
                return
            with lock:
                acknowledged.append(ids[i])

        with ThreadPoolExecutor(8) as pool:
            for i in range(len(ids)):
                pool.submit(send, i)
                if i == 300:
                    wait_for(lambda: len(acknowledged) >= 100)
                    process.send_signal(signal.SIGKILL)
    assert 100 <= len(acknowledged) < len(ids)
    with sqlite3.connect(database) as connection:
        stored = {row[0] for row in connection.execute(
            "SELECT d.request_id FROM feedback f JOIN decisions d ON d.id = f.decision_id")}
    assert set(acknowledged) <= stored
