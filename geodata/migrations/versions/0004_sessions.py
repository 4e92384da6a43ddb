"""Server-side session end: ``users.session_version``.

Each login cookie carries the user's ``session_version``; logout, a new
password, a role change, ``users disable`` and ``users revoke-token`` bump
it, so cookies issued before are refused.  Only adds a column (plain
``ALTER TABLE ... ADD COLUMN`` with a default, no table copy), so existing
users keep their passwords; their old cookies (which carry no session
version) stop working once, and they log in again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    """Add ``users.session_version`` (1 for existing users)."""
    op.add_column("users", sa.Column("session_version", sa.Integer, nullable=False,
                                     server_default="1"))


def downgrade():
    """Drop ``users.session_version`` (only for throwaway databases)."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")
