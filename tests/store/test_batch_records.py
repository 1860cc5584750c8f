"""A PredictBatch's decisions in the store: one batch row and an index of request ids, read back through the
``decision_log`` view as the rows they would have been alone, found and judged by feedback, purged by age."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from smallguard.server.core.request_ids import new_batch_ids
from smallguard.server.domain.predictions import (
    BatchOutcome,
    Decision,
    PredictCall,
    PredictOutcome,
    TensorInput,
    TierOutcome,
)
from smallguard.server.store import DecisionLog, FeedbackRow, Store, decision_log, open_store
from smallguard.server.store.batch_records import DecisionBatch, items_document
from smallguard.server.store.decision_log import decision_row
from smallguard.server.store.records import DECISION_COLUMNS
from smallguard.server.store.schema import batch_items, decision_batches, decisions
from smallguard.verifiers import LabelScore, ModelKind, Prediction
from tests.store.test_decision_log import outcome, rows


def classified(request_id: str, label: str, confidence: float, decision: Decision = Decision.ANSWER) -> PredictOutcome:
    prediction = Prediction(ModelKind.CLASSIFIER, label, confidence, (LabelScore(label, confidence),))
    return dataclasses.replace(outcome(request_id, decision), model="digits", model_version="1.0.0",
                               prediction=prediction, confidence=confidence, raw_confidence=confidence / 2)


def pixels(i: int) -> PredictCall:
    return PredictCall("", tensors=(TensorInput("pixels", "float32", (64,), np.full(64, i, dtype=np.float32)),),
                       caller="team-a" if i % 2 else "")


def batch_of(count: int, prefix: str = "b") -> list:
    """Items unlike each other: labels, confidences, a caller or none, an escalation answered by a tier."""
    items = [(pixels(i), classified(f"{prefix}{i}", str(i % 10), 0.5 + i / 1000)) for i in range(count)]
    tier = TierOutcome("bigger", "grpc", Decision.ANSWER, Prediction(ModelKind.CLASSIFIER, "7", 0.99), True, 0.99,
                       0.99, 0.9, (), (), 12.0, 0.002, 1)
    items[1] = (items[1][0], dataclasses.replace(items[1][1], decision=Decision.ANSWER, tiers=(tier,),
                                                 answered_by="bigger", cost=0.002))
    return items


@pytest.fixture(params=["ids of their own", "keyed ids"])
def keyed(request: pytest.FixtureRequest) -> bool:
    """A batch whose items brought their ids (an entry each in batch_items), or one whose ids the server made from
    the batch's key (found from the id alone: no entry until a feedback makes one)."""
    return request.param == "keyed ids"


def append(log: DecisionLog, items: list, inputs: str, keyed: bool) -> list:
    """Append ``items`` as one batch; the items, with the ids the batch gave them."""
    if not keyed:
        log.append_many(items, inputs)
        return items
    key, ids = new_batch_ids(len(items))
    items = [(call, dataclasses.replace(result, request_id=i)) for (call, result), i in zip(items, ids, strict=True)]
    first = items[0][1]
    rows = [decision_log._item(call, result, inputs, {}) for call, result in items]
    batch = DecisionBatch(first.model, first.model_version, "classifier", tuple(ids), items_document(rows), time.time(),
                          key)
    log.append_batch(batch)
    return items


def written(store_url: str, items: list, inputs: str = "hash", keyed: bool = False) -> tuple[DecisionLog, list]:
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    items = append(log, items, inputs, keyed)
    assert log.flush(10)
    return log, items


def columns(row: sa.Row) -> tuple:
    return tuple(getattr(row, name) for name in DECISION_COLUMNS)


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_a_batch_is_one_row_and_reads_back_as_the_rows_its_decisions_would_have_been(store_url: str,
                                                                                     keyed: bool) -> None:
    log, items = written(store_url, batch_of(70), keyed=keyed)
    back = rows(log.store)
    at = back[0].at
    assert (count(log.store, decision_batches), count(log.store, decisions)) == (1, 0)
    assert count(log.store, batch_items) == (0 if keyed else 70)
    assert [columns(row) for row in back] == [decision_row(call, result, "hash", at) for call, result in items]
    assert [(row.id, row.batch_id is not None, row.position) for row in back] == [(None, True, i) for i in range(70)]
    assert log.written_rows == 70 and log.pending == 0
    log.close()
    log.store.close()


def test_feedback_finds_a_batch_item_and_judges_the_row_it_would_have_had(store_url: str, keyed: bool) -> None:
    log, items = written(store_url, batch_of(5), "none", keyed)
    store = log.store
    ids = [result.request_id for _, result in items]
    found = store.first_decision(ids[1])
    assert (found.request_id, found.model, found.decision, found.answered_by, found.label) == (
        ids[1], "digits", "ANSWER", "bigger", "1")
    assert store.first_decision(ids[1]).id == found.id  # made a row once
    assert count(store, batch_items) == (1 if keyed else 5)
    assert store.add_feedback(found, FeedbackRow("1", True, (), True, found.confidence, ()), time.time()) is None
    with store.engine.connect() as connection:
        [row] = connection.execute(sa.select(decisions)).all()
    assert columns(row) == decision_row(items[1][0], items[1][1], "none", row.at)
    view = rows(store)  # the item once, now as its decisions row
    assert [(r.request_id, r.id) for r in view] == [(ids[0], None), (ids[1], found.id), (ids[2], None),
                                                    (ids[3], None), (ids[4], None)]
    assert store.first_decision("nobody") is None
    if keyed:  # the batch's key, but no such place in it; a key no batch has
        assert store.first_decision(ids[0][:-4] + "0005") is None
        assert store.first_decision("f" * 28 + "0001") is None
    log.close()
    store.close()


