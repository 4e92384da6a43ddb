"""Create and upgrade the schema through Alembic, on SpatiaLite and PostGIS alike."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection):
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine, revision="head"):
    """Bring the database to ``revision``; safe to run again (nothing is dropped)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
        command.upgrade(_alembic_config(connection), revision)


def current_revision(engine):
    """Return the database's Alembic revision, or None when it has no schema."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision():
    """Return the newest revision shipped with this code."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
