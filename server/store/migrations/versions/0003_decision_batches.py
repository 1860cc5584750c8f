"""A PredictBatch's decisions as one row, and an index of its items' request ids; the view ``decision_log``
shows every decision, alone or in a batch, as a decisions row.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decision_batches",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("items", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("key", sa.String(28)),
    )
    op.create_index("ix_decision_batches_at", "decision_batches", ["at"])
    keyed = sa.text("key IS NOT NULL")
    op.create_index("ix_decision_batches_key", "decision_batches", ["key"], unique=True, sqlite_where=keyed,
                    postgresql_where=keyed)
    op.create_table(
        "batch_items",
        sa.Column("batch_id", Id, sa.ForeignKey("decision_batches.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("decision_id", Id),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_batch_items_request_id", "batch_items", ["request_id", "batch_id"])
    made = sa.text("decision_id IS NOT NULL")
    op.create_index("ix_batch_items_decision_id", "batch_items", ["decision_id"], sqlite_where=made,
                    postgresql_where=made)
    op.execute(_VIEW[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute("DROP VIEW decision_log")
    op.drop_table("batch_items")
    op.drop_table("decision_batches")


# Every decision as a decisions row: those written alone, then each batch's items. ``id`` is a batch item's
# decisions row once a feedback made one (null until then; that row shows here as the item, not alone);
# ``batch_id`` and ``position`` are null for a decision written alone. The item's values are at the places
# ``batch_records.ITEM_COLUMNS`` gives them.
_ALONE = """SELECT d.id, NULL AS batch_id, NULL AS position, d.request_id, d.model, d.version, d.kind, d.decision,
    d.answered_by, d.confidence, d.raw_confidence, d.threshold, d.label, d.details, d.cost, d.trace_id,
    d.input_logged, d.input, d.at
FROM decisions d
WHERE NOT EXISTS (SELECT 1 FROM batch_items made WHERE made.decision_id = d.id)"""
_VIEW = {
    "sqlite": f"""CREATE VIEW decision_log AS
{_ALONE}
UNION ALL
SELECT i.decision_id, b.id, r.key, json_extract(r.value, '$[0]'), b.model, b.version, b.kind,
    json_extract(r.value, '$[1]'), json_extract(r.value, '$[2]'), json_extract(r.value, '$[3]'),
    json_extract(r.value, '$[4]'), json_extract(r.value, '$[5]'), json_extract(r.value, '$[6]'),
    json_extract(r.value, '$[7]'), json_extract(r.value, '$[8]'), json_extract(r.value, '$[9]'),
    json_extract(r.value, '$[10]'), json_extract(r.value, '$[11]'), b.at
FROM decision_batches b JOIN json_each(b.items, '$.rows') r
LEFT JOIN batch_items i ON i.batch_id = b.id AND i.position = r.key""",
    "postgresql": f"""CREATE VIEW decision_log AS
{_ALONE}
UNION ALL
SELECT i.decision_id, b.id, (r.n - 1)::integer, r.v->>0, b.model, b.version, b.kind, r.v->>1, r.v->>2,
    (r.v->>3)::double precision, (r.v->>4)::double precision, (r.v->>5)::double precision, r.v->>6,
    (r.v->7)::text, (r.v->>8)::double precision, r.v->>9, r.v->>10, r.v->>11, b.at
FROM decision_batches b
CROSS JOIN LATERAL json_array_elements(b.items::json -> 'rows') WITH ORDINALITY AS r(v, n)
LEFT JOIN batch_items i ON i.batch_id = b.id AND i.position = r.n - 1""",
}
