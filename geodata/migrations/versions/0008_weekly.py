"""The weekly routine: assignments (周交办) and per-park assessment weights (考核权重).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    """Create ``weekly_assignments`` and ``assessment_weights``."""
    op.create_table(
        "weekly_assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_weekly_assignments_park_id_parks"),
            nullable=False),
        sa.Column("week", sa.String(8), nullable=False),
        sa.Column("hazard_id", sa.Integer, sa.ForeignKey(
            "hazards.id", ondelete="RESTRICT", name="fk_weekly_assignments_hazard_id_hazards")),
        sa.Column("request_id", sa.Integer, sa.ForeignKey(
            "service_requests.id", ondelete="RESTRICT",
            name="fk_weekly_assignments_request_id_service_requests")),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey(
            "users.id", ondelete="RESTRICT", name="fk_weekly_assignments_owner_id_users"),
            nullable=False),
        sa.Column("deadline", sa.Date, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(hazard_id IS NULL) <> (request_id IS NULL)",
                           name="ck_weekly_assignments_one_target"),
    )
    for column in ("park_id", "hazard_id", "request_id", "owner_id"):
        op.create_index(f"ix_weekly_assignments_{column}", "weekly_assignments", [column])
    op.create_table(
        "assessment_weights",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_assessment_weights_park_id_parks"),
            nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.CheckConstraint("metric IN ('visits', 'closure', 'resolution', 'satisfaction', "
                           "'overdue')", name="ck_assessment_weights_metric_known"),
        sa.CheckConstraint("weight >= 0 AND weight <= 100",
                           name="ck_assessment_weights_weight_range"),
        sa.UniqueConstraint("park_id", "metric", name="uq_assessment_weights_park_id_metric"),
    )
    op.create_index("ix_assessment_weights_park_id", "assessment_weights", ["park_id"])


def downgrade():
    """Drop both tables (only for throwaway databases)."""
    op.drop_table("assessment_weights")
    op.drop_table("weekly_assignments")
