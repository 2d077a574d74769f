"""Trials as the unit of work: the slots through which workers run a search's trials, where
each trial ran, and how many leases it lost without progress.

Revision ID: 0009_trial_slots
Revises: 0008_final_training
Create Date: 2027-01-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_trial_slots"
down_revision: str | None = "0008_final_training"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_slots",
        sa.Column("slot_id", sa.String(32), primary_key=True),
        sa.Column(
            "search_id",
            sa.String(32),
            sa.ForeignKey("searches.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("worker_id", sa.String(64), nullable=False, index=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("accelerator", sa.JSON()),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trial_id", sa.String(64)),
    )
    with op.batch_alter_table("searches") as batch:
        batch.add_column(
            sa.Column("trials_exhausted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("max_parallel_trials", sa.Integer()))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("worker_id", sa.String(64)))
        batch.add_column(sa.Column("hostname", sa.String(255)))
        batch.add_column(sa.Column("accelerator", sa.JSON()))
        batch.add_column(sa.Column("lost_leases", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("epochs_reached", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("slots", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("accelerator", sa.JSON()))
        batch.drop_column("current_search_id")


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("current_search_id", sa.String(32)))
        batch.drop_column("accelerator")
        batch.drop_column("slots")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("epochs_reached")
        batch.drop_column("lost_leases")
        batch.drop_column("accelerator")
        batch.drop_column("hostname")
        batch.drop_column("worker_id")
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("max_parallel_trials")
        batch.drop_column("trials_exhausted")
    op.drop_table("search_slots")
