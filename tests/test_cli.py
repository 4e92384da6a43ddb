"""CLI contract: exit codes and one-line errors on empty, uninitialised, unreachable DBs."""

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
