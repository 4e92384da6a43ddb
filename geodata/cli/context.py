"""What every command group shares: the error-to-exit-code group, the context, output helpers.

This module and every command module import only click and light ``geodata``
modules at import time, so ``gridmap --help`` and a usage error never load
geopandas, pandas, SQLAlchemy or shapely (``tests/test_cli_startup.py``).
Commands import what they need inside their function.
"""

import json
import sys

import click

from geodata.config import Settings
from geodata.errors import GridmapError, SchemaMissingError

#: The ``--format`` choices of commands whose output is a table.
TABLE_FORMATS = ("text", "json", "csv")


def _database_error(exc, url):
    """The :class:`GridmapError` for a SQLAlchemy error, or None for any other exception.

    SQLAlchemy is looked up in ``sys.modules`` rather than imported: if no
    command loaded it, the exception cannot be one of its errors.
    """
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None or not isinstance(exc, sa_exc.SQLAlchemyError):
        return None
    from geodata.storage import translate_db_error

    return translate_db_error(exc, url) or GridmapError(
        "database error: " + str(getattr(exc, "orig", exc)).splitlines()[0])


class ErrorExitGroup(click.Group):
    """A click group that turns domain and database errors into one line and exit code 2."""

    def invoke(self, ctx):
        """Run the command; a domain or database error prints one line and exits 2."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            error = exc if isinstance(exc, GridmapError) else _database_error(
                exc, ctx.meta.get("gridmap.url"))
            if error is None or ctx.meta.get("gridmap.debug"):
                raise
            click.echo(f"error: {error.message}", err=True)
            ctx.exit(2)


class Context:
    """Settings and a lazily created engine shared by the subcommands."""

    def __init__(self, settings):
        self.settings = settings
        self._engine = None

    @property
    def engine(self):
        """The engine for ``--db`` (created on first use)."""
        if self._engine is None:
            from geodata.storage import make_engine

            self._engine = make_engine(self.settings.database_url,
                                       busy_timeout_s=self.settings.sqlite_busy_timeout_s)
        return self._engine

    def close(self):
        """Dispose of the engine's connections (called when the command ends)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def ready_engine(self):
        """The engine, after checking that the schema exists and is current."""
        from geodata import schema
        from geodata.storage import safe_url

        revision = schema.current_revision(self.engine)
        if revision is None:
            raise SchemaMissingError(
                f"{safe_url(self.settings.database_url)} has no gridmap schema: run "
                "`gridmap init-db` first")
        return self.engine


pass_context = click.make_pass_decorator(Context)


def make_context(database_url):
    """The :class:`Context` for ``--db URL`` (or the configured default)."""
    return Context(Settings.from_env(database_url=database_url))


def format_option(choices=TABLE_FORMATS, default="text", help=None):
    """The one ``--format`` option of every command with machine-readable output."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=default,
                        show_default=True, help=help)


def write_output(text, out=None):
    """Print ``text``, or write it to ``out`` (UTF-8) when a file is given."""
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        click.echo(text)


def emit_table(rows, columns, fmt, *, out=None, json_value=None):
    """Print a table of ``rows`` (dicts) as text with a header row, JSON or CSV.

    Parameters
    ----------
    rows : list of dict
        One dict per row; ``columns`` picks and orders the keys.
    columns : list of (str, str)
        ``(key, header)`` pairs; the text and CSV header rows show ``header``.
    fmt : {"text", "json", "csv"}
        Output format.
    json_value : object, optional
        What ``--format json`` prints (default: ``rows`` as a JSON array).
    """
    if fmt == "json":
        write_output(json.dumps(rows if json_value is None else json_value,
                                ensure_ascii=False, default=str), out)
        return
    keys = [k for k, _ in columns]
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([h for _, h in columns])
        writer.writerows([["" if r.get(k) is None else r.get(k) for k in keys] for r in rows])
        write_output(buffer.getvalue().rstrip("\n"), out)
        return
    lines = ["\t".join(h for _, h in columns)]
    lines += ["\t".join("-" if r.get(k) in (None, "") else str(r.get(k)) for k in keys)
              for r in rows]
    write_output("\n".join(lines), out)
