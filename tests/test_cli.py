"""CLI contract: exit codes and one-line errors on empty, uninitialised, unreachable DBs."""

import click
import pytest
from click.testing import CliRunner

from geodata.cli import main


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_uninitialised_database_exits_2_and_says_init_db(tmp_path):
    (tmp_path / "fresh.sqlite").touch()  # a file without the schema (a missing one: test_datadir)
    result = invoke("--db", f"sqlite:///{tmp_path}/fresh.sqlite", "export", "parks",
                    tmp_path / "p.geojson")
    assert result.exit_code == 2
    assert "run `gridmap init-db` first" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_unreachable_postgis_exits_2_and_hides_password(tmp_path):
    result = invoke("--db", "postgresql+psycopg://gm:s3cret@127.0.0.1:9/gridmap", "init-db")
    assert result.exit_code == 2
    assert "cannot connect to the database at" in result.stderr
    assert "s3cret" not in result.stderr and "***" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = invoke("--db", "postgresql+psycopg://gm:x@127.0.0.1:9/gridmap", "--debug",
                    "init-db")
    assert result.exit_code != 0 and result.exception is not None


def test_bad_database_url_is_a_configuration_error():
    result = invoke("--db", "mysql://x/y", "init-db")
    assert result.exit_code == 2 and "GRIDMAP_DATABASE_URL must be" in result.stderr


def test_unknown_park_exits_2(runner, tmp_path):
    result = runner("export", "grids", tmp_path / "g.geojson", "--park", "NOPE")
    assert result.exit_code == 2 and "no park with code 'NOPE'" in result.stderr


def test_missing_file_and_unknown_format_exit_2(runner, tmp_path):
    missing = runner("import", "parks", tmp_path / "nope.geojson")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    (tmp_path / "park.kml").write_text("<kml/>")
    unknown = runner("import", "parks", tmp_path / "park.kml")
    assert unknown.exit_code == 2 and "unsupported file type .kml" in unknown.stderr


@pytest.mark.parametrize("layer", ["grids", "enterprises", "staff", "hazards"])
def test_layers_need_a_park(runner, tmp_path, layer):
    (tmp_path / "x.csv").write_text("name\nA\n")
    result = runner("import", layer, tmp_path / "x.csv")
    assert result.exit_code == 2 and "no parks stored yet" in result.stderr


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))


def test_every_number_option_reads_plain_numbers_only():
    """click's int()/float() take ' 1', '1_000', Arabic-Indic digits and inf; the shell's
    number options are read like the API's (a new option with click's own type fails)."""
    from geodata.cli.context import _PlainNumber

    found = []
    for path, command in _commands(main):
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                found.append((path, param.name))
                assert isinstance(param.type, _PlainNumber), (path, param.name)
    assert len(found) >= 25


#: Integer options without both bounds, and who checks them: versions are compared with the
#: stored one in Python (a wrong one is 409/412), visit rules go through domains.integer.
OPEN_INTEGER_OPTIONS = {"if_match", "expected_version", "times", "after_days"}


def test_every_integer_option_is_bounded_or_checked_by_its_service():
    """An unbounded option reaches numpy or the database: ``--seed -1`` was a traceback."""
    for path, command in _commands(main):
        for param in command.params:
            if isinstance(param.type, click.types.IntParamType) and (
                    param.name not in OPEN_INTEGER_OPTIONS):
                assert getattr(param.type, "min", None) is not None, (path, param.name)


@pytest.mark.parametrize("args", [("demo", "--seed=-1"),
                                  ("propose-grids", "--target-count", "2", "--seed=-1")])
def test_a_negative_seed_is_a_usage_error(args):
    result = CliRunner().invoke(main, ["--db", "sqlite:////nonexistent/x.sqlite", *args])
    assert result.exit_code == 2 and "x>=0" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args", [
    ("requests", "list", "--limit", "١٠"), ("requests", "list", "--limit", " 10"),
    ("requests", "list", "--limit", "1_0"), ("check", "--tolerance-m", "inf"),
    ("check", "--tolerance-m", "nan"), ("demo", "--seed", "+1 ")])
def test_a_number_option_that_is_not_plain_is_a_usage_error(args):
    result = CliRunner().invoke(main, ["--db", "sqlite:////nonexistent/x.sqlite", *args])
    assert result.exit_code == 2 and "is not a plain" in result.output, result.output
