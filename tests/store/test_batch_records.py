"""A PredictBatch's decisions in the store: one batch row and an index of request ids, read back through the
``decision_log`` view as the rows they would have been alone, found and judged by feedback, purged by age."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import sqlalchemy as sa

from smallguard.server.domain.predictions import Decision, PredictCall, PredictOutcome, TensorInput, TierOutcome
from smallguard.server.store import DecisionLog, FeedbackRow, Store, open_store
from smallguard.server.store.decision_log import decision_row
from smallguard.server.store.records import DECISION_COLUMNS
from smallguard.server.store.schema import decision_batches, decisions
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


def written(store_url: str, items: list, inputs: str = "hash") -> tuple[DecisionLog, float]:
    log = DecisionLog(open_store(store_url), flush_interval_s=0.01)
    before = time.time()
    log.append_many(items, inputs)
    assert log.flush(10)
    return log, before


def columns(row: sa.Row) -> tuple:
    return tuple(getattr(row, name) for name in DECISION_COLUMNS)


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_a_batch_is_one_row_and_reads_back_as_the_rows_its_decisions_would_have_been(store_url: str) -> None:
    items = batch_of(70)
    log, _ = written(store_url, items)
    back = rows(log.store)
    at = back[0].at
    assert (count(log.store, decision_batches), count(log.store, decisions)) == (1, 0)
    assert [columns(row) for row in back] == [decision_row(call, result, "hash", at) for call, result in items]
    assert [(row.id, row.batch_id is not None, row.position) for row in back] == [(None, True, i) for i in range(70)]
    assert log.written_rows == 70 and log.pending == 0
    log.close()
    log.store.close()


def test_feedback_finds_a_batch_item_and_judges_the_row_it_would_have_had(store_url: str) -> None:
    items = batch_of(5)
    log, _ = written(store_url, items, "none")
    store = log.store
    found = store.first_decision("b1")
    assert (found.request_id, found.model, found.decision, found.answered_by, found.label) == (
        "b1", "digits", "ANSWER", "bigger", "1")
    assert store.first_decision("b1").id == found.id  # made a row once
    assert store.add_feedback(found, FeedbackRow("1", True, (), True, found.confidence, ()), time.time()) is None
    with store.engine.connect() as connection:
        [row] = connection.execute(sa.select(decisions)).all()
    assert columns(row) == decision_row(items[1][0], items[1][1], "none", row.at)
    view = rows(store)  # the item once, now as its decisions row
    assert [(r.request_id, r.id) for r in view] == [("b0", None), ("b1", found.id), ("b2", None), ("b3", None),
                                                    ("b4", None)]
    assert store.first_decision("nobody") is None
    log.close()
    store.close()


def test_many_readers_make_a_batch_item_one_row(store_url: str) -> None:
    log, _ = written(store_url, batch_of(3))
    stores = [open_store(store_url) for _ in range(4)]  # as four processes would
    found: list[int] = []
    threads = [threading.Thread(target=lambda s=s: found.append(s.first_decision("b2").id)) for s in stores]
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


def test_retention_removes_old_batches_their_items_and_the_rows_feedback_made(store_url: str) -> None:
    log, _ = written(store_url, batch_of(3, "old"))
    store = log.store
    log.append_many(batch_of(2, "new"), "none")
    assert log.flush(10)
    judged = store.first_decision("old0")
    store.add_feedback(judged, FeedbackRow("0", True, (), True, 0.5, ()), time.time())
    month_ago = time.time() - 40 * 86_400
    with store.engine.begin() as connection:
        connection.execute(sa.update(decision_batches).where(decision_batches.c.id == 1).values(at=month_ago))
        connection.execute(sa.update(decisions).values(at=month_ago))
    assert store.purge(time.time() - 30 * 86_400) == 2  # the batch, and the row its judged item became
    assert [r.request_id for r in rows(store)] == ["new0", "new1"]
    assert store.first_decision("old1") is None and store.first_decision("new1") is not None
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM batch_items")).scalar_one() == 2
        assert connection.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one() == 0
    log.close()
    store.close()
