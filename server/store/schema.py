"""The store's tables, as SQLAlchemy Core metadata: what the migrations create and the queries read.

Decisions are appended, never updated: a request id sent twice keeps both decisions (the audit trail
shows both) and feedback judges the latest. Every lookup the server makes has its index.

Written for a cheap insert (the decision log writes one row per prediction): what is looked up or
filtered on has a column; the rest of a decision (fields, reasons, verifiers, tiers) is one JSON text
encoded once; times are seconds since the epoch (UTC), as floats.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# BIGINT on PostgreSQL, INTEGER (the rowid alias that autoincrements) on SQLite
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Text, nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("kind", String(20), nullable=False),  # classifier or extractor
    Column("decision", String(10), nullable=False),  # ANSWER, ABSTAIN, ESCALATE
    Column("answered_by", String(200), nullable=False),  # "" the model itself, else the tier whose answer it was
    Column("confidence", Float, nullable=False),
    Column("raw_confidence", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("label", Text),  # a classifier's label
    # JSON: {"fields": {name: [value or null, confidence]}, "reasons": [{code, verifier, message}],
    #        "verifiers": [{name, status, message}], "tiers": [{name, kind, decision, confidence, cost, reasons,
    #        label, fields}]}
    Column("details", Text, nullable=False),
    Column("cost", Float, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("input_logged", String(4), nullable=False),  # none, hash or full (the bundle's decision_log.inputs)
    Column("input", Text),  # the input's SHA-256, or the input as JSON, or null
    Column("at", Float, nullable=False),  # seconds since the epoch
    Index("ix_decisions_request_id", "request_id", "id"),
    Index("ix_decisions_at", "at"),
)

# A PredictBatch's decisions as one row and an index entry per item, where ``decisions`` takes a row and two index
# entries per decision: a batch item's part of the decision log cost about a third as much (README, "The store").
# ``items``: JSON {"columns": [...], "rows": [[...], ...]}, one row per item, in the batch's order, with the
# values of a decisions row for the columns named (``details`` as a JSON object, not a text).
decision_batches = Table(
    "decision_batches", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("items", Text, nullable=False),
    Column("at", Float, nullable=False),  # seconds since the epoch
    # what each of the batch's request ids begins with, when the server made them (``request_ids.new_batch_ids``):
    # an item is then found from its id, with no entry of its own in ``batch_items``
    Column("key", String(28)),
    Index("ix_decision_batches_at", "at"),
    Index("ix_decision_batches_key", "key", unique=True, sqlite_where=text("key IS NOT NULL"),
          postgresql_where=text("key IS NOT NULL")),
)

# A batch item's request id, for Feedback to find it: each item of a batch without a key, and an item of a batch
# with one once a feedback made its decision a row. ``decision_id``: that row of ``decisions`` (what a feedback row
# points at); null until then.
batch_items = Table(
    "batch_items", metadata,
    Column("batch_id", Id, ForeignKey("decision_batches.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("request_id", Text, nullable=False),
    Column("decision_id", Id),
    Index("ix_batch_items_request_id", "request_id", "batch_id"),
    # the few items feedback made rows of (an item without one adds nothing to it)
    Index("ix_batch_items_decision_id", "decision_id", sqlite_where=text("decision_id IS NOT NULL"),
          postgresql_where=text("decision_id IS NOT NULL")),
    sqlite_with_rowid=False,  # one B-tree for the rows, keyed by (batch, position), not a rowid's and a key's
)

# The view ``decision_log`` (migration 0003), for reading every decision as a decisions row, alone or a batch's
# item: the decisions columns, with ``id`` null for a batch item feedback has not made a row, and the item's batch
# and place in it.
decision_log = Table(
    "decision_log", MetaData(),  # not in ``metadata``: a view, which the migrations create and nothing writes
    Column("id", Id), Column("batch_id", Id), Column("position", Integer),
    *[Column(c.name, c.type) for c in decisions.columns if c.name != "id"],
)

feedback = Table(
    "feedback", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # one feedback per decision: the first truth stands, whichever worker or replica got it
    Column("decision_id", Id, ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("model", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("truth", JSON, nullable=False),  # a label, or [[field, value], ...]
    Column("correct", Boolean, nullable=False),
    Column("wrong_fields", JSON, nullable=False),
    # in the accuracy tally: the model's own ANSWER, judged on its confidence and each field's
    Column("counted", Boolean, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("field_scores", JSON, nullable=False),  # [[field, correct, confidence], ...]
    Column("source", String(20), nullable=False),  # api, or review (a person's resolution)
    Column("at", Float, nullable=False),  # seconds since the epoch
    Index("ix_feedback_tally", "model", "version", "counted", "id"),
)

review_cases = Table(
    "review_cases", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", Text, nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("reason", String(40), nullable=False),  # the first reason code: the queue filters on it
    # open -> claimed (under a lease; an expired lease is open again) -> resolved or dismissed
    Column("state", String(10), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("claimed_by", Text),
    Column("lease_until", Float),
    Column("closed_by", Text),
    Column("closed_at", Float),
    Column("truth", Text),  # JSON: the reviewer's label, or {field: value}
    Column("note", Text),
    # JSON: {"input": {"text"} or {"tensors"}, "prediction": {label, fields, confidence}, "reasons": [...],
    #        "verifiers": [...], "tiers": [...]}
    Column("details", Text, nullable=False),
    Index("ix_review_cases_queue", "state", "opened_at"),
    Index("ix_review_cases_model", "model", "state"),
    Index("ix_review_cases_request_id", "request_id"),
)
