"""What every command group shares: the error-to-exit-code group, the context, output helpers.

This module and every command module import only click and light ``geodata``
modules at import time, so ``gridmap --help`` and a usage error never load
geopandas, pandas, SQLAlchemy or shapely (``tests/test_cli_startup.py``).
Commands import what they need inside their function.
"""

import json
import math
import sys

import click

from geodata import domains
from geodata.config import Settings
from geodata.errors import GridmapError

#: The ``--format`` choices of commands whose output is a table.
TABLE_FORMATS = ("text", "json", "csv")


def _file_error(exc):
    """The :class:`GridmapError` for an ``OSError`` no service turned into one, or None.

    A file the command was told to read or write that the system refuses (a
    missing folder, no permission, a full disk) is the operator's to fix:
    exit 2 naming the file, not a traceback with exit 1 ("problems found").
    """
    if not isinstance(exc, OSError):
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return GridmapError(f"{where}{exc.strerror or exc}", code="file_error")


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


class _PlainNumber:
    """Read a number option as the API reads numbers (:func:`geodata.domains.plain_number`).

    click's own types take ``" 1"``, ``"1_000"`` and Arabic-Indic digits
    (Python's ``int()``), and ``nan``/``inf`` as floats; every number option of
    the shell uses these types instead (``tests/test_cli.py`` walks them).
    """

    kind = int

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            number = domains.plain_number(value, self.kind)
            if number is None or not math.isfinite(number):
                self.fail(f"{value[:40]!r} is not a plain {self.name} (ASCII digits, no "
                          "blanks or '_')", param, ctx)
        return super().convert(value, param, ctx)


class PlainInt(_PlainNumber, click.types.IntParamType):
    """An integer option (see :class:`_PlainNumber`)."""


class PlainIntRange(_PlainNumber, click.IntRange):
    """An integer option within a range (see :class:`_PlainNumber`)."""


class PlainFloat(_PlainNumber, click.types.FloatParamType):
    """A finite number option (see :class:`_PlainNumber`)."""

    kind = float


class PlainFloatRange(_PlainNumber, click.FloatRange):
    """A finite number option within a range (see :class:`_PlainNumber`)."""

    kind = float


PLAIN_INT, PLAIN_FLOAT = PlainInt(), PlainFloat()


class ParkCode(click.ParamType):
    """A ``--park CODE`` value: blank is refused, not read as "no park given".

    Commands treat a missing code as "the only park" or "every park", and
    ``--park ""`` (an unset shell variable, ``--park "$PARK"``) took that
    meaning silently, or failed later (``tests/test_cli_tree.py`` walks the
    options).  Whether the park exists is the service's question (exit 2).
    """

    name = "park code"

    def convert(self, value, param, ctx):
        """Return ``value``; fail (exit 2) when it is blank."""
        if isinstance(value, str) and not value.strip():
            self.fail("give a park code (the value is empty)", param, ctx)
        return value


PARK_CODE = ParkCode()


class FilePath(click.Path):
    """A file option or argument: a :class:`click.Path` refusing bad paths.

    What is refused is :func:`geodata.domains.path_problem`'s to say.

    Every file and path parameter of the shell has this type
    (``tests/test_cli_tree.py`` walks them), so a bad path is a usage error
    naming the option, exit 2, before anything is read or written.
    """

    def convert(self, value, param, ctx):
        """Return the path as :class:`click.Path` does; fail (exit 2) on a bad one."""
        problem = domains.path_problem(value)
        if problem:
            self.fail(problem, param, ctx)
        return super().convert(value, param, ctx)


FILE_PATH = FilePath(dir_okay=False)


class ErrorExitGroup(click.Group):
    """A click group that turns domain and database errors into one line and exit code 2.

    Ctrl-C exits 130 (128 + SIGINT) with one line, never 1 (problems found).
    """

    def invoke(self, ctx):
        """Run the command; a domain or database error prints one line and exits 2."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            self._interrupted(ctx)
        except click.exceptions.Abort as exc:
            # click.prompt turns Ctrl-C and an ended stdin into Abort, which click
            # answers with "Aborted!" and exit 1, the code of "the check found problems".
            if isinstance(exc.__context__, KeyboardInterrupt):
                self._interrupted(ctx)
            if ctx.meta.get("gridmap.debug"):
                raise
            click.echo("\nerror: the command asked for input and stdin ended: run it in a "
                       "terminal, or give the value as an option (e.g. --password-stdin)",
                       err=True)
            ctx.exit(2)
        except Exception as exc:
            error = exc if isinstance(exc, GridmapError) else (
                _database_error(exc, ctx.meta.get("gridmap.url")) or _file_error(exc))
            if error is None or ctx.meta.get("gridmap.debug"):
                raise
            click.echo(f"error: {error.message}", err=True)
            ctx.exit(2)

    @staticmethod
    def _interrupted(ctx):
        """Ctrl-C: one line and exit 130, not click's "Aborted!" and exit 1 (problems found).

        Every write runs in one transaction (session_scope rolls back on Ctrl-C).
        """
        if ctx.meta.get("gridmap.debug"):
            raise
        click.echo("\ninterrupted: the write in progress was rolled back; run the "
                   "command again", err=True)
        ctx.exit(130)


class Context:
    """Settings and a lazily created engine shared by the subcommands."""

    def __init__(self, settings):
        self.settings = settings
        self._engine = None

    @property
    def engine(self):
        """The engine for ``--db`` (made on first use); a SpatiaLite file must exist."""
        return self._make_engine(create=False)

    def creating_engine(self):
        """The engine for ``init-db`` and ``demo``, the only commands that create the file."""
        return self._make_engine(create=True)

    def _make_engine(self, create):
        if self._engine is None:
            from geodata.storage import make_engine

            self._engine = make_engine(self.settings.database_url, create=create,
                                       busy_timeout_s=self.settings.sqlite_busy_timeout_s)
        return self._engine

    def close(self):
        """Dispose of the engine's connections (called when the command ends)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def ready_engine(self):
        """The engine, after checking that the database exists with this code's schema.

        The one gate of every command that reads or writes the database
        (all but ``init-db``, ``demo`` and ``info``): a missing schema, or
        one a migration behind, stops here with exit 2 and "run `gridmap
        init-db`" before anything is read or written.
        """
        from geodata import schema
        from geodata.storage import safe_url

        schema.require_current(self.engine, safe_url(self.settings.database_url))
        return self.engine


