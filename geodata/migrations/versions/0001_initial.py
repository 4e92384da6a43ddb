"""Initial schema: parks, grids, enterprises, grid staff, hazards and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _geom(kind):
    return Geometry(kind, srid=4326, spatial_index=True)


def upgrade():
    """Create every table, then make ``hazard_events`` append-only with triggers."""
    op.create_table(
        "parks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("division_code", sa.String(6), nullable=False),
        sa.Column("boundary", _geom("MULTIPOLYGON"), nullable=False),
        sa.Column("metric_epsg", sa.Integer, nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("code", name="uq_parks_code"),
    )
    op.create_table(
        "grids",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_grids_park_id_parks"), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_grids_parent_id_grids")),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("geom", _geom("MULTIPOLYGON"), nullable=False),
        sa.Column("area_m2", sa.Float, nullable=False),
        sa.Column("active_from", sa.Date, nullable=False),
        sa.Column("active_to", sa.Date),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("park_id", "code", name="uq_grids_park_id_code"),
        sa.CheckConstraint("level >= 1", name="ck_grids_level_positive"),
        sa.CheckConstraint("kind IN ('area', 'enterprise', 'workshop')",
                           name="ck_grids_kind_known"),
    )
    op.create_index("ix_grids_park_id", "grids", ["park_id"])
    op.create_index("ix_grids_parent_id", "grids", ["parent_id"])
    op.create_table(
        "enterprises",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_enterprises_park_id_parks"),
            nullable=False),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_enterprises_grid_id_grids")),
        sa.Column("host_id", sa.Integer, sa.ForeignKey(
            "enterprises.id", ondelete="RESTRICT", name="fk_enterprises_host_id_enterprises")),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("industry", sa.String(100)),
        sa.Column("employees", sa.Integer),
        sa.Column("contact_name", sa.String(100)),
        sa.Column("contact_phone", sa.String(32)),
        sa.Column("registered", sa.Boolean, nullable=False),
        sa.Column("site", _geom("GEOMETRY"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.UniqueConstraint("park_id", "credit_code", name="uq_enterprises_park_id_credit_code"),
    )
    for column in ("park_id", "grid_id", "host_id"):
        op.create_index(f"ix_enterprises_{column}", "enterprises", [column])
    op.create_table(
        "grid_staff",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_grid_staff_grid_id_grids"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("published", sa.Boolean, nullable=False),
        sa.CheckConstraint(
            "role IN ('grid_chief', 'full_time', 'part_time', 'party_instructor')",
            name="ck_grid_staff_role_known"),
    )
    op.create_index("ix_grid_staff_grid_id", "grid_staff", ["grid_id"])
    op.create_table(
        "hazards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_hazards_park_id_parks"), nullable=False),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_hazards_grid_id_grids")),
        sa.Column("enterprise_id", sa.Integer, sa.ForeignKey(
            "enterprises.id", ondelete="RESTRICT", name="fk_hazards_enterprise_id_enterprises")),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("location", _geom("POINT"), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("found_date", sa.Date, nullable=False),
        sa.Column("deadline", sa.Date),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.CheckConstraint("status IN ('found', 'rectifying', 'supervising', 'closed')",
                           name="ck_hazards_status_known"),
        sa.CheckConstraint("level IN ('general', 'major')", name="ck_hazards_level_known"),
        sa.UniqueConstraint("park_id", "code", name="uq_hazards_park_id_code"),
    )
    for column in ("park_id", "grid_id", "enterprise_id"):
        op.create_index(f"ix_hazards_{column}", "hazards", [column])
    op.create_table(
        "hazard_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hazard_id", sa.Integer, sa.ForeignKey(
            "hazards.id", ondelete="RESTRICT", name="fk_hazard_events_hazard_id_hazards"),
            nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_hazard_events_hazard_id", "hazard_events", ["hazard_id"])
    _append_only("hazard_events")


def _append_only(table):
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    else:
        op.execute(
            "CREATE FUNCTION gridmap_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$")
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()")


def downgrade():
    """Drop everything (data is lost: only for throwaway databases)."""
    for table in ("hazard_events", "hazards", "grid_staff", "enterprises", "grids", "parks"):
        op.drop_table(table)
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS gridmap_append_only()")
