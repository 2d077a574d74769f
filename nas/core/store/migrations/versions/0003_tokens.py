"""API tokens, and the owner of each search.

Searches queued before tokens existed belong to the owner ``legacy``: admins see them, and
``nas token create --owner legacy`` hands them to someone.

Revision ID: 0003_tokens
Revises: 0002_attempts
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_tokens"
down_revision: str | None = "0002_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
LEGACY_OWNER = "legacy"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP),
        sa.Column("last_used_at", TIMESTAMP),
    )
    op.create_index("ix_tokens_owner", "tokens", ["owner"])
    # The default only fills the rows that exist now; it is dropped at once so that a new
    # search can never be stored without the owner the API gives it.
    with op.batch_alter_table("searches") as batch:
        batch.add_column(
            sa.Column("owner", sa.String(64), nullable=False, server_default=LEGACY_OWNER)
        )
    with op.batch_alter_table("searches") as batch:
        batch.alter_column("owner", server_default=None)
        batch.create_index("ix_searches_owner", ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("searches") as batch:
        batch.drop_index("ix_searches_owner")
        batch.drop_column("owner")
    op.drop_index("ix_tokens_owner", table_name="tokens")
    op.drop_table("tokens")
