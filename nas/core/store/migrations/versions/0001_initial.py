"""Searches, trials, exported models and workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("trials_planned", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", TIMESTAMP),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("accelerator", sa.JSON()),
        sa.Column("precision", sa.String(32)),
        sa.Column("dataset_info", sa.JSON()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_searches_status", "searches", ["status"])
    op.create_index("ix_searches_created_at", "searches", ["created_at"])
    op.create_table(
        "trials",
        sa.Column(
            "search_id",
            sa.String(32),
            sa.ForeignKey("searches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("trial_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float()),
        sa.Column("params", sa.Integer()),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP),
    )
    op.create_table(
        "exported_models",
        sa.Column(
            "search_id",
            sa.String(32),
            sa.ForeignKey("searches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float()),
        sa.Column("params", sa.Integer(), nullable=False),
        sa.Column("formats", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("stopped_at", TIMESTAMP),
        sa.Column("current_search_id", sa.String(32)),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("exported_models")
    op.drop_table("trials")
    op.drop_index("ix_searches_created_at", table_name="searches")
    op.drop_index("ix_searches_status", table_name="searches")
    op.drop_table("searches")
