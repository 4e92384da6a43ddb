"""Grid edits: the versioned history of grid geometry and the lineage of grids.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_APPEND_ONLY = ("grid_edits", "grid_edit_items")


def upgrade():
    """Create ``grid_edits``, ``grid_edit_items`` and ``grid_lineage``; history is append-only."""
    op.create_table(
        "grid_edits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_grid_edits_park_id_parks"),
            nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("park_version", sa.Integer, nullable=False),
        sa.Column("problems", sa.Text, nullable=False),
    )
    op.create_index("ix_grid_edits_park_id", "grid_edits", ["park_id"])
    op.create_table(
        "grid_edit_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("edit_id", sa.Integer, sa.ForeignKey(
            "grid_edits.id", ondelete="RESTRICT", name="fk_grid_edit_items_edit_id_grid_edits"),
            nullable=False),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_grid_edit_items_grid_id_grids"),
            nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("before_wkb", sa.LargeBinary),
        sa.Column("after_wkb", sa.LargeBinary, nullable=False),
        sa.Column("before_active", sa.Boolean, nullable=False),
        sa.Column("after_active", sa.Boolean, nullable=False),
        sa.Column("before_version", sa.Integer),
        sa.Column("after_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_grid_edit_items_edit_id", "grid_edit_items", ["edit_id"])
    op.create_index("ix_grid_edit_items_grid_id", "grid_edit_items", ["grid_id"])
    op.create_table(
        "grid_lineage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("grid_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_grid_lineage_grid_id_grids"),
            nullable=False),
        sa.Column("source_id", sa.Integer, sa.ForeignKey(
            "grids.id", ondelete="RESTRICT", name="fk_grid_lineage_source_id_grids"),
            nullable=False),
        sa.Column("edit_id", sa.Integer, sa.ForeignKey(
            "grid_edits.id", ondelete="RESTRICT", name="fk_grid_lineage_edit_id_grid_edits"),
            nullable=False),
        sa.Column("relation", sa.String(32), nullable=False),
    )
    for column in ("grid_id", "source_id", "edit_id"):
        op.create_index(f"ix_grid_lineage_{column}", "grid_lineage", [column])
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in _APPEND_ONLY:
        if sqlite:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        else:
            # gridmap_append_only() comes with the first migration.
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()")


def downgrade():
    """Drop the edit history (only for throwaway databases)."""
    for table in ("grid_lineage", "grid_edit_items", "grid_edits"):
        op.drop_table(table)
