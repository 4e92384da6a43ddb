"""The hazard ledger: users, API tokens, grid limits, supervision records, photos, escalation.

Only adds tables and columns, so existing parks, grids, enterprises,
hazards and their history are kept.  ``hazards`` and ``hazard_events`` are
extended with ``ALTER TABLE ... ADD COLUMN`` (no batch table copy: copying a
SpatiaLite geometry table, or ``hazard_events`` with its append-only
triggers, would be needless risk).  The allowed escalation levels are a
CHECK constraint on PostgreSQL and triggers on SQLite, which cannot add a
CHECK to an existing table without copying it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEVELS = "('grid', 'park', 'county', 'city', 'province')"


def upgrade():
    """Create the ledger tables and add the escalation columns."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint(
            "role IN ('viewer', 'inspector', 'supervisor', 'planner', 'admin')",
            name="ck_users_role_known"),
    )
    op.create_table(
        "user_grids",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey(
            "users.id", ondelete="CASCADE", name="fk_user_grids_user_id_users"), nullable=False),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_user_grids_grid_id_grids"), nullable=False),
        sa.UniqueConstraint("user_id", "grid_id", name="uq_user_grids_user_id_grid_id"),
    )
    op.create_index("ix_user_grids_user_id", "user_grids", ["user_id"])
    op.create_index("ix_user_grids_grid_id", "user_grids", ["grid_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey(
            "users.id", ondelete="CASCADE", name="fk_api_tokens_user_id_users"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "hazard_photos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hazard_id", sa.Integer, sa.ForeignKey(
            "hazards.id", ondelete="RESTRICT", name="fk_hazard_photos_hazard_id_hazards"),
            nullable=False),
        sa.Column("stored_name", sa.String(64), nullable=False),
        sa.Column("original_name", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("uploaded_by", sa.String(100), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stored_name", name="uq_hazard_photos_stored_name"),
    )
    op.create_index("ix_hazard_photos_hazard_id", "hazard_photos", ["hazard_id"])
    op.create_table(
        "supervisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hazard_id", sa.Integer, sa.ForeignKey(
            "hazards.id", ondelete="RESTRICT", name="fk_supervisions_hazard_id_hazards"),
            nullable=False),
        sa.Column("supervisor", sa.String(100), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("photo_id", sa.Integer, sa.ForeignKey(
            "hazard_photos.id", ondelete="RESTRICT",
            name="fk_supervisions_photo_id_hazard_photos")),
        sa.CheckConstraint(
            "outcome IN ('passed', 'rejected', 'recheck_passed', 'recheck_failed')",
            name="ck_supervisions_outcome_known"),
    )
    op.create_index("ix_supervisions_hazard_id", "supervisions", ["hazard_id"])

    op.add_column("hazards", sa.Column("escalation", sa.String(16), nullable=False,
                                       server_default="grid"))
    op.add_column("hazards", sa.Column("closed_at", sa.DateTime(timezone=True)))
    op.add_column("hazard_events", sa.Column("action", sa.String(24)))
    op.add_column("hazard_events", sa.Column("escalation", sa.String(40)))
    # Closed hazards of an older ledger get the time of their last closing event.
    op.execute("UPDATE hazards SET closed_at = (SELECT max(e.at) FROM hazard_events e "
               "WHERE e.hazard_id = hazards.id AND e.to_status = 'closed') "
               "WHERE status = 'closed'")
    if op.get_bind().dialect.name == "sqlite":
        for when, name in (("INSERT", "insert"), ("UPDATE OF escalation", "update")):
            op.execute(
                f"CREATE TRIGGER hazards_escalation_known_{name} BEFORE {when} ON hazards "
                f"WHEN NEW.escalation NOT IN {LEVELS} "
                "BEGIN SELECT RAISE(ABORT, 'unknown escalation level'); END")
    else:
        op.create_check_constraint("ck_hazards_escalation_known", "hazards",
                                   f"escalation IN {LEVELS}")


def downgrade():
    """Drop the ledger tables and columns (accounts and supervision records are lost)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS hazards_escalation_known_insert")
        op.execute("DROP TRIGGER IF EXISTS hazards_escalation_known_update")
        # SQLite >= 3.35 drops columns in place.
        for table, column in (("hazards", "escalation"), ("hazards", "closed_at"),
                              ("hazard_events", "action"), ("hazard_events", "escalation")):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_constraint("ck_hazards_escalation_known", "hazards", type_="check")
        op.drop_column("hazards", "escalation")
        op.drop_column("hazards", "closed_at")
        op.drop_column("hazard_events", "action")
        op.drop_column("hazard_events", "escalation")
    for table in ("supervisions", "hazard_photos", "api_tokens", "user_grids", "users"):
        op.drop_table(table)
