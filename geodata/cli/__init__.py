"""The ``gridmap`` command line: one click group, one module per command group.

Exit codes: 0 success; 1 a check found problems; 2 bad input, usage,
configuration or an unreachable database.  Errors are one line on stderr
that says what to fix; ``--debug`` shows the traceback instead.

Modules: :mod:`~geodata.cli.database` (``init-db``, ``demo``),
:mod:`~geodata.cli.layers` (``import``, ``export``), :mod:`~geodata.cli.check`
(``check``, ``hidden-units``), :mod:`~geodata.cli.serve`,
:mod:`~geodata.cli.hazards`, :mod:`~geodata.cli.requests`, :mod:`~geodata.cli.users`,
:mod:`~geodata.cli.parks` (``parks set``), :mod:`~geodata.cli.edit` (``edit ...``,
``propose-grids``, ``import grids --diff|--apply``), :mod:`~geodata.cli.visits`
(``visits ...``), :mod:`~geodata.cli.weekly` (``weekly-report``, ``weekly ...``,
``assessment``) and :mod:`~geodata.cli.boards` (``boards``); shared parts in
:mod:`~geodata.cli.context`.
"""

import atexit
import gc

import click

from geodata.cli import (boards, check, database, edit, hazards, layers, parks, requests,
                         serve, users, visits, weekly)
from geodata.cli.context import ErrorExitGroup, make_context


@click.group(cls=ErrorExitGroup)
@click.option("--db", "database_url", metavar="URL",
              help="Database URL (default $GRIDMAP_DATABASE_URL, else the SpatiaLite file "
                   "gridmap.sqlite in the data folder: see `gridmap info`).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="gridmap")
@click.pass_context
def main(ctx, database_url, debug):
    """Grid service management (网格化服务管理) for industrial parks."""
    ctx.meta["gridmap.debug"] = debug
    ctx.obj = make_context(database_url)
    ctx.meta["gridmap.url"] = ctx.obj.settings.database_url
    ctx.call_on_close(ctx.obj.close)
    # The interpreter's exit collects the cycles of every imported module's
    # objects (SQLAlchemy's mappers and the models): 0.15-0.2 s of CPU per
    # command, more than reading 10^5 grids (docs/scaling.md).  By then the
    # command has closed its connections (Context.close) and written its
    # output, so the exit freezes them instead: reference counting still
    # frees the rest, and the operating system takes the memory back.
    atexit.unregister(gc.freeze)  # once, however many commands one process runs
    atexit.register(gc.freeze)


for _module in (database, layers, check, serve, hazards, requests, users, edit, parks, visits,
                weekly, boards):
    for _command in _module.COMMANDS:
        main.add_command(_command)
