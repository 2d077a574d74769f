"""The workers that cannot read a search's photos on their hosts, and since when, noted on
its data step.

Revision ID: 0012_data_unreadable_by
Revises: 0011_data_step
Create Date: 2027-01-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_data_unreadable_by"
down_revision: str | None = "0011_data_step"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("search_data_steps") as batch:
        batch.add_column(sa.Column("unreadable_by", sa.JSON()))
        batch.add_column(sa.Column("unreadable_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("search_data_steps") as batch:
        batch.drop_column("unreadable_since")
        batch.drop_column("unreadable_by")
