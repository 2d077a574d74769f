"""Attempt history of searches, idempotent submits, interrupted trials.

Revision ID: 0002_attempts
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_attempts"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "search_attempts",
        sa.Column(
            "search_id",
            sa.String(32),
            sa.ForeignKey("searches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
    )
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255)))
        batch.add_column(sa.Column("request_hash", sa.String(64)))
        batch.create_index("ux_searches_idempotency_key", ["idempotency_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_index("ux_searches_idempotency_key")
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
    op.drop_table("search_attempts")
