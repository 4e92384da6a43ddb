"""Supervision records (督导记录) are append-only, as the ledgers' event tables are.

A supervision record is the evidence a hazard was checked before it was
closed or sent back: who checked, when, the outcome and the photo.  The
hazard's events (``hazard_events``), the requests' and the visits' refuse
UPDATE and DELETE by trigger since they were created; ``supervisions`` did
not, so the history ``GET /api/hazards/<id>/history`` shows could be
rewritten by any SQL client.  No service updates or deletes one.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    """Refuse UPDATE and DELETE on ``supervisions`` (gridmap_append_only() is 0001's)."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER supervisions_no_{action.lower()} BEFORE {action} ON "
                       "supervisions BEGIN SELECT RAISE(ABORT, 'supervisions is append-only'); "
                       "END")
    else:
        op.execute("CREATE TRIGGER supervisions_append_only BEFORE UPDATE OR DELETE ON "
                   "supervisions FOR EACH ROW EXECUTE FUNCTION gridmap_append_only()")


def downgrade():
    """Drop the triggers."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS supervisions_no_{action}")
    else:
        op.execute("DROP TRIGGER IF EXISTS supervisions_append_only ON supervisions")
