"""The accuracy of each exported model on the search's test photos (null without any).

Revision ID: 0004_test_accuracy
Revises: 0003_tokens
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_test_accuracy"
down_revision: str | None = "0003_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("exported_models") as batch:
        batch.add_column(sa.Column("test_accuracy", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("exported_models") as batch:
        batch.drop_column("test_accuracy")
