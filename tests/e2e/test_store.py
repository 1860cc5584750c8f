"""The store end to end, as users meet it: feedback across workers and restarts, a PostgreSQL that goes away
and comes back while the server serves, and a worker killed mid-burst losing nothing it acknowledged."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, digits_request, digits_rows, free_port, serving
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
        # Feedback waits 0.3 s for a decision another worker has not written yet (it writes every 50 ms); on a
        # loaded machine the last ones could take longer, and ground truth comes later than this in life
        time.sleep(0.5)
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


def test_replicas_sharing_a_postgresql_match_each_others_requests(postgres: Cluster) -> None:
    """Two `smallguard serve` processes on their own ports (two machines, as far as they know) and one database:
    a prediction made by one is judged through the other, and both report the same tally."""
    url = postgres.database()
    ports = [free_port(), free_port()]
    rows = digits_rows()[:30]
    with serving("--store", url, port=ports[0]), serving("--store", url, port=ports[1]), \
            grpc.insecure_channel(f"127.0.0.1:{ports[0]}") as first, \
            grpc.insecure_channel(f"127.0.0.1:{ports[1]}") as second:
        one, other = guard_pb2_grpc.GuardStub(first), guard_pb2_grpc.GuardStub(second)
        ids = [one.Predict(digits_request(row["pixels"]), timeout=10).request_id for row in rows]
        time.sleep(0.5)  # the first replica's decision log writes them (every 50 ms)

        def judge(request_id: str, label: str) -> pb.FeedbackResponse:
            """NOT_FOUND records nothing, so a caller may send it again: here, while a busy test machine has not
            let the first replica's writer run yet."""
            deadline = time.monotonic() + 10
            while True:
                try:
                    return other.Feedback(pb.FeedbackRequest(request_id=request_id, label=label), timeout=10)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

        judged = [judge(i, row["label"]) for i, row in zip(ids, rows, strict=True)]
        assert [r.request_id for r in judged] == ids
        again = one.Feedback(pb.FeedbackRequest(request_id=ids[0], label=rows[0]["label"]), timeout=10)
        assert again.duplicate  # the first truth was recorded by the other replica
        time.sleep(1.1)  # each replica's tally is read from the store at most a second old
        tallies = [stub.GetModel(pb.GetModelRequest(name="digits"), timeout=10).feedback for stub in (one, other)]
        assert [t.matched for t in tallies] == [30, 30]
        assert tallies[0].accuracy.labelled == tallies[1].accuracy.labelled == sum(r.counted for r in judged)


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


def test_a_worker_killed_mid_burst_of_resolutions_loses_none_it_acknowledged(tmp_path: Path) -> None:
    """The shipped invoice extractor sends what neither of its models can answer to people: 20 cases out of
    these 450 invoices in layouts it never saw. Reviewers resolve them in a burst; the worker dies mid-way."""
    port = free_port()
    database = tmp_path / "store.sqlite3"
    examples = [json.loads(line) for line in
                (MODELS / "invoice-extractor" / "data" / "unseen.jsonl").read_text().splitlines()[250:700]]
    acknowledged: list[int] = []
    lock = threading.Lock()
    with serving("--store", f"sqlite:///{database}", port=port) as process, \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        cases = [(response.review_case, example) for example in examples
                 if (response := stub.Predict(pb.PredictRequest(model="invoice-extractor", text=example["text"]),
                                              timeout=30)).review_case]
        assert len(cases) >= 10
        for case_id, _ in cases:
            stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="alice"), timeout=10)

        def resolve(case_id: int, example: dict) -> None:
            truth = {name: value or "" for name, value in example["fields"].items()}
            try:
                stub.ResolveCase(pb.ResolveCaseRequest(id=case_id, reviewer="alice", fields=truth), timeout=10)
            except grpc.RpcError:
                return
            with lock:
                acknowledged.append(case_id)

        with ThreadPoolExecutor(4) as pool:
            for i, (case_id, example) in enumerate(cases):
                pool.submit(resolve, case_id, example)
                if i == len(cases) // 2:
                    wait_for(lambda: len(acknowledged) >= 3)
                    process.send_signal(signal.SIGKILL)
    assert 3 <= len(acknowledged) < len(cases)
    with sqlite3.connect(database) as connection:
        resolved = {row[0] for row in connection.execute("SELECT id FROM review_cases WHERE state = 'resolved'")}
        judged = {row[0] for row in connection.execute(
            "SELECT c.id FROM review_cases c JOIN decisions d ON d.request_id = c.request_id "
            "JOIN feedback f ON f.decision_id = d.id WHERE f.source = 'review'")}
    assert set(acknowledged) <= resolved and set(acknowledged) <= judged


def test_each_item_of_a_batch_is_judged_by_feedback_on_any_worker_and_read_back_in_the_decision_log_view(
        tmp_path: Path) -> None:
    """A batch's decisions are one row in the store; each item is still found by its request id, on either
    worker, once, and the ``decision_log`` view shows it as the row it would have been alone: items sent one
    message each (with ids of the server's, and of the caller's), and stacked inputs (served over arrays, with
    ids made from the batch's key)."""
    port = free_port()
    path = tmp_path / "store.sqlite3"
    rows = digits_rows()[:160]
    given = [f"caller-{i}" for i in range(32)]  # the second batch's items bring their own ids
    stacked = np.asarray([row["pixels"] for row in rows[96:]], dtype="<f4")
    with serving("--workers", "2", "--store", f"sqlite:///{path}", port=port), \
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = guard_pb2_grpc.GuardStub(channel)
        batches = [pb.PredictBatchRequest(model="digits", items=[digits_request(row["pixels"]) for row in rows[:64]]),
                   pb.PredictBatchRequest(model="digits", items=[
                       digits_request(row["pixels"], request_id=request_id)
                       for row, request_id in zip(rows[64:96], given, strict=True)]),
                   pb.PredictBatchRequest(model="digits", inputs=[pb.Tensor(
                       name="pixels", dtype=pb.FLOAT32, shape=[64, 64], raw_contents=stacked.tobytes())])]
        answers = [result.response for batch in batches for result in stub.PredictBatch(batch, timeout=30).results]
        ids = [answer.request_id for answer in answers]
        assert ids[64:96] == given and len({i[:28] for i in ids[96:]}) == 1  # the stacked batch's key
        with ThreadPoolExecutor(8) as pool:
            judged = list(pool.map(lambda i: feedback_on_a_new_channel(port, ids[i], rows[i]["label"]), range(160)))
            again = list(pool.map(lambda i: feedback_on_a_new_channel(port, ids[i], rows[i]["label"]), range(160)))
        with pytest.raises(grpc.RpcError) as conflict:
            feedback_on_a_new_channel(port, ids[100], "9" if rows[100]["label"] != "9" else "8")
    assert [(r.request_id, r.duplicate) for r in judged] == [(i, False) for i in ids]
    assert [(r.request_id, r.duplicate) for r in again] == [(i, True) for i in ids]
    assert [r.decision for r in judged] == [a.decision for a in answers]
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with sqlite3.connect(path) as connection:
        logged = connection.execute("SELECT request_id, decision, label, confidence, id IS NOT NULL FROM decision_log "
                                    "ORDER BY at, batch_id, position").fetchall()
        counts = [connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("decision_batches", "batch_items", "decisions", "feedback")]
    assert logged == [(a.request_id, pb.Decision.Name(a.decision), a.classification.label, a.confidence, 1)
                      for a in answers]
    assert counts == [3, 160, 160, 160]  # each judged item made a decisions row (and a keyed one its entry), once
