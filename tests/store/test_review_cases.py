"""The review queue's queries on both engines: oldest first, filters, counts, one winner per claim, leases that
expire by the clock, closing only under one's own live lease."""

from __future__ import annotations

import threading

from smallguard.server.store import open_store
from smallguard.server.store.review_cases import CLAIMED, DISMISSED, OPEN, RESOLVED, ReviewCases


def queue(url: str) -> ReviewCases:
    return ReviewCases(open_store(url))


def opened(cases: ReviewCases, request_id: str, now: float, model: str = "digits", reason: str = "LOW_CONFIDENCE",
           ) -> int:
    return cases.open(request_id=request_id, model=model, version="1", kind="classifier", reason=reason,
                      details={"input": {"record": {"pixels": [0.0]}}, "tiers": []}, now=now)


def test_the_queue_is_oldest_first_and_filters_by_model_and_reason(store_url: str) -> None:
    cases = queue(store_url)
    a = opened(cases, "a", 30.0)
    b = opened(cases, "b", 10.0, reason="VERIFIER_FAILED")
    c = opened(cases, "c", 20.0, model="invoices")
    assert [x.id for x in cases.queue(100.0)] == [b, c, a]
    assert [x.id for x in cases.queue(100.0, model="digits")] == [b, a]
    assert [x.id for x in cases.queue(100.0, reason="VERIFIER_FAILED")] == [b]
    assert [x.id for x in cases.queue(100.0, limit=1, after_id=b)] == [c]
    assert cases.counts(100.0) == {("digits", OPEN): (2, 10.0), ("invoices", OPEN): (1, 20.0)}
    assert cases.for_request("b", 100.0).id == b and cases.for_request("zzz", 100.0) is None
    cases.store.close()


def test_one_claim_wins_and_an_expired_lease_opens_the_case_again(store_url: str) -> None:
    cases = queue(store_url)
    case = opened(cases, "a", 0.0)
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def claim(reviewer: str) -> None:
        barrier.wait()
        if cases.claim(case, reviewer, lease_s=60.0, now=100.0):
            wins.append(reviewer)

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    holder = wins[0]
    assert cases.get(case, 120.0).state == CLAIMED and cases.get(case, 120.0).claimed_by == holder
    assert cases.claim(case, holder, 60.0, now=130.0)  # renewing one's own claim
    assert not cases.claim(case, "someone-else", 60.0, now=150.0)
    assert cases.get(case, 191.0).state == OPEN  # the renewed lease ran to 190
    assert cases.counts(191.0) == {("digits", OPEN): (1, 0.0)}
    assert not cases.close(case, holder, RESOLVED, now=191.0, truth="3")  # too late: claim it again
    assert cases.claim(case, "someone-else", 60.0, now=192.0)
    assert not cases.close(case, holder, RESOLVED, now=193.0, truth="3")
    assert cases.close(case, "someone-else", DISMISSED, now=194.0, note="blank image")
    closed = cases.get(case, 200.0)
    assert (closed.state, closed.closed_by, closed.note, closed.lease_until) == (DISMISSED, "someone-else",
                                                                                   "blank image", None)
    assert not cases.claim(case, "third", 60.0, now=201.0)
    cases.store.close()


def test_a_resolution_keeps_the_truth_and_export_reads_it_in_order(store_url: str) -> None:
    cases = queue(store_url)
    first, second = opened(cases, "a", 0.0), opened(cases, "b", 1.0)
    for case, truth in ((second, {"total": "10.00", "tax": ""}), (first, "7")):
        assert cases.claim(case, "alice", 60.0, now=5.0)
        assert cases.close(case, "alice", RESOLVED, now=6.0, truth=truth)
    assert [(c.id, c.truth) for c in cases.resolved()] == [(first, "7"), (second, {"total": "10.00", "tax": ""})]
    assert [c.id for c in cases.resolved(after_id=first)] == [second]
    cases.store.close()
