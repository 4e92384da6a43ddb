"""Sites stamp: a per-park value that changes whenever the park's enterprise sites change.

The hidden-unit detection (:mod:`geodata.hidden`) depends on every site of
a park, its registered host and its park; the service caches the park's
classification under this stamp (``parks.sites_stamp``).  Triggers set it
on every insert or delete of an enterprise and on every update of its
``site``, ``host_id`` or ``park_id``, whoever writes (the services, an
import, raw SQL, a restore), so the cache cannot outlive the data.

The stamp is a fresh random number (64 bits on SQLite, 52 on PostgreSQL),
never a counter: a counter stepped in a transaction that rolled back would
be stepped to the same value again by the next writer, with other sites
behind it, and a sequence starts again at 1 in a database dropped and
created again under the same URL.  PostgreSQL sets it once per statement
(transition tables), so an import of 10^5 sites updates the park row once,
not 10^5 times.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_WATCHED = ("site", "host_id", "park_id")


def upgrade():
    """Add ``parks.sites_stamp``, give parks with enterprises a fresh one, create the triggers."""
    op.add_column("parks", sa.Column("sites_stamp", sa.BigInteger, nullable=False,
                                     server_default="0"))
    if op.get_bind().dialect.name == "sqlite":
        fresh = "random()"
        watched = ", ".join(_WATCHED)
        for name, when, parks in (
                ("insert", "INSERT", "NEW.park_id"), ("delete", "DELETE", "OLD.park_id"),
                ("update", f"UPDATE OF {watched}", "OLD.park_id, NEW.park_id")):
            op.execute(f"CREATE TRIGGER enterprises_sites_stamp_{name} AFTER {when} ON "
                       f"enterprises BEGIN UPDATE parks SET sites_stamp = {fresh} "
                       f"WHERE id IN ({parks}); END")
    else:
        fresh = "floor(random() * 9.0e18)::bigint"
        changed = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in ("host_id", "park_id"))
        op.execute(f"""
CREATE FUNCTION gridmap_sites_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE parks SET sites_stamp = {fresh} WHERE id IN (SELECT park_id FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE parks SET sites_stamp = {fresh} WHERE id IN (SELECT park_id FROM old_rows);
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only rows whose site, host or park changed: grid reassignments leave the stamp.
        UPDATE parks SET sites_stamp = {fresh} WHERE id IN (
            SELECT p FROM old_rows o JOIN new_rows n ON o.id = n.id,
                LATERAL (VALUES (o.park_id), (n.park_id)) AS v(p)
            WHERE {changed}
               OR ST_AsEWKB(o.site) IS DISTINCT FROM ST_AsEWKB(n.site));
    ELSE  -- TRUNCATE
        UPDATE parks SET sites_stamp = {fresh};
    END IF;
    RETURN NULL;
END $$""")
        for name, transition in (("insert", "NEW TABLE AS new_rows"),
                                 ("delete", "OLD TABLE AS old_rows"),
                                 ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
            op.execute(f"CREATE TRIGGER enterprises_sites_stamp_{name} AFTER {name.upper()} "
                       f"ON enterprises REFERENCING {transition} FOR EACH STATEMENT "
                       "EXECUTE FUNCTION gridmap_sites_stamp()")
        op.execute("CREATE TRIGGER enterprises_sites_stamp_truncate AFTER TRUNCATE ON "
                   "enterprises FOR EACH STATEMENT EXECUTE FUNCTION gridmap_sites_stamp()")
    # Parks holding enterprises already: a stamp no other database's park can have.
    op.execute(f"UPDATE parks SET sites_stamp = {fresh} "
               "WHERE id IN (SELECT park_id FROM enterprises)")


def downgrade():
    """Drop the triggers and the column."""
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS enterprises_sites_stamp_{name}")
    else:
        op.execute("DROP FUNCTION IF EXISTS gridmap_sites_stamp() CASCADE")  # and its triggers
    op.execute("ALTER TABLE parks DROP COLUMN sites_stamp")
