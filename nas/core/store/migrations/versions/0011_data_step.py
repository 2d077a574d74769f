"""Each search's data step: its photos prepared once, under a lease of their own, into the
search's artifacts, for every slot on every host to read.

Revision ID: 0011_data_step
Revises: 0010_extensions
Create Date: 2027-01-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_data_step"
down_revision: str | None = "0010_extensions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_data_steps",
        sa.Column(
            "search_id",
            sa.String(32),
            sa.ForeignKey("searches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(32)),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("token", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), index=True),
        sa.Column("lost_leases", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("images_decoded", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("images_reached", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("info", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("prepared_at", sa.DateTime(timezone=True)),
    )
    # Every search so far loaded its data in each slot: the next slot that needs it prepares
    # it for all.
    op.execute(
        "INSERT INTO search_data_steps (search_id, state, token, lost_leases, images_decoded, "
        "images_reached) SELECT id, 'pending', 0, 0, 0, 0 FROM searches"
    )


def downgrade() -> None:
    op.drop_table("search_data_steps")
