"""Extensions of finished searches, and the start of each search's current run.

Revision ID: 0010_extensions
Revises: 0008_final_training
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_extensions"
down_revision: str | None = "0009_trial_slots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("resumed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("extensions", sa.JSON()))
    # Until a search is extended, its current run is its first.
    op.execute("UPDATE searches SET resumed_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("extensions")
        batch.drop_column("resumed_at")
