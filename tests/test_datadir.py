"""Where data lives: the data folder, no database created by reading, ``gridmap info``."""

import io
import json
import os

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from geodata.cli import main
from geodata.config import Settings
from geodata.errors import ConfigError, DatabaseMissingError, ValidationError
from geodata.files import atomic_write
from geodata.formats import write_layer
from geodata.photos import photo_type
from tests.conftest import table_counts


def every_file(root):
    """All files under ``root``, relative, sorted."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A fresh HOME with no data folder, the default settings, and a cwd that is not the repo."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("GRIDMAP_DATA_DIR", "GRIDMAP_DATABASE_URL", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(cwd)
    return tmp_path


def gridmap(*args):
    """Run ``gridmap ARGS`` in-process with the environment as it is."""
    return CliRunner().invoke(main, list(map(str, args)))


def test_default_database_and_photos_live_in_the_per_user_data_folder(elsewhere):
    settings = Settings.from_env()
    data = elsewhere / "home" / ".local" / "share" / "gridmap"  # platformdirs on Linux
    assert settings.data_dir == str(data)
    assert settings.database_url == f"sqlite:///{data / 'gridmap.sqlite'}"
    assert settings.photo_dir == data / "photos"


def test_gridmap_data_dir_moves_database_and_photos(tmp_path):
    settings = Settings.from_env({"GRIDMAP_DATA_DIR": str(tmp_path / "d")})
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'gridmap.sqlite'}"
    assert settings.photo_dir == tmp_path / "d" / "photos"
    explicit = Settings.from_env({"GRIDMAP_DATA_DIR": str(tmp_path / "d"),
                                  "GRIDMAP_DATABASE_URL": "postgresql+psycopg://h/db"})
    assert explicit.database_url == "postgresql+psycopg://h/db"
    assert not (tmp_path / "d").exists()  # validating creates nothing


def test_a_data_folder_that_cannot_be_written_is_a_configuration_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"GRIDMAP_DATA_DIR": str(tmp_path / "a-file" / "gridmap")})
    assert raised.value.details == {"setting": "GRIDMAP_DATA_DIR"}
    monkeypatch.setenv("GRIDMAP_DATA_DIR", str(tmp_path / "a-file"))
    result = gridmap("info")
    assert result.exit_code == 2
    assert "set GRIDMAP_DATA_DIR to a writable folder" in result.stderr


READ_ONLY = [
    ("check", "--park", "X"),
    ("check", "--all"),
    ("export", "parks", "out.geojson"),
    ("hidden-units", "--park", "X"),
    ("hazards", "list"),
    ("hazards", "show", "1"),
    ("hazards", "export", "ledger.csv"),
    ("users", "list"),
    ("edit", "history", "--park", "X"),
    # Writers that need the schema refuse too: an empty file would only lead to init-db.
    ("import", "parks", "parks.geojson"),
    ("users", "add", "u1", "--role", "viewer", "--password", "long-enough-1"),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_commands_on_a_missing_database_exit_2_and_create_nothing(elsewhere, args):
    (elsewhere / "cwd" / "parks.geojson").write_text('{"type": "FeatureCollection"}')
    before = every_file(elsewhere)
    result = gridmap(*args)
    assert result.exit_code == 2, result.output
    database = elsewhere / "home" / ".local" / "share" / "gridmap" / "gridmap.sqlite"
    assert result.stderr == (f"error: no database at {database}: run `gridmap demo` (demo data) "
                             "or `gridmap init-db`\n")
    assert every_file(elsewhere) == before


def test_the_web_app_refuses_to_start_on_a_missing_database(elsewhere):
    from webmap import create_app

    with pytest.raises(DatabaseMissingError, match="run `gridmap demo`"):
        create_app()
    assert every_file(elsewhere) == []


def test_info_on_a_missing_database_reports_it_and_creates_nothing(elsewhere):
    text = gridmap("info")
    assert text.exit_code == 0, text.output
    assert "not created yet: run `gridmap demo`" in text.output
    report = json.loads(gridmap("info", "--format", "json").output)
    assert report["database"]["status"] == "missing"
    assert report["data_dir"] == str(elsewhere / "home" / ".local" / "share" / "gridmap")
    assert report["versions"]["GEOS"] and report["versions"]["GDAL"]
    assert every_file(elsewhere) == []


def test_init_db_creates_the_default_database_that_the_other_commands_find(elsewhere):
    created = gridmap("init-db")
    assert created.exit_code == 0, created.output
    data = elsewhere / "home" / ".local" / "share" / "gridmap"
    assert (data / "gridmap.sqlite").is_file()
    assert not list((elsewhere / "cwd").iterdir())
    report = json.loads(gridmap("info", "--format", "json").output)
    assert report["database"]["status"] == "ok"
    assert report["database_url"] == f"sqlite:///{data / 'gridmap.sqlite'}"
    assert set(report["database"]["tables"].values()) == {0}
    unknown = gridmap("check", "--park", "X")
    assert unknown.exit_code == 2 and "no park with code 'X'" in unknown.stderr


def test_info_on_both_backends(runner, engine, backend):
    from tests.ledger_helpers import build_park

    build_park(engine)
    report = json.loads(runner("info", "--format", "json").output)
    db = report["database"]
    assert db["status"] == "ok" and db["backend"] == backend
    assert db["schema_revision"] == db["schema_head"]
    assert db["tables"] == table_counts(engine) and db["tables"]["grids"] == 4
    if backend == "spatialite":
        assert db["SpatiaLite"][0].isdigit() and db["SpatiaLite GEOS"]
    else:
        assert db["PostGIS"].startswith("POSTGIS=") and db["PostgreSQL"][0].isdigit()
    text = runner("info")
    assert text.exit_code == 0
    lines = dict(line.split(None, 1) for line in text.output.splitlines()
                 if line.startswith(("gridmap ", "schema ", "GeoAlchemy2 ")))
    assert lines["schema"].strip() == f"{db['schema_revision']} (newest {db['schema_head']})"
    assert any(line.split() == ["rows", "grids", "4"] for line in text.output.splitlines())


def test_info_hides_the_password(db_url, backend):
    if backend == "postgis":  # trust authentication ignores the password; it must not show
        db_url = make_url(db_url).set(password="s3cret").render_as_string(hide_password=False)
        shown = "***"
    else:
        shown = db_url
    result = gridmap("--db", db_url, "info")
    assert result.exit_code == 0 and "s3cret" not in result.output and shown in result.output


def test_info_on_an_unreachable_database_exits_2_without_the_password():
    result = gridmap("--db", "postgresql+psycopg://gm:s3cret@127.0.0.1:9/gridmap", "info")
    assert result.exit_code == 2
    assert "cannot connect to the database" in result.stderr
    assert "GDAL" in result.output and "s3cret" not in result.output + result.stderr


@pytest.mark.parametrize("suffix, bad", [
    (".geojson", shapely.Point(1e308, 1e308)),  # outside RFC 7946's lon/lat extent
    (".zip", shapely.Point(np.inf, 0)),         # a shapefile refuses non-finite coordinates
    (".shp", shapely.box(0, 0, 1, 1)),          # and a polygon in a point layer
])
def test_a_failed_export_keeps_the_old_file_and_leaves_nothing_else(tmp_path, suffix, bad):
    target = tmp_path / f"grids{suffix}"
    target.write_text("previous export")
    frame = gpd.GeoDataFrame({"code": ["A", "B"]}, geometry=[shapely.Point(0, 0), bad],
                             crs=4326)
    with pytest.raises(Exception, match="index 1"):
        write_layer(frame, target)
    assert target.read_text() == "previous export"
    assert every_file(tmp_path) == [target.name]


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as temp:
            temp.write_text("half")
            raise KeyboardInterrupt
    assert every_file(tmp_path) == []
    with atomic_write(target) as temp:
        temp.write_text("whole")
    assert every_file(tmp_path) == ["report.json"] and target.read_text() == "whole"


def test_a_decompression_bomb_photo_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, "PNG")  # 64 megapixels in a few kilobytes
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ValidationError) as raised:
        photo_type(buffer.getvalue())
    assert raised.value.code == "invalid_photo" and "50 million pixels" in raised.value.message
