"""Create and upgrade the schema through Alembic, on SpatiaLite and PostGIS alike.

Alembic is imported only to upgrade or to read the shipped head: every command
asks for the database's revision first, and importing Alembic for that would
cost more than the query.
"""

from pathlib import Path

import sqlalchemy as sa

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


def head_revision():
    """Return the newest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
