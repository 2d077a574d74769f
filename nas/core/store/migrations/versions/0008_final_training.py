"""How each search's best architectures were trained to the end (null before it ends).

Revision ID: 0008_final_training
Revises: 0004_test_accuracy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_final_training"
down_revision: str | None = "0007_dataset_fingerprint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("final_training", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_column("final_training")
