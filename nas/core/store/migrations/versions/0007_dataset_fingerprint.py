"""The fingerprint of a search's decoded photos (indexed), for warm starts from the same
owner's earlier searches of the same photos at the same size.

Revision ID: 0007_dataset_fingerprint
Revises: 0004_test_accuracy
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_dataset_fingerprint"
down_revision: str | None = "0006_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.add_column(sa.Column("dataset_fingerprint", sa.String(64)))
        batch.create_index("ix_searches_dataset_fingerprint", ["dataset_fingerprint"])


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_index("ix_searches_dataset_fingerprint")
        batch.drop_column("dataset_fingerprint")