pass_context = click.make_pass_decorator(Context)


def make_context(database_url):
    """The :class:`Context` for ``--db URL`` (or the configured default)."""
    return Context(Settings.from_env(database_url=database_url))


def format_option(choices=TABLE_FORMATS, default="text", help=None):
    """The one ``--format`` option of every command with machine-readable output."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=default,
                        show_default=True, help=help)


def echo_moved(result, fmt):
    """Print a ledger entry's new state after a transition: JSON, or one line of text."""
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False))
    else:
        click.echo(f"{result['code']}: {result['status']} (version {result['version']})")


def write_output(text, out=None):
    """Print ``text``, or write it to ``out`` (UTF-8) when a file is given."""
    if out:
        from geodata.files import atomic_write

        with atomic_write(out) as temp:
            temp.write_text(text + "\n", encoding="utf-8")
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

        from geodata.files import spreadsheet_text

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([h for _, h in columns])
        writer.writerows([["" if r.get(k) is None else spreadsheet_text(r.get(k)) for k in keys]
                          for r in rows])
        write_output(buffer.getvalue().rstrip("\n"), out)
        return
    lines = ["\t".join(h for _, h in columns)]
    lines += ["\t".join("-" if r.get(k) in (None, "") else str(r.get(k)) for k in keys)
              for r in rows]
    write_output("\n".join(lines), out)


def park_scope_options(command):
    """``--park CODE | --all`` with ``--workers N`` / ``--scheduler URL`` (Dask).

    The command receives ``park_code``, ``all_parks``, ``workers`` and
    ``scheduler``; :func:`check_park_scope` validates the combination.
    """
    for option in reversed([
            click.option("--park", "park_code", type=PARK_CODE,
                         help="One stored park (its code)."),
            click.option("--all", "all_parks", is_flag=True, help="Every stored park."),
            click.option("--workers", type=PlainIntRange(1, 64), default=1, show_default=True,
                         help="With --park or --all: Dask worker processes on this machine "
                              "(a LocalCluster, one thread each); 1 works in this process."),
            click.option("--scheduler", metavar="tcp://HOST:PORT",
                         help="With --park or --all: run on this running Dask cluster, whose "
                              "workers must reach the same database URL.")]):
        command = option(command)
    return command


def check_park_scope(park_code, all_parks, workers, scheduler, *, others=0):
    """Refuse a bad ``--park/--all/--workers/--scheduler`` combination (exit 2).

    ``others`` counts other modes the command offers (e.g. a file to check).
    """
    if sum(map(bool, (park_code, all_parks))) + others != 1:
        raise click.UsageError("give exactly one of --park CODE or --all"
                               + (" (or a file)" if others else ""))
    if scheduler and workers > 1:
        raise click.UsageError("give --workers N or --scheduler URL, not both")
    if scheduler and not scheduler.startswith(("tcp://", "tls://")):
        raise click.UsageError(f"--scheduler: expected tcp://HOST:PORT, got {scheduler!r}")


def stored_park_codes(obj, park_code=None):
    """Codes of the parks to work on: ``[park_code]`` (checked to exist) or every park."""
    from geodata.services.parks import get_park, list_parks
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        if park_code:
            return [get_park(session, park_code).code]
        return [p.code for p in list_parks(session)]


def on_every_park(obj, task, codes, workers, scheduler, *args):
    """``task(url, code, *args)`` for each park code, here or on Dask (:mod:`geodata.batch`)."""
    from geodata.batch import dask_client, map_parks

    with dask_client(min(workers, max(len(codes), 1)), scheduler) as client:
        return map_parks(task, obj.settings.database_url, codes, *args, client=client)
