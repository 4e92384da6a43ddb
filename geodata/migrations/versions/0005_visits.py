"""Field work: visits and their history, cadre links, visit rules, idempotency keys.

``hazard_photos`` also holds photos of visits: ``visit_id`` is added,
``hazard_id`` becomes nullable and a CHECK keeps exactly one of them set.
On SQLite that needs a table copy (batch mode).  ``supervisions.photo_id``
refers to the photos with ON DELETE RESTRICT, which would refuse dropping
the old copy, so those references are parked in a temporary table and put
back after the copy (same transaction; ids are kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(table, column, target, ondelete="RESTRICT", nullable=True):
    return sa.Column(column, sa.Integer, sa.ForeignKey(
        f"{target}.id", ondelete=ondelete, name=f"fk_{table}_{column}_{target}"),
        nullable=nullable)


def upgrade():
    """Create the field-work tables and let photos belong to a visit."""
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("visits", "park_id", "parks", nullable=False),
        _fk("visits", "grid_id", "grids"),
        _fk("visits", "enterprise_id", "enterprises"),
        _fk("visits", "hazard_id", "hazards"),
        _fk("visits", "user_id", "users", nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", Geometry("POINT", srid=4326, spatial_index=True), nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("findings", sa.Text, nullable=False),
        sa.Column("client_id", sa.String(36), nullable=False),
        sa.CheckConstraint("kind IN ('patrol', 'visit', 'recheck')",
                           name="ck_visits_kind_known"),
        sa.CheckConstraint("accuracy_m IS NULL OR (accuracy_m >= 0 AND accuracy_m <= 10000)",
                           name="ck_visits_accuracy_range"),
        sa.UniqueConstraint("client_id", name="uq_visits_client_id"),
    )
    for column in ("park_id", "grid_id", "enterprise_id", "hazard_id", "user_id",
                   "occurred_at"):
        op.create_index(f"ix_visits_{column}", "visits", [column])
    op.create_table(
        "visit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("visit_events", "visit_id", "visits", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_visit_events_visit_id", "visit_events", ["visit_id"])
    _append_only("visit_events")
    op.create_table(
        "enterprise_links",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("enterprise_links", "user_id", "users", "CASCADE", nullable=False),
        _fk("enterprise_links", "enterprise_id", "enterprises", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "enterprise_id",
                            name="uq_enterprise_links_user_id_enterprise_id"),
    )
    for column in ("user_id", "enterprise_id"):
        op.create_index(f"ix_enterprise_links_{column}", "enterprise_links", [column])
    op.create_table(
        "visit_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("visit_rules", "park_id", "parks", nullable=False),
        _fk("visit_rules", "enterprise_id", "enterprises"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("period", sa.String(8)),
        sa.Column("times", sa.Integer),
        sa.Column("after_days", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('patrol', 'visit', 'recheck')",
                           name="ck_visit_rules_kind_known"),
        sa.CheckConstraint(
            "(kind = 'recheck' AND after_days IS NOT NULL AND after_days BETWEEN 0 AND 3650 "
            "AND period IS NULL AND times IS NULL) OR (kind <> 'recheck' AND after_days IS NULL"
            " AND period IN ('day', 'week') AND times BETWEEN 1 AND 48)",
            name="ck_visit_rules_shape"),
        sa.UniqueConstraint("park_id", "enterprise_id", "kind",
                            name="uq_visit_rules_park_id_enterprise_id_kind"),
    )
    for column in ("park_id", "enterprise_id"):
        op.create_index(f"ix_visit_rules_{column}", "visit_rules", [column])
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        _fk("idempotency_keys", "user_id", "users", "CASCADE", nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("method_path", sa.String(300), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),
    )
    op.create_index("ix_idempotency_keys_user_id", "idempotency_keys", ["user_id"])
    _photos_of_visits()


def _append_only(table):
    # gridmap_append_only() exists on PostgreSQL since 0001.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    else:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()")


def _photos_of_visits():
    check = "(hazard_id IS NULL) <> (visit_id IS NULL)"
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("hazard_photos", "hazard_id", nullable=True)
        op.add_column("hazard_photos", _fk("hazard_photos", "visit_id", "visits"))
        op.create_index("ix_hazard_photos_visit_id", "hazard_photos", ["visit_id"])
        op.create_check_constraint("ck_hazard_photos_one_owner", "hazard_photos", check)
        return
    op.execute("CREATE TEMPORARY TABLE _supervision_photos AS SELECT id, photo_id "
               "FROM supervisions WHERE photo_id IS NOT NULL")
    op.execute("UPDATE supervisions SET photo_id = NULL WHERE photo_id IS NOT NULL")
    with op.batch_alter_table("hazard_photos", recreate="always") as batch:
        batch.alter_column("hazard_id", existing_type=sa.Integer, nullable=True)
        batch.add_column(_fk("hazard_photos", "visit_id", "visits"))
        batch.create_index("ix_hazard_photos_visit_id", ["visit_id"])
        batch.create_check_constraint("ck_hazard_photos_one_owner", check)
    op.execute("UPDATE supervisions SET photo_id = (SELECT p.photo_id FROM _supervision_photos "
               "p WHERE p.id = supervisions.id) WHERE id IN (SELECT id FROM _supervision_photos)")
    op.execute("DROP TABLE _supervision_photos")


def downgrade():
    """Drop the field-work tables; visit photos are deleted (throwaway databases only)."""
    op.execute("DELETE FROM hazard_photos WHERE visit_id IS NOT NULL")
    with op.batch_alter_table("hazard_photos") as batch:
        batch.drop_constraint("ck_hazard_photos_one_owner", type_="check")
        batch.drop_index("ix_hazard_photos_visit_id")
        batch.drop_column("visit_id")
        batch.alter_column("hazard_id", existing_type=sa.Integer, nullable=False)
    for table in ("idempotency_keys", "visit_rules", "enterprise_links", "visit_events",
                  "visits"):
        op.drop_table(table)
