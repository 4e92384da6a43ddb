"""Coverage stamps: a per-park value that changes whenever the park's coverage check can.

The coverage check (``/api/parks/<code>/coverage``, the editor's park-wide
status) reads the park's active grids (geometry, code, parent, level,
retired state, park) and the park's boundary and metric CRS; it is O(park),
seconds at 10^5 grids, and its answer changes only when one of those does.
The service caches the report under this stamp
(:func:`geodata.services.coverage.coverage_report`).  Triggers renew it on
every insert and delete of a grid, on every update of one of those grid
columns and on every insert of a park or update of its boundary or metric
CRS, whoever writes (the services, an import, QGIS, raw SQL, a restore).

``park_coverage_stamps`` is its own table, as ``park_sites_stamps`` is
(0011): the park row is the lock grid edits take first.  On PostgreSQL the
triggers are *deferred* constraint triggers: the stamp row is written at
commit, after every other lock the transaction takes, so a writer that
stamped never waits on a grid row while holding the stamp.  A raw writer
(QGIS) and a grid edit that touch the same grids then queue as they did
without the stamp; an immediate trigger took the stamp at the first grid
statement and deadlocked with a writer already holding one of the grids.
The park is stamped once per transaction (a transaction-local setting
remembers it), so an import of 10^5 grids writes the row once.  SQLite has
one writer at a time: plain row triggers, no deadlock.

The stamp is a fresh random number, never a counter (see 0010).  Every
existing park gets one; a new park gets one on insert, so a park id that
SQLite re-uses after a delete never meets an old park's cached report.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

#: The grid columns the coverage check reads (``parent_id`` names the parent's code, which
#: is the parent row's own ``code``).
GRID_COLUMNS = ("geom", "parent_id", "level", "active_to", "code", "park_id")
#: The park columns it reads.
PARK_COLUMNS = ("boundary", "metric_epsg")
_SQLITE_TRIGGERS = ("grids_coverage_stamp_insert", "grids_coverage_stamp_delete",
                    "grids_coverage_stamp_update", "parks_coverage_stamp_insert",
                    "parks_coverage_stamp_update")


def upgrade():
    """Create ``park_coverage_stamps``, stamp every park, create the triggers."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table("park_coverage_stamps",
                    sa.Column("park_id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("stamp", sa.BigInteger, nullable=False))
    fresh = "random()" if sqlite else "floor(random() * 9.0e18)::bigint"
    op.execute(f"INSERT INTO park_coverage_stamps (park_id, stamp) SELECT id, {fresh} FROM parks")
    if sqlite:
        # No conflict clause: a trigger's INSERT runs under the conflict policy of the
        # statement that fired it (see 0011).
        stamp = ("UPDATE park_coverage_stamps SET stamp = random() WHERE park_id = {p}; "
                 "INSERT INTO park_coverage_stamps (park_id, stamp) SELECT {p}, random() "
                 "WHERE NOT EXISTS (SELECT 1 FROM park_coverage_stamps WHERE park_id = {p});")
        for name, table, when, parks in (
                ("grids_coverage_stamp_insert", "grids", "INSERT", ["NEW.park_id"]),
                ("grids_coverage_stamp_delete", "grids", "DELETE", ["OLD.park_id"]),
                ("grids_coverage_stamp_update", "grids",
                 f"UPDATE OF {', '.join(GRID_COLUMNS)}", ["OLD.park_id", "NEW.park_id"]),
                ("parks_coverage_stamp_insert", "parks", "INSERT", ["NEW.id"]),
                ("parks_coverage_stamp_update", "parks",
                 f"UPDATE OF {', '.join(PARK_COLUMNS)}", ["NEW.id"])):
            body = " ".join(stamp.format(p=p) for p in parks)
            op.execute(f"CREATE TRIGGER {name} AFTER {when} ON {table} BEGIN {body} END")
        return
    op.execute(f"""
CREATE FUNCTION gridmap_coverage_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- The parks this transaction stamped already: ",3,7," (a transaction-local setting).
    done text := coalesce(nullif(current_setting('gridmap.coverage_stamped', true), ''), ',');
    touched integer[];
    p integer;
BEGIN
    IF TG_TABLE_NAME = 'parks' THEN
        touched := ARRAY[NEW.id];
    ELSIF TG_OP = 'INSERT' THEN
        touched := ARRAY[NEW.park_id];
    ELSIF TG_OP = 'DELETE' THEN
        touched := ARRAY[OLD.park_id];
    ELSE
        touched := ARRAY[LEAST(OLD.park_id, NEW.park_id), GREATEST(OLD.park_id, NEW.park_id)];
    END IF;
    FOREACH p IN ARRAY touched LOOP
        IF strpos(done, ',' || p || ',') = 0 THEN
            INSERT INTO park_coverage_stamps (park_id, stamp) VALUES (p, {fresh})
                ON CONFLICT (park_id) DO UPDATE SET stamp = EXCLUDED.stamp;
            done := done || p || ',';
            PERFORM set_config('gridmap.coverage_stamped', done, true);
        END IF;
    END LOOP;
    RETURN NULL;
END $$""")
    for name, table, events in (
            ("grids_coverage_stamp", "grids",
             f"INSERT OR DELETE OR UPDATE OF {', '.join(GRID_COLUMNS)}"),
            ("parks_coverage_stamp", "parks", f"INSERT OR UPDATE OF {', '.join(PARK_COLUMNS)}")):
        op.execute(f"CREATE CONSTRAINT TRIGGER {name} AFTER {events} ON {table} "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                   "EXECUTE FUNCTION gridmap_coverage_stamp()")
    # TRUNCATE takes the whole table's lock anyway: stamp every park at once.
    op.execute(f"""
CREATE FUNCTION gridmap_coverage_stamp_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE park_coverage_stamps SET stamp = {fresh};
    RETURN NULL;
END $$""")
    op.execute("CREATE TRIGGER grids_coverage_stamp_truncate AFTER TRUNCATE ON grids "
               "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_coverage_stamp_all()")


def downgrade():
    """Drop the triggers and the table."""
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for function in ("gridmap_coverage_stamp", "gridmap_coverage_stamp_all"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}() CASCADE")  # and its triggers
    op.drop_table("park_coverage_stamps")
