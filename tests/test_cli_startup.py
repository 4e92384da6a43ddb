"""The command line starts light: help and usage errors load no geopandas, pandas or SQLAlchemy.

Each case runs in a fresh interpreter (``python -X importtime``, as a user
would check it) and fails if a heavy module was imported.  Every command and
subcommand is enumerated from the click group, so a new command is covered.
"""

import json
import os
import subprocess
import sys

import click
import pytest

from geodata.cli import main

HEAVY = ("geopandas", "pandas", "sqlalchemy", "shapely", "pyproj", "pyogrio", "alembic")


def _command_paths(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from _command_paths(command, prefix + (name,))


def _imported(args):
    """Modules imported by ``gridmap ARGS`` in a fresh interpreter (from -X importtime)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "geodata.cli", *args],
                            capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")}
    return result, modules


CASES = [("--help",), ("nonsense",), ("check",), ("hazards", "list", "--format", "yaml"),
         ("import", "rivers", "x.geojson")] + [path + ("--help",) for path in _command_paths(main)]


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_help_and_usage_errors_import_nothing_heavy(args):
    result, modules = _imported(args)
    assert result.returncode in (0, 2), result.stderr[-2000:]
    assert "geodata.cli" in modules  # the importtime log was read
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"gridmap {' '.join(args)} imported {heavy[:5]}"


def test_every_machine_output_spells_format_the_same():
    """No command spells machine output other than ``--format`` (no ``--json``)."""
    for path in _command_paths(main):
        command = main
        for name in path:
            command = command.commands[name]
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert "--json" not in options, path
        fmt = [p for p in command.params if p.name == "fmt"]
        if fmt:
            assert fmt[0].opts == ["--format"] and "json" in fmt[0].type.choices, path


#: What ``check --park`` (one process, any --threads) must not import: the
#: tables (pandas), file formats (pyogrio), Dask (only with --workers or
#: --scheduler), migrations (the revision is read as a row), the web tier.
NOT_FOR_CHECK = ("pandas", "geopandas", "pyogrio", "dask", "distributed", "alembic", "flask",
                 "folium", "branca", "jinja2", "webmap", "mapbox_vector_tile", "openpyxl")


def test_check_park_reads_the_database_without_pandas(db_url, engine):
    """``check --park`` (the coverage check of a stored park) needs neither pandas nor pyogrio.

    Their imports cost more than reading 10^5 grids; on SpatiaLite the
    bundled GDAL is still loaded before mod_spatialite (geodata.storage).
    Nor Dask, Alembic or the web tier (:data:`NOT_FOR_CHECK`), with one
    thread or the default threads.
    """
    from datetime import date

    from geodata.services.demo_loader import load_demo

    load_demo(engine, today=date(2025, 11, 30))
    for threads in ([], ["--threads", "1"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "geodata.cli", "check", "--park", "FGKFQ",
             "--format", "json", *threads], capture_output=True, text=True, timeout=300,
            env={**os.environ, "GRIDMAP_DATABASE_URL": db_url})
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["valid"] is True
        modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                   if line.startswith("import time:")}
        assert "geodata.services.coverage" in modules
        assert sorted(m for m in modules if m.split(".")[0] in NOT_FOR_CHECK) == [], threads