def test_many_readers_make_a_batch_item_one_row(store_url: str, keyed: bool) -> None:
    log, items = written(store_url, batch_of(3), keyed=keyed)
    wanted = items[2][1].request_id
    stores = [open_store(store_url) for _ in range(4)]  # as four processes would
    found: list[int] = []
    threads = [threading.Thread(target=lambda s=s: found.append(s.first_decision(wanted).id)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and len(set(found)) == 1
    assert count(log.store, decisions) == 1
    for store in stores:
        store.close()
    log.close()
    log.store.close()


def test_a_request_id_in_a_batch_and_alone_belongs_to_the_earlier(store_url: str) -> None:
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    log.append(None, outcome("alone-first", Decision.ESCALATE), "none")
    log.append_many([(None, classified("alone-first", "3", 0.9)), (None, classified("batch-first", "4", 0.9))],
                    "none")
    log.append(None, outcome("batch-first", Decision.ESCALATE), "none")
    assert log.flush(10)
    assert log.store.first_decision("alone-first").decision == "ESCALATE"
    assert (log.store.first_decision("batch-first").decision, log.store.first_decision("batch-first").label) == (
        "ANSWER", "4")
    log.close()
    log.store.close()


def test_retention_removes_old_batches_their_items_and_the_rows_feedback_made(store_url: str, keyed: bool) -> None:
    log, old = written(store_url, batch_of(3, "old"), keyed=keyed)
    store = log.store
    new = append(log, batch_of(2, "new"), "none", keyed)
    assert log.flush(10)
    judged = store.first_decision(old[0][1].request_id)
    store.add_feedback(judged, FeedbackRow("0", True, (), True, 0.5, ()), time.time())
    month_ago = time.time() - 40 * 86_400
    with store.engine.begin() as connection:
        connection.execute(sa.update(decision_batches).where(decision_batches.c.id == 1).values(at=month_ago))
        connection.execute(sa.update(decisions).values(at=month_ago))
    assert store.purge(time.time() - 30 * 86_400) == 2  # the batch, and the row its judged item became
    assert [r.request_id for r in rows(store)] == [result.request_id for _, result in new]
    assert store.first_decision(old[1][1].request_id) is None
    assert store.first_decision(new[1][1].request_id) is not None
    with store.engine.connect() as connection:
        entries = connection.execute(sa.text("SELECT count(*) FROM batch_items")).scalar_one()
        assert entries == (1 if keyed else 2)  # keyed: the one found above
        assert connection.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one() == 0
    log.close()
    store.close()


def test_a_stacked_batch_past_the_buffers_room_keeps_its_first_items_and_counts_the_rest(tmp_path: Path) -> None:
    log = DecisionLog(open_store(f"sqlite:///{tmp_path / 's.sqlite3'}"), capacity=5, flush_interval_s=60)
    key, ids = new_batch_ids(8)
    results = [classified(i, str(n), 0.9) for n, i in enumerate(ids)]
    outcome = BatchOutcome("digits", "1.0.0", results[0].threshold, results[0].trace_id, ids,
                           [r.decision for r in results], [r.prediction for r in results],
                           [r.confidence for r in results], [r.raw_confidence for r in results],
                           [r.reasons for r in results], [r.verifiers for r in results], key)
    pixels = np.arange(8 * 64, dtype=np.float32).reshape(8, 64)
    tensors = [TensorInput("pixels", "float32", (8, 64), pixels.reshape(-1))]
    log.append(None, classified("alone", "1", 0.9), "none")
    log.append_stacked(outcome, tensors, "hash", "team-a")
    assert (log.pending, log.dropped) == (5, 4)
    assert log.flush(10)
    back = rows(log.store)
    assert [r.request_id for r in back] == ["alone", *ids[:4]]
    calls = [PredictCall("", tensors=(TensorInput("pixels", "float32", (64,), pixels[i]),), caller="team-a")
             for i in range(4)]  # the items as calls of their own: what their rows would have been
    assert [columns(r) for r in back[1:]] == [decision_row(call, result, "hash", back[1].at)
                                              for call, result in zip(calls, results[:4], strict=True)]
    log.close()
    log.store.close()


def test_an_id_already_judged_keeps_its_decision_whichever_was_made_first(store_url: str) -> None:
    """An id logged alone and in a batch belongs to the earlier, unless the other was judged already: a feedback
    recorded must not move to another decision (a batch written late, or by a replica whose clock is behind)."""
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    store = log.store
    log.append(None, outcome("both", Decision.ESCALATE), "none")
    assert log.flush(10)
    judged = store.first_decision("both")
    store.add_feedback(judged, FeedbackRow("x", True, (), True, 0.6, ()), time.time())
    log.append_many([(None, classified("both", "4", 0.9))], "none")
    assert log.flush(10)
    with store.engine.begin() as connection:  # the batch's decision made earlier than the judged one
        connection.execute(sa.update(decision_batches).values(at=judged.at - 60))
    assert store.first_decision("both").id == judged.id
    with store.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM feedback"))
    assert store.first_decision("both").label == "4"  # nobody judged either: the earlier
    log.close()
    store.close()
