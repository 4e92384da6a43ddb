"""``gridmap init-db`` and ``gridmap demo``: create the schema, load the demo park."""

import click

from geodata.cli.context import pass_context


@click.command("init-db")
@pass_context
def init_db(obj):
    """Create or upgrade the schema (Alembic migrations; nothing is dropped)."""
    from geodata import schema
    from geodata.storage import safe_url

    schema.upgrade(obj.engine)
    click.echo(f"database ready at {safe_url(obj.settings.database_url)} "
               f"(schema {schema.current_revision(obj.engine)})")


@click.command("demo")
@click.option("--seed", type=int, default=None, help="Random seed (default: the fixed demo seed).")
@pass_context
def demo(obj, seed):
    """Create the schema if needed and load the demo park (扶沟县先进制造业开发区)."""
    from geodata import schema
    from geodata.services.demo_loader import load_demo

    schema.upgrade(obj.engine)
    summary = load_demo(obj.engine, seed=seed)
    click.echo(summary)


COMMANDS = (init_db, demo)
