"""Create and upgrade the schema through Alembic, on SpatiaLite and PostGIS alike.

Alembic is imported only to upgrade: every command compares the database's
revision with the shipped head first, and importing Alembic for that would
cost more than the query, so the head is read from the migration files.
"""

import functools
import re
from pathlib import Path

import sqlalchemy as sa

from geodata.errors import SchemaMissingError, SchemaOutdatedError

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine, revision="head"):
    """Bring the database to ``revision``; safe to run again (nothing is dropped)."""
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        command.upgrade(_alembic_config(connection), revision)


def current_revision(engine):
    """Return the database's Alembic revision, or None when it has no schema.

    Read from Alembic's own table, as ``MigrationContext.get_current_revision``
    does; the schema has one head, hence at most one row.
    """
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


#: ``revision = "0009"`` and ``down_revision = "0008"`` (or ``None``) of a migration file.
_REVISION_LINE = re.compile(r'^(down_revision|revision)\s*=\s*(?:"([^"]*)"|None)\s*$', re.M)


@functools.cache  # the files do not change while the process runs; /readyz asks often
def shipped_revisions():
    """Return ``{revision: down_revision}`` of every migration shipped with this code.

    Read from the files' ``revision``/``down_revision`` lines rather than
    through Alembic's script directory (``tests/test_cli_tree.py`` checks
    that both agree).
    """
    revisions = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((name, value or None) for name, value in
                     _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" in found:
            revisions[found["revision"]] = found.get("down_revision")
    return revisions


def head_revision():
    """Return the newest revision shipped with this code (the one no other revises)."""
    revisions = shipped_revisions()
    (head,) = set(revisions) - set(revisions.values())
    return head


def require_current(engine, where="the database"):
    """Return the database's revision after checking it is this code's head.

    Every command but ``init-db``, ``demo`` and ``info`` (and the web
    tier's readiness probe) calls this before it reads or writes: a schema
    one migration behind lacks a table or column the code uses, and the
    error would surface later as a half-explained database error.

    Raises
    ------
    SchemaMissingError
        No gridmap schema: run ``gridmap init-db``.
    SchemaOutdatedError
        An older revision (``init-db`` upgrades it), or one newer than this
        code knows (upgrade gridmap instead).
    """
    revision = current_revision(engine)
    head = head_revision()
    if revision is None:
        raise SchemaMissingError(f"{where} has no gridmap schema: run `gridmap init-db` first",
                                 details={"head": head})
    if revision != head:
        advice = ("run `gridmap init-db` to upgrade it" if revision in shipped_revisions()
                  else "it was upgraded by a newer gridmap: install that version")
        raise SchemaOutdatedError(
            f"{where} has schema revision {revision} but this gridmap needs {head}: {advice}",
            details={"revision": revision, "head": head})
    return revision
