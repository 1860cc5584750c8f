"""The decision log: what a decision row holds, inputs kept as the bundle says, a store that fails and comes
back, a full buffer, the write at stop, and retention."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from smallguard.server.domain.errors import StoreError
from smallguard.server.domain.predictions import (
    Decision,
    PredictCall,
    PredictOutcome,
    Reason,
    ReasonCode,
    TensorInput,
    VerifierOutcome,
)
from smallguard.server.store import DecisionLog, FeedbackRow, Store, open_store
from smallguard.server.store.decision_log import WRITER_THREAD, decision_row
from smallguard.server.store.schema import decision_log, decisions
from smallguard.verifiers import ExtractedField, ModelKind, Prediction, Status


def outcome(request_id: str, decision: Decision = Decision.ANSWER) -> PredictOutcome:
    fields = {"total": ExtractedField("total", "120.00", 0.9, 0.8), "tax": ExtractedField("tax", None, 0.7, 0.7)}
    prediction = Prediction(kind=ModelKind.EXTRACTOR, probability=0.6, fields=fields)
    return PredictOutcome(request_id, "invoice-extractor", "2.0.0", decision, prediction, 0.6, 0.5, 0.8,
                          (Reason(ReasonCode.VERIFIER_FAILED, "tax > total", "tax-le-total"),),
                          (VerifierOutcome("tax-le-total", "not-greater", Status.FAILED, "tax > total",
                                           Decision.ESCALATE, 0.1),), trace_id="ab" * 16)


def rows(store: Store) -> list[sa.Row]:
    """Every decision logged, alone or in a batch, in the order they were made."""
    view = decision_log
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(view).order_by(view.c.at, view.c.batch_id, view.c.position,
                                                                view.c.id)))


def test_a_decision_row_holds_what_was_decided_and_why(store_url: str) -> None:
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    log.append(PredictCall("invoice-extractor", text="Invoice INV-7"), outcome("r1"), "none")
    assert log.flush(5)
    [row] = rows(log.store)
    log.close()
    log.store.close()
    assert (row.request_id, row.model, row.version, row.kind, row.decision) == (
        "r1", "invoice-extractor", "2.0.0", "extractor", "ANSWER")
    assert (row.confidence, row.raw_confidence, row.threshold, row.trace_id) == (0.6, 0.5, 0.8, "ab" * 16)
    details = json.loads(row.details)
    assert details["fields"] == {"total": ["120.00", 0.9], "tax": [None, 0.7]}
    assert details["reasons"] == [{"code": "VERIFIER_FAILED", "verifier": "tax-le-total", "message": "tax > total"}]
    assert details["verifiers"] == [{"name": "tax-le-total", "status": "failed", "message": "tax > total"}]
    assert (row.input_logged, row.input, row.answered_by, "tiers" in details) == ("none", None, "", False)
    assert abs(time.time() - row.at) < 60


def test_inputs_are_kept_as_the_bundle_says(tmp_path: Path) -> None:
    log = DecisionLog(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}"), flush_interval_s=0.01)
    text = PredictCall("m", text="Invoice INV-7 total 120.00")
    pixels = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = PredictCall("m", tensors=(TensorInput("pixels", "float32", (1, 4), pixels),))
    for i, (call, policy) in enumerate([(text, "hash"), (text, "full"), (tensor, "hash"), (tensor, "full")]):
        log.append(call, outcome(f"r{i}"), policy)
    log.flush(5)
    found = [(r.input_logged, r.input) for r in rows(log.store)]
    log.close()
    log.store.close()
    assert found[0] == ("hash", hashlib.sha256(b"Invoice INV-7 total 120.00").hexdigest())
    assert (found[1][0], json.loads(found[1][1])) == ("full", {"text": "Invoice INV-7 total 120.00"})
    assert found[2] == ("hash", hashlib.sha256(b"pixels|float32|(1, 4)|" + pixels.tobytes()).hexdigest())
    assert json.loads(found[3][1]) == {"tensors": [{"name": "pixels", "dtype": "float32", "shape": [1, 4],
                                                    "values": [0.0, 1.0, 2.0, 3.0]}]}


def test_a_request_id_sent_twice_keeps_both_decisions_and_the_first_owns_the_id(store_url: str) -> None:
    """A second Predict with an id (another caller's guess, or a retry) is logged for the audit, but the
    id's feedback still judges the first decision: nobody can replace another caller's record."""
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    log.append(None, outcome("same", Decision.ESCALATE), "none")
    log.append(None, outcome("same", Decision.ANSWER), "none")
    log.flush(5)
    assert [r.decision for r in rows(log.store)] == ["ESCALATE", "ANSWER"]
    assert log.store.first_decision("same").decision == "ESCALATE"
    assert log.store.first_decision("other") is None
    log.close()
    log.store.close()


class Failing(Store):
    """A store whose decision writes fail while ``down`` (a fault injected in process; tests/e2e/test_store.py
    stops a real PostgreSQL instead)."""

    down = False

    def write_decisions(self, rows: list) -> None:  # type: ignore[override]
        if self.down:
            raise StoreError("the store test failed: connection refused")
        super().write_decisions(rows)


def test_while_the_store_fails_decisions_wait_in_the_buffer_up_to_its_capacity(tmp_path: Path) -> None:
    store = Failing(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}").engine)
    log = DecisionLog(store, capacity=5, flush_interval_s=0.01)
    heard: list[tuple[bool, str]] = []
    log.subscribe(lambda up, reason: heard.append((up, reason)))
    store.down = True
    for i in range(8):
        log.append(None, outcome(f"r{i}"), "none")
    assert not log.flush(0.3)
    deadline = time.monotonic() + 10
    while log.up and time.monotonic() < deadline:  # a busy machine may not have run the writer yet
        time.sleep(0.01)
    assert (log.up, log.pending, log.dropped) == (False, 5, 3)
    assert log.failed_writes >= 1 and "connection refused" in log.reason
    store.down = False
    assert log.flush(10)
    assert [r.request_id for r in rows(store)] == [f"r{i}" for i in range(5)]
    assert (log.up, log.pending, log.written_rows) == (True, 0, 5)
    assert heard == [(False, "the store test failed: connection refused"), (True, "")]
    log.close()
    log.store.close()


def test_a_write_of_many_rows_keeps_each_row_and_their_order(store_url: str) -> None:
    """Rows go in by statements of 50 (a multi-row INSERT: half the CPU a row of one statement a row on
    PostgreSQL), the rest one by one: 123 rows are two whole statements and 23 alone."""
    store = open_store(store_url)
    written = [decision_row(PredictCall("m", text=f"input {i}"), dataclasses.replace(
        outcome(f"r{i}"), confidence=i / 1000, trace_id=f"{i:032x}"), "hash", 1_000.0 + i) for i in range(123)]
    store.write_decisions(written)
    back = rows(store)
    store.close()
    assert [r.request_id for r in back] == [f"r{i}" for i in range(123)]
    assert [(r.confidence, r.trace_id, r.at) for r in back] == [(i / 1000, f"{i:032x}", 1_000.0 + i)
                                                                for i in range(123)]
    assert [r.input for r in back] == [hashlib.sha256(f"input {i}".encode()).hexdigest() for i in range(123)]


def test_a_batch_fills_the_buffer_in_order_and_what_does_not_fit_is_dropped(tmp_path: Path) -> None:
    store = Failing(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}").engine)
    log = DecisionLog(store, capacity=5, flush_interval_s=0.01)
    store.down = True
    log.append(None, outcome("r0"), "none")
    log.append_many([(PredictCall("invoice-extractor", text=f"Invoice {i}"), outcome(f"r{i}")) for i in range(1, 7)],
                    "hash")  # room for four: the first four are kept
    assert (log.pending, log.dropped) == (5, 2)
    log.append_many([(None, outcome(f"r{i}")) for i in range(7, 10)], "none")  # no room left: all three dropped
    assert (log.pending, log.dropped) == (5, 5)
    store.down = False
    assert log.flush(10)
    written = rows(store)
    assert [r.request_id for r in written] == [f"r{i}" for i in range(5)]
    assert [r.input_logged for r in written] == ["none", "hash", "hash", "hash", "hash"]
    assert written[1].input == hashlib.sha256(b"Invoice 1").hexdigest()
    log.close()
    log.store.close()


def test_a_decision_that_cannot_be_made_a_row_is_dropped_and_the_rest_of_its_batch_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rows are built when a decision is appended, on the request path: one that fails must not fail the
    request, nor keep its batch's other decisions from the store."""
    log = DecisionLog(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}"), flush_interval_s=0.01)
    broken = dataclasses.replace(outcome("broken"), confidence="not a number")  # float() of it raises
    log.append_many([(None, outcome("r1")), (None, broken), (None, outcome("r2"))], "none")
    log.append(None, broken, "none")
    assert log.flush(5)
    assert [r.request_id for r in rows(log.store)] == ["r1", "r2"]
    assert log.dropped == 2
    assert "the decision for request 'broken' could not be made a row" in caplog.text
    log.close()
    log.store.close()


def test_a_row_the_store_refuses_is_dropped_alone_and_the_log_stays_up(store_url: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Not an outage: sending the same batch again would fail again, and every decision after it would wait
    behind it until the buffer filled. The rest of its batch is written, in order; the refused one is counted.
    A batch the store refuses is written a decision at a time, so that it loses only the one refused."""
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    heard: list[tuple[bool, str]] = []
    log.subscribe(lambda up, reason: heard.append((up, reason)))
    refused = dataclasses.replace(outcome("refused"), model=None)  # a NOT NULL column: both stores refuse it
    no_id = dataclasses.replace(outcome("no id"), request_id=None)  # NOT NULL too, in the batch's index
    log.append_many([(None, outcome("r1")), (None, no_id), (None, outcome("r2"))], "none")
    log.append(None, refused, "none")
    log.append(None, outcome("r3"), "none")
    assert log.flush(10)
    assert [r.request_id for r in rows(log.store)] == ["r1", "r2", "r3"]
    assert (log.dropped, log.written_rows, log.failed_writes, log.up, heard) == (2, 3, 0, True, [])
    assert caplog.text.count("the store refused the decision of request 'refused'") == 1
    assert caplog.text.count("the store refused the decision of request None") == 1
    assert log.store.first_decision("r2").decision == "ANSWER"  # the batch's others were written alone
    log.close()
    log.store.close()


def test_a_decision_that_cannot_be_made_a_row_is_said_once_however_often_its_batch_is_sent_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Failing(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}").engine)
    log = DecisionLog(store, flush_interval_s=0.01)
    store.down = True
    log.append(None, dataclasses.replace(outcome("broken"), confidence="not a number"), "none")
    log.append(None, outcome("r1"), "none")
    assert not log.flush(0.5)  # the writer tried, and tried again
    assert log.failed_writes >= 2 and log.holds("r1") and not log.holds("broken")
    store.down = False
    assert log.flush(10)
    assert [r.request_id for r in rows(store)] == ["r1"] and log.dropped == 1
    assert caplog.text.count("the decision for request 'broken' could not be made a row") == 1
    log.close()
    log.store.close()


def test_a_batchs_decisions_wait_in_the_buffer_as_rows_that_feedback_can_find(tmp_path: Path) -> None:
    store = Failing(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}").engine)
    store.down = True
    log = DecisionLog(store, flush_interval_s=0.01)
    log.append_many([(None, outcome("batched"))], "none")
    log.append(None, outcome("single"), "none")
    assert log.holds("batched") and log.holds("single") and not log.holds("neither")
    store.down = False
    assert log.flush(10)
    assert not log.holds("batched")
    log.close()
    log.store.close()


def test_decisions_appended_from_many_threads_are_numbered_in_buffer_order(tmp_path: Path) -> None:
    store = Failing(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}").engine)
    store.down = True  # nothing is written meanwhile: the whole buffer can be read back
    log = DecisionLog(store, capacity=100_000, flush_interval_s=60)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between any two bytecodes, where a race can show
    try:
        def work(k: int) -> None:
            for i in range(200):
                log.append(None, outcome(f"t{k}-{i}"), "none")
                log.append_many([(None, outcome(f"t{k}-{i}-{j}")) for j in range(3)], "none")

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old)
    numbers = [entry[0] for entry in list(log._pending)]
    assert len(numbers) == 4 * 200 * 2 and numbers == sorted(numbers)  # a batch is one entry
    assert log.pending == 4 * 200 * 4
    store.down = False
    log.close()
    log.store.close()


def test_a_stop_writes_what_is_buffered(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    log = DecisionLog(store, flush_interval_s=60)  # the writer would not wake on its own for a minute
    for i in range(100):
        log.append(None, outcome(f"r{i}"), "none")
    started = time.monotonic()
    log.close()
    log.store.close()
    assert time.monotonic() - started < 10
    assert len(rows(store)) == 100


def test_retention_removes_old_decisions_and_their_feedback(store_url: str) -> None:
    store = open_store(store_url)
    log = DecisionLog(store, flush_interval_s=0.01)
    log.append(None, outcome("old"), "none")
    log.append(None, outcome("new"), "none")
    log.flush(5)
    with store.engine.begin() as connection:
        connection.execute(sa.update(decisions).where(decisions.c.request_id == "old")
                           .values(at=time.time() - 40 * 86_400))
    old = store.first_decision("old")
    store.add_feedback(old, FeedbackRow("x", True, (), True, 0.6, ()), time.time())
    assert store.purge(time.time() - 30 * 86_400) == 1
    assert store.first_decision("old") is None and store.first_decision("new") is not None
    with pytest.raises(LookupError):
        store.add_feedback(old, FeedbackRow("x", True, (), True, 0.6, ()), time.time())
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one() == 0
    log.close()
    log.store.close()


def test_the_writer_thread_has_its_name_in_the_os(tmp_path: Path) -> None:
    """What top -H, py-spy and the benchmark's per-thread CPU read (/proc/PID/task/TID/comm)."""
    log = DecisionLog(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}"), flush_interval_s=0.01)
    try:
        deadline = time.monotonic() + 5
        names: set[str] = set()
        while WRITER_THREAD not in names and time.monotonic() < deadline:
            names = {(Path("/proc/self/task") / task / "comm").read_text().strip()
                     for task in os.listdir("/proc/self/task")}
            time.sleep(0.01)
        assert WRITER_THREAD in names
    finally:
        log.close()
        log.store.close()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
def test_a_tensors_hash_is_its_header_and_its_values_bytes_whatever_their_layout(dtype: str) -> None:
    values = (np.arange(24) % 3).astype(dtype).reshape(4, 6)
    layouts = [values, values[:, ::2], np.asfortranarray(values), values.T, values[1:3]]
    for array in layouts:
        call = PredictCall("m", tensors=(TensorInput("x", dtype, array.shape, array),
                                         TensorInput("y", dtype, (2,), array.ravel()[:2])))
        expected = hashlib.sha256(f"x|{dtype}|{array.shape}|".encode() + array.tobytes() +
                                  f"y|{dtype}|(2,)|".encode() + array.ravel()[:2].tobytes()).hexdigest()
        assert decision_row(call, outcome("a"), "hash", 0.0)[-2] == expected
