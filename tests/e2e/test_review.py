"""The review queue end to end: a request no model could answer becomes a case; a reviewer claims and resolves
it over gRPC while the caller waits on a stream; the resolution is feedback that GetModel counts; two
reviewers race for one case; a lease expires; a truth that does not fit is refused."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.server.assembly import create_server
from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.commands.labelled_data import read_labelled
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import (
    DIGITS,
    SMALLGUARD,
    Running,
    by,
    copy_bundle,
    digits_request,
    digits_rows,
    points,
    start_server,
)

pytestmark = pytest.mark.e2e

BUNDLE = (DIGITS / "bundle.yaml").read_text().split("drift:")[0] + """
verifiers:
  - use: label-allowed
    params: {context_key: allowed_labels}
    on_fail: escalate
escalation:
  - name: people
    kind: review
    lease_seconds: 10
"""


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    copy_bundle(DIGITS, tmp_path / "models", "digits", BUNDLE)
    server = start_server(tmp_path / "models", store=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield server
    server.stop()


def escalated(stub: guard_pb2_grpc.GuardStub, row: dict) -> pb.PredictResponse:
    """A digit the caller allows only if it is a 0: anything else fails label-allowed and escalates to review."""
    request = digits_request(row["pixels"])
    request.context["allowed_labels"] = "0"
    return stub.Predict(request, timeout=10)


def rows_not_zero() -> list[dict]:
    return [row for row in digits_rows() if row["label"] != "0"]


def test_a_case_is_opened_claimed_and_resolved_while_the_caller_waits(running: Running) -> None:
    stub = running.stub
    row = rows_not_zero()[0]
    response = escalated(stub, row)
    assert response.decision == pb.ESCALATE and response.review_case > 0
    assert [t.kind for t in response.tiers] == ["model", "review"]
    in_review = [r for r in response.reasons if r.code == pb.Reason.IN_REVIEW]
    assert in_review and f"review case {response.review_case} opened" in in_review[0].message

    listed = stub.ListCases(pb.ListCasesRequest(), timeout=10)
    [case] = listed.cases
    assert (case.id, case.request_id, case.state, case.reason) == (
        response.review_case, response.request_id, "OPEN", "VERIFIER_FAILED")
    assert case.classification.label == response.classification.label
    assert [v.name for v in case.verifiers if v.status == pb.VerifierResult.FAILED] == ["label-allowed"]
    assert listed.counts["OPEN"] == 1

    seen: list[pb.ReviewCase] = []
    first = threading.Event()

    def wait() -> None:
        for case_now in stub.WaitForReview(pb.WaitForReviewRequest(request_id=response.request_id), timeout=30):
            seen.append(case_now)
            first.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert first.wait(10)  # the caller is waiting before the reviewer starts
    claimed = stub.ClaimCase(pb.ClaimCaseRequest(id=case.id, reviewer="alice"), timeout=10)
    assert (claimed.state, claimed.claimed_by) == ("CLAIMED", "alice") and claimed.lease_until > time.time()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ClaimCase(pb.ClaimCaseRequest(id=case.id, reviewer="bob"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"case {case.id}: claimed by 'alice' for another" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ResolveCase(pb.ResolveCaseRequest(id=case.id, reviewer="alice", label="eleven"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'eleven' is not a label" in \
        caught.value.details()

    resolved = stub.ResolveCase(pb.ResolveCaseRequest(id=case.id, reviewer="alice", label=row["label"]), timeout=10)
    waiter.join(30)
    assert (resolved.state, resolved.closed_by, resolved.label) == ("RESOLVED", "alice", row["label"])
    assert seen[0].state == "OPEN" and seen[-1].state == "RESOLVED"  # the stream ended at the answer
    feedback = stub.GetModel(pb.GetModelRequest(name="digits"), timeout=10).feedback
    assert feedback.matched == 1  # the reviewer's truth is feedback on the request
    with pytest.raises(grpc.RpcError) as caught:
        stub.DismissCase(pb.DismissCaseRequest(id=case.id, reviewer="alice"), timeout=10)
    assert "already resolved by 'alice'" in caught.value.details()
    assert stub.ListCases(pb.ListCasesRequest(), timeout=10).counts["RESOLVED"] == 1


def test_two_reviewers_claiming_at_once_one_wins(running: Running) -> None:
    stub = running.stub
    case_id = escalated(stub, rows_not_zero()[1]).review_case
    results: dict[str, str] = {}
    start = threading.Barrier(8)

    def claim(reviewer: str) -> None:
        start.wait()
        try:
            results[reviewer] = stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer=reviewer), timeout=10).state
        except grpc.RpcError as error:
            results[reviewer] = error.code().name

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == ["CLAIMED"] + ["FAILED_PRECONDITION"] * 7


def test_an_expired_lease_returns_the_case_to_the_queue(running: Running) -> None:
    stub = running.stub
    case_id = escalated(stub, rows_not_zero()[2]).review_case
    stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="alice"), timeout=10)
    assert not stub.ListCases(pb.ListCasesRequest(state="OPEN"), timeout=10).cases
    time.sleep(10.5)  # the bundle's lease_seconds (10, the shortest allowed)
    [case] = stub.ListCases(pb.ListCasesRequest(state="OPEN"), timeout=10).cases
    assert (case.id, case.state, case.claimed_by) == (case_id, "OPEN", "")
    with pytest.raises(grpc.RpcError) as caught:
        stub.ResolveCase(pb.ResolveCaseRequest(id=case_id, reviewer="alice", label="3"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "claim it first" in caught.value.details()
    assert stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="bob"), timeout=10).claimed_by == "bob"
    dismissed = stub.DismissCase(pb.DismissCaseRequest(id=case_id, reviewer="bob", note="not a digit"), timeout=10)
    assert (dismissed.state, dismissed.note) == ("DISMISSED", "not a digit")


def test_a_reviewer_or_note_the_store_could_not_keep_is_refused_as_the_callers_mistake(running: Running) -> None:
    """Names and notes are stored as text, and filters compared with it, and PostgreSQL refuses a NUL: that must be
    INVALID_ARGUMENT naming the field, not UNAVAILABLE as if the store were down. A note may have lines."""
    stub = running.stub
    case_id = escalated(stub, rows_not_zero()[3]).review_case
    with pytest.raises(grpc.RpcError) as caught:
        stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="al\x00ice"), timeout=10)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "reviewer: holds the control character '\\x00' at 2; expected printable text")
    stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="alice"), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        stub.DismissCase(pb.DismissCaseRequest(id=case_id, reviewer="alice", note="no\x00pe"), timeout=10)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, "note: holds the control character '\\x00' at 2; expected printable text")
    with pytest.raises(grpc.RpcError) as caught:
        stub.ResolveCase(pb.ResolveCaseRequest(id=case_id, reviewer="alice", label="3", note="\x07"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for listing in (pb.ListCasesRequest(model="dig\x00its"), pb.ListCasesRequest(reason="\x00")):
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListCases(listing, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "control character" in caught.value.details()
    dismissed = stub.DismissCase(pb.DismissCaseRequest(id=case_id, reviewer="alice", note="not a digit:\n\ta smudge"),
                                 timeout=10)
    assert (dismissed.state, dismissed.note) == ("DISMISSED", "not a digit:\n\ta smudge")


def test_waiting_for_a_request_that_went_to_no_review_is_not_found(running: Running) -> None:
    answered = running.stub.Predict(digits_request(digits_rows()[0]["pixels"]), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        list(running.stub.WaitForReview(pb.WaitForReviewRequest(request_id=answered.request_id), timeout=10))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no review case was opened for this request" in caught.value.details()


def test_resolved_cases_export_as_labelled_data_that_calibrate_reads(running: Running, tmp_path: Path) -> None:
    stub = running.stub
    rows = rows_not_zero()[3:6]
    cases = [escalated(stub, row).review_case for row in rows]
    for case_id, row in zip(cases[:2], rows, strict=False):
        stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="alice"), timeout=10)
        stub.ResolveCase(pb.ResolveCaseRequest(id=case_id, reviewer="alice", label=row["label"]), timeout=10)
    output = tmp_path / "reviewed.jsonl"
    done = subprocess.run([*SMALLGUARD, "export-labels", "--store", f"sqlite:///{tmp_path / 'store.sqlite3'}",
                           "--model", "digits", "-o", str(output)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "exported 2 resolved case(s) of digits" in done.stderr  # the third is still open
    examples = read_labelled(output, read_bundle(tmp_path / "models" / "digits"))
    spec = read_bundle(tmp_path / "models" / "digits")
    assert [spec.labels[e.label] for e in examples] == [row["label"] for row in rows[:2]]
    assert [e.call.context for e in examples] == [{"allowed_labels": "0"}] * 2
    assert examples[0].feeds["pixels"].ravel().tolist() == pytest.approx(rows[0]["pixels"])


def test_the_queue_and_its_closings_are_measured(tmp_path: Path) -> None:
    copy_bundle(DIGITS, tmp_path / "models", "digits", BUNDLE)
    reader = InMemoryMetricReader()
    settings = Settings(host="127.0.0.1", port=0, model_repository=tmp_path / "models",
                        store=f"sqlite:///{tmp_path / 'store.sqlite3'}")
    server = create_server(settings, meter_provider=MeterProvider(metric_readers=[reader]))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = guard_pb2_grpc.GuardStub(channel)
            rows = rows_not_zero()[:3]
            responses = [escalated(stub, row) for row in rows]
            ids = [response.review_case for response in responses]
            got = points(reader)
            assert by(got["smallguard.review.cases"], "smallguard.review.state") == {"open": 3}
            [age] = got["smallguard.review.oldest_open_age"]
            assert 0 <= age.value < 60 and dict(age.attributes) == {"smallguard.model.name": "digits"}
            for case_id in ids[:2]:
                stub.ClaimCase(pb.ClaimCaseRequest(id=case_id, reviewer="alice"), timeout=10)
            # the reviewer confirms the first case's true label and corrects the second's answer
            said = [response.classification.label for response in responses]
            wrong = next(label for label in "123456789" if label != said[1])
            stub.ResolveCase(pb.ResolveCaseRequest(id=ids[0], reviewer="alice", label=rows[0]["label"]), timeout=10)
            stub.ResolveCase(pb.ResolveCaseRequest(id=ids[1], reviewer="alice", label=wrong), timeout=10)
            stub.ClaimCase(pb.ClaimCaseRequest(id=ids[2], reviewer="bob"), timeout=10)
            stub.DismissCase(pb.DismissCaseRequest(id=ids[2], reviewer="bob"), timeout=10)
        got = points(reader)
        assert by(got["smallguard.review.closed"], "smallguard.review.outcome") == {"resolved": 2, "dismissed": 1}
        agreement = by(got["smallguard.review.agreement"], "smallguard.tier.name", "smallguard.review.agreed")
        agreed_first = said[0] == rows[0]["label"]
        # one answer per resolved case, the small model's: the corrected one disagreed
        assert agreement == Counter({("digits", "true"): int(agreed_first), ("digits", "false"): 2 - int(agreed_first)})
        assert by(got["smallguard.review.duration"], "smallguard.review.outcome") == {"resolved": 2, "dismissed": 1}
        assert by(got["smallguard.review.cases"], "smallguard.review.state") == {"resolved": 2, "dismissed": 1}
    finally:
        server.stop(0)


def test_the_client_waits_for_a_persons_answer(running: Running) -> None:
    from smallguard.client import Client

    row, other = rows_not_zero()[6:8]
    with Client(running.address) as client:
        result = client.predict("digits", pixels=row["pixels"], context={"allowed_labels": "0"})
        assert result.decision == "ESCALATE" and result.review_case > 0

        def review() -> None:
            time.sleep(0.5)
            running.stub.ClaimCase(pb.ClaimCaseRequest(id=result.review_case, reviewer="carol"), timeout=10)
            running.stub.ResolveCase(pb.ResolveCaseRequest(id=result.review_case, reviewer="carol",
                                                           label=row["label"]), timeout=10)

        reviewer = threading.Thread(target=review)
        reviewer.start()
        answer = client.wait_for_review(result.request_id, timeout=20)
        reviewer.join()
        assert (answer.resolved, answer.label, answer.reviewer) == (True, row["label"], "carol")
        pending = client.predict("digits", pixels=other["pixels"], context={"allowed_labels": "0"})
        started = time.monotonic()
        still = client.wait_for_review(pending.request_id, timeout=2.0)  # nobody answers in time
        assert still.state == "OPEN" and not still.resolved and time.monotonic() - started < 5
