"""The store's tables, as SQLAlchemy Core metadata: what the migrations create and the queries read.

Decisions are appended, never updated: a request id sent twice keeps both decisions (the audit trail
shows both) and feedback judges the latest. Every lookup the server makes has its index.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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
    Column("fields", JSON, nullable=False),  # an extractor's fields: name -> [value or null, confidence]
    Column("reasons", JSON, nullable=False),  # [{code, verifier, message}]
    Column("verifiers", JSON, nullable=False),  # [{name, status, message}]
    Column("tiers", JSON, nullable=False),  # [{name, kind, decision, label, fields, confidence, cost}]
    Column("cost", Float, nullable=False),
    Column("trace_id", String(32), nullable=False),
    Column("input_logged", String(4), nullable=False),  # none, hash or full (the bundle's decision_log.inputs)
    Column("input", Text),  # the input's SHA-256, or the input as JSON, or null
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_decisions_request_id", "request_id", "id"),
    Index("ix_decisions_at", "at"),
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
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_tally", "model", "version", "counted", "id"),
)
