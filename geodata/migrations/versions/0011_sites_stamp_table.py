"""Sites stamps in their own table, not on the park row.

Migration 0010's triggers wrote ``parks.sites_stamp``: every enterprise
write then took the park row's lock until its commit, after the enterprise
rows it had locked.  The park row is the lock a grid edit takes first
(``FOR UPDATE``) before re-pointing those enterprises, and ledger creates
hold it shared: a grid edit beside a site moved in QGIS or by raw SQL in
the same park ended in ``deadlock detected``, which without the trigger was
a plain wait.  ``park_sites_stamps`` holds one row per park (``park_id``,
``stamp``) that only these triggers lock, so no service waits on it.

No foreign key to ``parks``: its check would take the park row's key-share
lock, which a grid edit's ``FOR UPDATE`` blocks, the same wait again.  A
row left by a deleted park is harmless: a park re-using its id starts with
no enterprises, and its first enterprise write sets a fresh stamp.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_WATCHED = ("site", "host_id", "park_id")
_TRIGGERS = ("insert", "delete", "update")


def _drop_triggers(sqlite):
    if sqlite:
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS enterprises_sites_stamp_{name}")
    else:
        op.execute("DROP FUNCTION IF EXISTS gridmap_sites_stamp() CASCADE")  # and its triggers


def _create_triggers(sqlite, into_table):
    """The triggers that stamp a park afresh, into the table (``into_table``) or, as 0010
    made them, into ``parks.sites_stamp``."""
    fresh = "random()" if sqlite else "floor(random() * 9.0e18)::bigint"
    if into_table:
        # In park order, so two statements stamping the same parks queue, not deadlock.
        stamp = ("INSERT INTO park_sites_stamps (park_id, stamp) SELECT p, {fresh} FROM ("
                 "{parks}) AS touched(p) WHERE p IS NOT NULL ORDER BY p "
                 "ON CONFLICT (park_id) DO UPDATE SET stamp = EXCLUDED.stamp")
        every = f"UPDATE park_sites_stamps SET stamp = {fresh}"
        if sqlite:
            # No conflict clause: SQLite runs a trigger's INSERT under the conflict policy
            # of the statement that fired it (an upsert or INSERT OR IGNORE of enterprises
            # would fail it or skip the stamp).  One writer at a time: no race.
            stamp = ("UPDATE park_sites_stamps SET stamp = {fresh} WHERE park_id = {parks}; "
                     "INSERT INTO park_sites_stamps (park_id, stamp) SELECT {parks}, {fresh} "
                     "WHERE NOT EXISTS (SELECT 1 FROM park_sites_stamps WHERE park_id = {parks})")
    else:
        stamp = "UPDATE parks SET sites_stamp = {fresh} WHERE id IN ({parks})"
        every = f"UPDATE parks SET sites_stamp = {fresh}"
    if sqlite:
        watched = ", ".join(_WATCHED)
        for name, when, parks in (
                ("insert", "INSERT", ["NEW.park_id"]), ("delete", "DELETE", ["OLD.park_id"]),
                ("update", f"UPDATE OF {watched}", ["OLD.park_id", "NEW.park_id"])):
            body = " ".join(stamp.format(parks=p, fresh=fresh) + ";" for p in parks)
            op.execute(f"CREATE TRIGGER enterprises_sites_stamp_{name} AFTER {when} ON "
                       f"enterprises BEGIN {body} END")
        return
    changed = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in ("host_id", "park_id"))
    moved = f"""SELECT DISTINCT v.p FROM old_rows o
            JOIN new_rows n ON o.id = n.id, LATERAL (VALUES (o.park_id), (n.park_id)) AS v(p)
            WHERE {changed} OR ST_AsEWKB(o.site) IS DISTINCT FROM ST_AsEWKB(n.site)"""
    op.execute(f"""
CREATE FUNCTION gridmap_sites_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {stamp.format(parks="SELECT DISTINCT park_id FROM new_rows", fresh=fresh)};
    ELSIF TG_OP = 'DELETE' THEN
        {stamp.format(parks="SELECT DISTINCT park_id FROM old_rows", fresh=fresh)};
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only rows whose site, host or park changed: grid reassignments leave the stamp.
        {stamp.format(parks=moved, fresh=fresh)};
    ELSE  -- TRUNCATE
        {every};
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


def upgrade():
    """Create ``park_sites_stamps`` from ``parks.sites_stamp``; triggers write it instead."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_triggers(sqlite)
    op.create_table("park_sites_stamps",
                    sa.Column("park_id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("stamp", sa.BigInteger, nullable=False))
    op.execute("INSERT INTO park_sites_stamps (park_id, stamp) "
               "SELECT id, sites_stamp FROM parks WHERE sites_stamp <> 0")
    op.drop_column("parks", "sites_stamp")
    _create_triggers(sqlite, into_table=True)


def downgrade():
    """Back to ``parks.sites_stamp`` and 0010's triggers."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_triggers(sqlite)
    op.add_column("parks", sa.Column("sites_stamp", sa.BigInteger, nullable=False,
                                     server_default="0"))
    op.execute("UPDATE parks SET sites_stamp = (SELECT stamp FROM park_sites_stamps s "
               "WHERE s.park_id = parks.id) WHERE id IN (SELECT park_id FROM park_sites_stamps)")
    op.drop_table("park_sites_stamps")
    _create_triggers(sqlite, into_table=False)
