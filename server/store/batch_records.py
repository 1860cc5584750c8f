"""A PredictBatch's decisions as the store keeps them: one ``decision_batches`` row holding every item's
decision, and a ``batch_items`` entry per item that finds it by request id.

A decision written alone is a ``decisions`` row and two index entries (its request id, its time). A batch's
items share one row and one time, and each adds one narrow entry: at the server a stacked item's part of
the decision log went from about 11 to 5 us of CPU (README, "The store"). Feedback judges a ``decisions``
row, so the first feedback on a batch item writes the item's decision there (``decision_row``) and points the
item's entry at it; the row is the one the item would have had, written alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from smallguard.server.store.schema import batch_items, decision_batches, decisions

# a decisions row's columns that an item of a batch has of its own, in the order its JSON row lists them
ITEM_COLUMNS = ("request_id", "decision", "answered_by", "confidence", "raw_confidence", "threshold", "label",
                "details", "cost", "trace_id", "input_logged", "input")
_ITEMS_A_STATEMENT = 200  # 600 parameters: within SQLite's oldest limit (999)
_KEY = 28  # hex digits of a batch's key (request_ids.BATCH_KEY), then 4 of an item's place
_KEYED = _KEY + 4
_HEX = re.compile("[0-9a-f]+")


class DecisionBatch(NamedTuple):
    """A batch's decisions as the decision log buffers and writes them. ``items``: the JSON document of
    ``decision_batches.items``; ``request_ids``: the items', in order."""

    model: str
    version: str
    kind: str
    request_ids: tuple[str, ...]
    items: str
    at: float
    key: str = ""  # what each request id begins with when the server made them, "" when the ids are their own


class BatchItem(NamedTuple):
    """Where the store keeps a batch item's decision, and the decision's row once feedback made one."""

    batch_id: int
    position: int
    at: float
    decision_id: int | None
    indexed: bool = True  # the item has its entry in batch_items (a batch with a key has none until feedback)


def items_document(rows: Sequence[list[Any]]) -> str:
    """``decision_batches.items`` for the items' rows (values in ITEM_COLUMNS order, details a JSON object)."""
    return orjson.dumps({"columns": ITEM_COLUMNS, "rows": rows}, option=orjson.OPT_SERIALIZE_NUMPY,
                        default=float).decode()


def insert_batch(connection: Connection, batch: DecisionBatch, postgres: bool) -> None:
    """Write ``batch``: its row, then (for a batch without a key) its items' entries, by statements of up to
    ``_ITEMS_A_STATEMENT``."""
    mark = "%s" if postgres else "?"
    if batch.key:  # its items are found from their ids: one row is all
        connection.exec_driver_sql(
            f"INSERT INTO decision_batches (model, version, kind, items, at, key) VALUES ({', '.join([mark] * 6)})",
            (batch.model, batch.version, batch.kind, batch.items, batch.at, batch.key))
        return
    batch_id = connection.exec_driver_sql(
        f"INSERT INTO decision_batches (model, version, kind, items, at) VALUES ({', '.join([mark] * 5)}) "
        "RETURNING id", (batch.model, batch.version, batch.kind, batch.items, batch.at)).scalar_one()
    ids = batch.request_ids
    for start in range(0, len(ids), _ITEMS_A_STATEMENT):
        chunk = ids[start:start + _ITEMS_A_STATEMENT]
        values = ", ".join([f"({mark}, {mark}, {mark})"] * len(chunk))
        parameters: list[Any] = []
        for position, request_id in enumerate(chunk, start):
            parameters += (batch_id, position, request_id)
        connection.exec_driver_sql(
            f"INSERT INTO batch_items (batch_id, position, request_id) VALUES {values}", tuple(parameters))


