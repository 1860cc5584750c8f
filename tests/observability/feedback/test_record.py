"""The prediction record: bounded by count and by age, thread-safe, settled once per request."""

from __future__ import annotations

import contextlib
import threading

import pytest

from smallguard.server.domain.errors import RequestNotFoundError
from smallguard.server.domain.predictions import Decision
from smallguard.server.observability.feedback.record import PredictionRecord, Recorded, Verdict
from smallguard.verifiers import ModelKind


class Clock:
    """A clock the test moves by hand, so that expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(request_id: str, at: float = 1000.0, label: str = "3") -> Recorded:
    return Recorded(request_id=request_id, model="digits", version="1.0.0", kind=ModelKind.CLASSIFIER,
                    decision=Decision.ANSWER, confidence=0.99, label=label, fields={}, at=at)


def test_the_oldest_prediction_leaves_when_the_record_is_full() -> None:
    record = PredictionRecord(capacity=3, max_age_s=60, clock=Clock())
    for i in range(5):
        record.add(entry(f"r{i}"))
    assert len(record) == 3
    assert [record.get(f"r{i}").request_id for i in (2, 3, 4)] == ["r2", "r3", "r4"]
    with pytest.raises(RequestNotFoundError, match=r"'r0'.*3 newer predictions.*--feedback-capacity") as caught:
        record.get("r0")
    assert caught.value.expired and caught.value.request_id == "r0"


def test_a_prediction_older_than_the_age_limit_expires() -> None:
    clock = Clock()
    record = PredictionRecord(capacity=10, max_age_s=60, clock=clock)
    record.add(entry("old", at=clock()))
    clock.now += 30
    record.add(entry("young", at=clock()))
    clock.now += 31  # "old" is 61 s old, "young" 31 s
    assert record.get("young").request_id == "young"
    with pytest.raises(RequestNotFoundError, match=r"older than 60s.*--feedback-max-age-seconds") as caught:
        record.get("old")
    assert caught.value.expired
    assert len(record) == 1


def test_an_id_never_recorded_is_unknown_not_expired() -> None:
    record = PredictionRecord(capacity=2, max_age_s=60, clock=Clock())
    with pytest.raises(RequestNotFoundError, match=r"'nope': no prediction with this id.*last 2 predictions") as caught:
        record.get("nope")
    assert not caught.value.expired


def test_the_memory_of_expired_ids_is_bounded_too() -> None:
    record = PredictionRecord(capacity=2, max_age_s=60, clock=Clock())
    for i in range(6):
        record.add(entry(f"r{i}"))
    with pytest.raises(RequestNotFoundError) as forgotten:  # evicted long ago: forgotten entirely
        record.get("r0")
    assert not forgotten.value.expired
    with pytest.raises(RequestNotFoundError) as recent:
        record.get("r3")
    assert recent.value.expired


def test_a_repeated_request_id_replaces_the_older_prediction_and_its_feedback() -> None:
    record = PredictionRecord(capacity=5, max_age_s=60, clock=Clock())
    first = entry("same", label="3")
    record.add(first)
    assert record.settle(first, Verdict("3", True)) is None
    record.add(entry("same", label="5"))
    again = record.get("same")
    assert (again.label, again.verdict) == ("5", None)
    with pytest.raises(RequestNotFoundError, match="newer prediction reused this id"):
        record.settle(first, Verdict("3", True))


def test_settle_keeps_the_first_verdict() -> None:
    record = PredictionRecord(capacity=5, max_age_s=60, clock=Clock())
    record.add(entry("r"))
    found = record.get("r")
    assert record.settle(found, Verdict("3", True)) is None
    assert record.settle(found, Verdict("4", False)) == Verdict("3", True)
    assert record.get("r").verdict == Verdict("3", True)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        PredictionRecord(capacity=0, max_age_s=60)
    with pytest.raises(ValueError, match="max_age_s > 0"):
        PredictionRecord(capacity=1, max_age_s=0)


def test_concurrent_adds_and_settles_keep_the_bounds_and_settle_each_id_once() -> None:
    capacity, writers, per_writer = 200, 4, 500
    record = PredictionRecord(capacity=capacity, max_age_s=3600, clock=Clock())
    winners: list[str] = []
    sizes: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(writers * 3)

    def write(w: int) -> None:
        start.wait()
        for i in range(per_writer):
            record.add(entry(f"w{w}-{i}"))
            sizes.append(len(record))

    def judge(w: int) -> None:
        """Two judges race for every id of one writer; at most one may win each."""
        start.wait()
        for i in range(per_writer):
            try:  # the id may leave the record at any moment, even between the look-up and the settling
                found = record.get(f"w{w % writers}-{i}")
                settled = record.settle(found, Verdict("3", True))
            except RequestNotFoundError:
                continue
            if settled is None:
                with lock:
                    winners.append(found.request_id)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=judge, args=(w,)) for w in range(writers * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(sizes) <= capacity
    assert len(record) == capacity
    assert len(winners) == len(set(winners))
    # every id still in the record that a judge settled shows that judge's verdict
    for request_id in winners:
        with contextlib.suppress(RequestNotFoundError):
            assert record.get(request_id).verdict == Verdict("3", True)
