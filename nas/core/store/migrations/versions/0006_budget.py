"""What a search spent and which limit ended it; why a trial stopped before its last epoch.

Revision ID: 0006_budget
Revises: 0004_test_accuracy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_budget"
down_revision: str | None = "0005_search_revision"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("ended_by", sa.String(16)))
        batch.add_column(sa.Column("wall_seconds", sa.Float()))
        batch.add_column(sa.Column("training_seconds", sa.Float()))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("stop_reason", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("stop_reason")
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("training_seconds")
        batch.drop_column("wall_seconds")
        batch.drop_column("ended_by")
