"""The review queue: cases a person resolves.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_cases",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.Text),
        sa.Column("lease_until", sa.Float),
        sa.Column("closed_by", sa.Text),
        sa.Column("closed_at", sa.Float),
        sa.Column("truth", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_review_cases_queue", "review_cases", ["state", "opened_at"])
    op.create_index("ix_review_cases_model", "review_cases", ["model", "state"])
    op.create_index("ix_review_cases_request_id", "review_cases", ["request_id"])


def downgrade() -> None:
    op.drop_table("review_cases")
