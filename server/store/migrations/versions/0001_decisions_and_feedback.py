"""The decision log and the feedback on it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("answered_by", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("raw_confidence", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("input_logged", sa.String(4), nullable=False),
        sa.Column("input", sa.Text),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_decisions_request_id", "decisions", ["request_id", "id"])
    op.create_index("ix_decisions_at", "decisions", ["at"])
    op.create_table(
        "feedback",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("decision_id", Id, sa.ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False,
                  unique=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("truth", sa.JSON, nullable=False),
        sa.Column("correct", sa.Boolean, nullable=False),
        sa.Column("wrong_fields", sa.JSON, nullable=False),
        sa.Column("counted", sa.Boolean, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("field_scores", sa.JSON, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_feedback_tally", "feedback", ["model", "version", "counted", "id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("decisions")