def first_item(connection: Connection, request_id: str) -> BatchItem | None:
    """The first batch item logged with ``request_id`` (first by batch, then by place in it), or None: an item
    with an entry in batch_items, or one whose id names its batch's key and its place."""
    row = connection.execute(
        select(batch_items.c.batch_id, batch_items.c.position, decision_batches.c.at, batch_items.c.decision_id)
        .join(decision_batches, decision_batches.c.id == batch_items.c.batch_id)
        .where(batch_items.c.request_id == request_id)
        .order_by(batch_items.c.batch_id, batch_items.c.position).limit(1)).first()
    keyed = _keyed_item(connection, request_id)
    if row is None or (keyed is not None and keyed.batch_id < row.batch_id):
        return keyed
    return BatchItem(*row)


def _keyed_item(connection: Connection, request_id: str) -> BatchItem | None:
    """The item ``request_id`` names in a batch with a key (``request_ids.new_batch_ids``), or None. Its entry
    in batch_items, if a feedback made one, is found above."""
    if len(request_id) != _KEYED or not _HEX.fullmatch(request_id):
        return None
    batch = connection.execute(select(decision_batches.c.id, decision_batches.c.at, decision_batches.c["items"])
                               .where(decision_batches.c.key == request_id[:_KEY])).first()
    if batch is None:
        return None
    position = int(request_id[_KEY:], 16)
    rows = orjson.loads(batch.items)["rows"]
    if position >= len(rows) or rows[position][0] != request_id:  # a place past the batch's end
        return None
    return BatchItem(batch.id, position, batch.at, None, indexed=False)


def item_row(connection: Connection, item: BatchItem) -> dict[str, Any]:
    """The item's decision as a decisions row (without its id): what it would have been, written alone."""
    batch = connection.execute(select(decision_batches.c.model, decision_batches.c.version, decision_batches.c.kind,
                                      decision_batches.c["items"], decision_batches.c.at)
                               .where(decision_batches.c.id == item.batch_id)).one()
    document = orjson.loads(batch.items)
    return _as_row(document["columns"], document["rows"][item.position], batch.model, batch.version, batch.kind,
                   batch.at)


def rows_of(batch: DecisionBatch) -> list[dict[str, Any]]:
    """Each of the batch's decisions as a decisions row (without its id), in order: how a batch the store
    refused is written, a row at a time, so that only the decision the store refuses is lost."""
    document = orjson.loads(batch.items)
    return [_as_row(document["columns"], row, batch.model, batch.version, batch.kind, batch.at)
            for row in document["rows"]]


def _as_row(columns: Sequence[str], values: Sequence[Any], model: str, version: str, kind: str,
            at: float) -> dict[str, Any]:
    row = dict(zip(columns, values, strict=True))
    row["details"] = orjson.dumps(row["details"]).decode()
    return {**row, "model": model, "version": version, "kind": kind, "at": at}


def exists(connection: Connection, batch_id: int) -> bool:
    """Whether the batch is still kept (retention has not removed it)."""
    found = connection.execute(select(decision_batches.c.id).where(decision_batches.c.id == batch_id)).first()
    return found is not None


def materialize(connection: Connection, item: BatchItem, row: dict[str, Any]) -> int | None:
    """Write the item's decision (``row``, from ``item_row``) as a decisions row and point its entry at it; the
    row's id. None when another transaction did it first (this one must then be rolled back, and the entry read
    again)."""
    decision_id = connection.execute(insert(decisions).values(row).returning(decisions.c.id)).scalar_one()
    if not item.indexed:  # its entry now, with its row: another transaction's same entry fails the key
        try:
            with connection.begin_nested():
                connection.execute(insert(batch_items).values(batch_id=item.batch_id, position=item.position,
                                                              request_id=row["request_id"], decision_id=decision_id))
        except IntegrityError:
            return None
        return decision_id
    claimed = connection.execute(
        update(batch_items).where(and_(batch_items.c.batch_id == item.batch_id,
                                       batch_items.c.position == item.position, batch_items.c.decision_id.is_(None)))
        .values(decision_id=decision_id)).rowcount
    return decision_id if claimed == 1 else None
