"""A revision per search, bumped by every write to it or its trials (what ETags are of).

Revision ID: 0005_search_revision
Revises: 0004_test_accuracy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_search_revision"
down_revision: str | None = "0004_test_accuracy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("revision")
