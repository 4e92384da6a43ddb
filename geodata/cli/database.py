"""``gridmap init-db``, ``demo``, ``info`` and ``prune-idempotency-keys``: the database itself."""

import json
import sys

import click

from geodata.cli.context import PlainIntRange, format_option, pass_context


@click.command("init-db")
@pass_context
def init_db(obj):
    """Create or upgrade the schema (Alembic migrations; nothing is dropped)."""
    from geodata import schema
    from geodata.storage import safe_url

    engine = obj.creating_engine()
    schema.upgrade(engine)
    click.echo(f"database ready at {safe_url(obj.settings.database_url)} "
               f"(schema {schema.current_revision(engine)})")


@click.command("demo")
@click.option("--seed", type=PlainIntRange(0), default=None,
              help="Random seed (default: the fixed demo seed).")
@click.option("--parks", type=PlainIntRange(1, 9999), default=None,
              help="Instead of the demo park, generate this many province-scale parks "
                   "(codes PV001...), one transaction each.")
@click.option("--grids-per-park", type=PlainIntRange(1, 1_000_000), default=None,
              help="With --parks: grids in each generated park (default 1000).")
@pass_context
def demo(obj, seed, parks, grids_per_park):
    """Create the schema if needed and load the demo park (扶沟县先进制造业开发区).

    With ``--parks N [--grids-per-park M]``, load N generated parks of M
    grids each instead (deterministic for a seed; parks already stored are
    skipped), e.g. ``gridmap demo --parks 100 --grids-per-park 1000``.
    """
    if grids_per_park is not None and parks is None:
        raise click.UsageError("--grids-per-park needs --parks")
    from geodata import schema

    engine = obj.creating_engine()
    schema.upgrade(engine)
    if parks is None:
        from geodata.services.demo_loader import load_demo

        click.echo(load_demo(engine, seed=seed))
        return
    from geodata.services.demo_loader import load_province

    click.echo(load_province(engine, parks, grids_per_park or 1000, seed=seed,
                             progress=lambda line: click.echo(line, err=True)))


@click.command("info")
@format_option(("text", "json"))
@pass_context
def info(obj, fmt):
    """Show the database, the data folder, library versions and row counts (read-only).

    Exit 0, also when the database is not created yet (the report says so);
    2 when it cannot be reached.
    """
    from geodata.diagnostics import collect, to_text

    report = collect(obj.settings, obj.engine)
    click.echo(json.dumps(report, ensure_ascii=False, indent=1) if fmt == "json"
               else to_text(report))
    if report["database"]["status"] == "unreachable":
        click.echo(f"error: {report['database']['message']}", err=True)
        sys.exit(2)


@click.command("prune-idempotency-keys")
@click.option("--days", type=PlainIntRange(1, 3650), default=30, show_default=True,
              help="Keep the answers of the last DAYS days.")
@pass_context
def prune_idempotency_keys(obj, days):
    """Delete stored Idempotency-Key answers older than --days (a retry after that is new)."""
    from datetime import datetime, timedelta, timezone

    from geodata.services import idempotency
    from geodata.storage import session_scope

    cutoff = datetime.now(timezone.utc) - timedelta(days=days)
    with session_scope(obj.ready_engine(), write=True) as session:
        count = idempotency.prune(session, cutoff)
    click.echo(f"deleted {count} idempotency keys older than {days} days")


COMMANDS = (init_db, demo, info, prune_idempotency_keys)
