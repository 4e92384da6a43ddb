"""Every ``gridmap`` command, walked from the click tree, against the databases operators meet.

Each leaf command runs against (a) a database never initialised, (b) an
unreachable PostGIS URL with a password in it, (c) an initialised database
with no parks, (d) a database one migration behind and (e) an unknown
``--park``.  The contract (README.md "Exit codes", RELIABILITY.md "CLI exit codes"):
exit 2 with one line naming the problem on stderr, nothing on stdout that
looks like an error, no traceback, never the password, and nothing stored
changed; on an empty database the commands that work on every park exit 0,
with valid JSON on stdout where ``--format json`` is offered.

A new command fails :func:`test_every_command_is_classified` until it is
given arguments in :data:`ARGS` or a reason in one of the exception tables.
"""

import json

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geodata import schema
from geodata.cli import main
from geodata.storage import make_engine
from tests.conftest import metric_box, stored_snapshot

#: Stands for the park code in :data:`ARGS`; a run replaces it with a code no park has.
PARK = "{park}"
#: Stands for the test's temporary folder in :data:`ARGS`.
TMP = "{tmp}"
UNKNOWN = "NOPE"
NO_PARK = f"no park with code '{UNKNOWN}'"
GEOMETRY = json.dumps({"type": "Polygon", "coordinates": [[
    [114.39, 34.06], [114.391, 34.06], [114.391, 34.061], [114.39, 34.061], [114.39, 34.06]]]})
CREDIT = "91411621MA00000001"

#: Arguments of every leaf command that needs a gridmap schema, and what it says on a
#: database without the park or user it names (None: it works there, e.g. ``users add``).
#: Commands that take ``--park`` name :data:`PARK` and must say :data:`NO_PARK`.
ARGS = {
    "prune-idempotency-keys": ([], None),
    "import": (["grids", f"{TMP}/cells.geojson", "--park", PARK], NO_PARK),
    "export": (["grids", f"{TMP}/out.geojson", "--park", PARK], NO_PARK),
    "check": (["--park", PARK], NO_PARK),
    "hidden-units": (["--park", PARK], NO_PARK),
    "hazards list": (["--park", PARK], NO_PARK),
    "hazards show": (["YH-2026-0001", "--park", PARK], NO_PARK),
    "hazards transition": (["YH-2026-0001", "rectifying", "--as", "admin"], "no user 'admin'"),
    "hazards export": ([f"{TMP}/h.csv", "--park", PARK], NO_PARK),
    "hazards relocate": (["--park", PARK], NO_PARK),
    "requests list": (["--park", PARK], NO_PARK),
    "requests show": (["SQ-2026-0001", "--park", PARK], NO_PARK),
    "requests transition": (["SQ-2026-0001", "accepted", "--as", "admin"], "no user 'admin'"),
    "requests export": ([f"{TMP}/r.csv", "--park", PARK], NO_PARK),
    "requests categories list": (["--park", PARK], NO_PARK),
    "requests categories add": (["消防", "--park", PARK], NO_PARK),
    "users add": (["alice", "--role", "admin", "--password-stdin"], None),
    "users list": ([], None),
    "users set-role": (["alice", "admin"], "no user 'alice'"),
    "users set-password": (["alice", "--password-stdin"], "no user 'alice'"),
    "users disable": (["alice"], "no user 'alice'"),
    "users enable": (["alice"], "no user 'alice'"),
    "users revoke-token": (["alice"], "no user 'alice'"),
    "users token": (["alice"], "no user 'alice'"),
    "users demo-accounts": ([], None),
    "edit draw": (["--geometry", GEOMETRY, "--park", PARK], NO_PARK),
    "edit reshape": (["G01", "--geometry", GEOMETRY, "--park", PARK], NO_PARK),
    "edit split": (["G01", "--parts", "2", "--park", PARK], NO_PARK),
    "edit merge": (["G01", "G02", "--park", PARK], NO_PARK),
    "edit retire": (["G01", "--park", PARK], NO_PARK),
    "edit absorb-slivers": (["--park", PARK], NO_PARK),
    "edit restore": (["--edit", "1", "--park", PARK], NO_PARK),
    "edit history": (["--park", PARK], NO_PARK),
    "propose-grids": (["--target-count", "2", "--park", PARK], NO_PARK),
    "parks set": ([PARK, "--require-after-photo"], NO_PARK),
    "visits list": (["--park", PARK], NO_PARK),
    "visits export": (["--park", PARK, "--out", f"{TMP}/v.csv"], NO_PARK),
    "visits due": (["--park", PARK], NO_PARK),
    "visits link": (["alice", CREDIT, "--park", PARK], NO_PARK),
    "visits links": (["--park", PARK], NO_PARK),
    "visits rule": (["patrol", "--park", PARK, "--period", "week", "--times", "1"], NO_PARK),
    "visits rules": (["--park", PARK], NO_PARK),
    "weekly-report": (["--park", PARK, "--week", "2026-W10", "--out", f"{TMP}/w.xlsx"],
                      NO_PARK),
    "weekly assign": (["--park", PARK, "--week", "2026-W10", "--enterprise", CREDIT,
                       "--owner", "x", "--deadline", "2026-03-20", "--as", "admin"], NO_PARK),
    "weekly assignments": (["--park", PARK], NO_PARK),
    "assessment": (["--park", PARK, "--from", "2026-01-01", "--to", "2026-01-31"], NO_PARK),
    "assessment-weights": (["--park", PARK], NO_PARK),
    "boards": (["--park", PARK, "--out", f"{TMP}/b.pdf", "--service-line", "12345",
                "--base-url", "https://gridmap.example.cn"], NO_PARK),
}

#: Commands that create or upgrade the schema: they succeed on (a) and (d) and leave the
#: database at this code's head; only an unreachable one is an error for them.
CREATES_SCHEMA = {
    "init-db": "creates or upgrades the schema (its purpose)",
    "demo": "creates or upgrades the schema, then loads the demo park",
}

#: Commands that report on the database whatever its state: exit 0 with the state in the
#: report (no schema, outdated, missing file), exit 2 only when it cannot be reached.
REPORTS = {"info": "the diagnostic report operators run when something is wrong"}

#: Commands that do not run against the database in this walk, and why.
NOT_WALKED = {
    "serve": "runs the web server until stopped; the app builds without a database (item 34) "
             "and /readyz reports unreachable, missing or outdated schemas "
             "(tests/test_webtier.py)",
}

#: The no-``--park`` form of commands that work on every stored park (or need none): on an
#: empty database they exit 0 and change nothing ("no parks found" is not an error).
EVERY_PARK = {
    "check": ["--all"], "hidden-units": ["--all"], "hazards relocate": ["--all"],
    "hazards list": [], "requests list": [], "visits list": [], "visits due": [],
    "visits export": [], "hazards export": [f"{TMP}/h.csv"],
    "requests export": [f"{TMP}/r.csv"], "export": ["parks", f"{TMP}/p.geojson"],
    "users list": [], "prune-idempotency-keys": [],
}

PASSWORD = "s3cret-pw"
UNREACHABLE = [f"postgresql+psycopg://gm:{PASSWORD}@127.0.0.1:9/gridmap",
               f"postgresql+psycopg://gm@127.0.0.1:9/gridmap?password={PASSWORD}"]


def _leaves(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaves(command, path + (name,))
        else:
            yield " ".join(path + (name,)), command


LEAVES = dict(_leaves(main))


def _offers_json(name):
    return any(p.name == "fmt" and "json" in p.type.choices for p in LEAVES[name].params)


def _args(name, tmp_path, park=UNKNOWN, args=None):
    args = ARGS[name][0] if args is None else args
    return [*name.split(), *(a.replace(PARK, park).replace(TMP, str(tmp_path)) for a in args)]


def _run(url, args):
    return CliRunner().invoke(main, ["--db", url, *args], input="correct horse battery\n")


def _faults(name, result, code, message):
    """What is wrong with ``result`` against the contract (empty when nothing is)."""
    faults = []
    if result.exit_code != code:
        faults.append(f"exit {result.exit_code}, expected {code}")
    if message and message not in result.stderr:
        faults.append(f"stderr lacks {message!r}")
    if "Traceback" in result.output or (
            result.exception is not None and not isinstance(result.exception, SystemExit)):
        faults.append(f"traceback: {result.exception!r}")
    if code == 2 and "error" in result.stdout.lower():
        faults.append("the error went to stdout")
    if PASSWORD in result.output:
        faults.append("the password was printed")
    return [f"{name}: {fault} (stderr: {result.stderr.strip()[-200:]!r})" for fault in faults]


def _raw_counts(engine):
    """Row count of every table in the database (for schemas older than the models)."""
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar() for n in names}


@pytest.fixture
def other_database(request, backend, tmp_path):
    """``make(name)``: the URL of a new, empty database (no schema, no PostGIS extension)."""
    made = []

    def make(name):
        if backend == "spatialite":
            path = tmp_path / f"{name}.sqlite"
            path.touch()  # a file never initialised (a missing one: tests/test_datadir.py)
            return f"sqlite:///{path}"
        url = sa.engine.make_url(request.getfixturevalue("postgis_url"))
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        made.append(name)
        return url.set(database=name).render_as_string(hide_password=False)

    yield make
    if made:
        url = sa.engine.make_url(request.getfixturevalue("postgis_url"))
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in made:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_every_command_is_classified():
    tables = [set(ARGS), set(CREATES_SCHEMA), set(REPORTS), set(NOT_WALKED)]
    assert set().union(*tables) == set(LEAVES), "classify the new command in test_cli_tree.py"
    assert sum(map(len, tables)) == len(LEAVES), "a command is in two tables"
    assert set(EVERY_PARK) <= set(ARGS)


def test_the_head_read_from_the_files_is_alembics():
    """:func:`geodata.schema.head_revision` reads the files instead of importing Alembic."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(schema.MIGRATIONS))
    assert schema.head_revision() == script.get_current_head()
    assert schema.shipped_revisions() == {
        r.revision: r.down_revision for r in script.walk_revisions()}


def test_a_database_never_initialised(other_database, tmp_path):
    """(a): exit 2 and "run `gridmap init-db`", and no table is created."""
    url = other_database("gridmap_blank")
    engine = make_engine(url)
    before = _raw_counts(engine)
    faults = []
    for name in ARGS:
        result = _run(url, _args(name, tmp_path))
        faults += _faults(name, result, 2, "has no gridmap schema: run `gridmap init-db`")
    result = _run(url, ["info", "--format", "json"])
    faults += _faults("info", result, 0, None)
    assert json.loads(result.stdout)["database"]["status"] == "no_schema"
    assert _raw_counts(engine) == before and schema.current_revision(engine) is None
    engine.dispose()
    assert faults == []


@pytest.mark.parametrize("url", UNREACHABLE, ids=["userinfo", "query"])
def test_an_unreachable_database_hides_the_password(url, tmp_path):
    """(b): every command that touches the database, schema creators and info included."""
    faults = []
    for name in [*ARGS, *CREATES_SCHEMA, *REPORTS]:
        args = _args(name, tmp_path) if name in ARGS else [name]
        result = _run(url, args)
        faults += _faults(name, result, 2, "cannot connect to the database at postgresql")
        if "***" not in result.stderr:
            faults.append(f"{name}: the URL in the message is not masked")
    assert faults == []


@pytest.mark.parametrize("url", ["postgresql+psycopg://gm:s3cret-pw/gridmap",
                                 "postgresql+psycopg://gm:x@127.0.0.1:s3cret-pw/gridmap"])
def test_an_unreadable_url_is_a_configuration_error_that_does_not_repeat_it(url, tmp_path):
    """Without the ``@`` SQLAlchemy reads the password as the port and quoted it."""
    faults = []
    for name in [*ARGS, *CREATES_SCHEMA, *REPORTS]:
        args = _args(name, tmp_path) if name in ARGS else [name]
        faults += _faults(name, _run(url, args), 2, "is not a database URL")
    assert faults == []


def test_an_empty_database(db_url, engine, tmp_path):
    """(c): naming a park or user that is not there is exit 2; every-park forms exit 0."""
    faults = []
    # The refusals first: ``users add alice`` would make the next ``users set-role alice`` work.
    for name, (_, message) in sorted(ARGS.items(), key=lambda item: item[1][1] is None):
        before = stored_snapshot(engine)
        result = _run(db_url, _args(name, tmp_path))
        faults += _faults(name, result, 0 if message is None else 2, message)
        if message is not None and stored_snapshot(engine) != before:
            faults.append(f"{name}: a refused command changed the database")
    before = stored_snapshot(engine)
    for name, args in EVERY_PARK.items():
        for fmt in ("text", "json") if _offers_json(name) else ("text",):
            result = _run(db_url, _args(name, tmp_path, args=[*args, "--format", fmt]
                                        if _offers_json(name) else args))
            faults += _faults(f"{name} ({fmt})", result, 0, None)
            if fmt == "json" and "--out" not in args:
                try:
                    json.loads(result.stdout)
                except ValueError:
                    faults.append(f"{name}: --format json printed {result.stdout[:80]!r}")
    assert stored_snapshot(engine) == before
    assert faults == []


def test_check_all_on_no_parks_is_one_json_document(runner):
    """Item 29: "no parks found" is for people (stderr); ``--format json`` stays parseable."""
    result = runner("check", "--all", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "no parks found" in result.stderr
    assert runner("check", "--all", "--format", "json", "--require-parks").exit_code == 1


def _park_file(tmp_path):
    import geopandas as gpd

    gpd.GeoDataFrame({"code": ["P"], "name": ["园"], "division_code": ["411621"]},
                     geometry=[metric_box(0, 0, 400, 200)], crs=4326).to_file(
        tmp_path / "park.gpkg")
    gpd.GeoDataFrame({"code": ["P-001"]}, geometry=[metric_box(0, 0, 400, 200)],
                     crs=4326).to_file(tmp_path / "cells.geojson")
    return tmp_path / "park.gpkg"


def test_an_unknown_park(db_url, engine, runner, tmp_path):
    """(e): every command that takes a park, with ``--format json`` where offered."""
    assert runner("import", "parks", _park_file(tmp_path)).exit_code == 0
    assert runner("import", "grids", tmp_path / "cells.geojson", "--park", "P").exit_code == 0
    faults = []
    before = stored_snapshot(engine)
    for name, (args, message) in ARGS.items():
        if PARK not in args:
            continue
        json_args = ["--format", "json"] if _offers_json(name) else []
        result = _run(db_url, _args(name, tmp_path) + json_args)
        faults += _faults(name, result, 2, NO_PARK)
        if result.stdout:
            faults.append(f"{name}: printed {result.stdout[:80]!r} on stdout with the error")
    assert stored_snapshot(engine) == before
    assert faults == []


def test_a_database_one_migration_behind(other_database, tmp_path):
    """(d): every command stops at the revision check; init-db then upgrades it."""
    url = other_database("gridmap_behind")
    engine = make_engine(url, create=True)
    head = schema.head_revision()
    behind = schema.shipped_revisions()[head]
    schema.upgrade(engine, behind)
    before = _raw_counts(engine)
    faults = []
    for name in ARGS:
        result = _run(url, _args(name, tmp_path))
        faults += _faults(name, result, 2, f"has schema revision {behind} but this gridmap "
                                           f"needs {head}: run `gridmap init-db`")
    info = _run(url, ["info", "--format", "json"])
    faults += _faults("info", info, 0, None)
    assert json.loads(info.stdout)["database"]["status"] == "outdated"
    assert _raw_counts(engine) == before and schema.current_revision(engine) == behind
    assert faults == []
    assert _run(url, ["init-db"]).exit_code == 0
    assert schema.current_revision(engine) == head
    assert _run(url, ["users", "list"]).exit_code == 0
    engine.dispose()


def test_a_database_newer_than_the_code_says_to_upgrade_gridmap(db_url, engine, tmp_path):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        result = _run(db_url, ["users", "list"])
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :head"),
                         {"head": schema.head_revision()})
    assert _faults("users list", result, 2, "upgraded by a newer gridmap") == []


def test_info_on_a_fresh_file_leaves_no_database(tmp_path):
    """Only init-db and demo create the SpatiaLite file (the walk's (a) starts from one)."""
    url = f"sqlite:///{tmp_path}/none.sqlite"
    assert _run(url, ["info"]).exit_code == 0
    assert not (tmp_path / "none.sqlite").exists()


#: Every command that writes a file, with that file in a folder that does not exist (MISSING).
#: A new ``--out`` option fails :func:`test_every_output_option_is_walked` until listed.
MISSING = "{tmp}/missing/folder"
OUTPUTS = {
    "export": ["grids", f"{MISSING}/g.geojson", "--park", PARK],
    "hazards export": [f"{MISSING}/h.xlsx", "--park", PARK],
    "requests export": [f"{MISSING}/r.csv", "--park", PARK],
    "check": ["--park", PARK, "--format", "json", "--out", f"{MISSING}/c.json"],
    "edit history": ["--park", PARK, "--at", "1", "--out", f"{MISSING}/at.gpkg"],
    "propose-grids": ["--park", PARK, "--target-count", "3", "--out", f"{MISSING}/p.gpkg"],
    "visits export": ["--park", PARK, "--out", f"{MISSING}/v.csv"],
    "weekly-report": ["--park", PARK, "--week", "2026-W10", "--out", f"{MISSING}/w.pdf"],
    "weekly assignments": ["--park", PARK, "--out", f"{MISSING}/a.csv"],
    "assessment": ["--park", PARK, "--from", "2026-01-01", "--to", "2026-01-31", "--out",
                   f"{MISSING}/s.csv"],
    "boards": ["--park", PARK, "--out", f"{MISSING}/b.pdf", "--service-line", "12345",
               "--base-url", "https://gridmap.example.cn"],
}


def test_every_output_option_is_walked():
    with_out = {name for name, command in LEAVES.items()
                if any(p.name == "out" for p in command.params)}
    assert with_out <= set(OUTPUTS), "add the command's --out to OUTPUTS"


def test_an_output_in_a_missing_folder_is_exit_2_naming_it(db_url, engine, runner, tmp_path):
    """An unwritable output was a FileNotFoundError traceback with exit 1 ("problems found")."""
    from geodata.demo import PARK_CODE

    assert runner("demo").exit_code == 0
    edit = runner("edit", "split", f"{PARK_CODE}-001", "--parts", "2", "--park", PARK_CODE,
                  "--actor", "t")
    assert edit.exit_code == 0, edit.output  # edit 1, for history --at 1
    before = stored_snapshot(engine)
    faults = []
    for name, args in OUTPUTS.items():
        result = _run(db_url, _args(name, tmp_path, PARK_CODE,
                                    [a.replace(MISSING, f"{TMP}/missing/folder") for a in args]))
        faults += _faults(name, result, 2, f"cannot write {tmp_path}/missing/folder/")
    assert stored_snapshot(engine) == before
    assert not (tmp_path / "missing").exists()
    assert faults == []


def test_a_file_the_system_refuses_is_exit_2_without_a_traceback(runner, tmp_path):
    """The last net (``ErrorExitGroup``): an ``OSError`` no service named is still exit 2.

    ``/proc`` passes every check a folder can (it exists, root may write) and
    still refuses a new file.
    """
    assert runner("import", "parks", _park_file(tmp_path)).exit_code == 0
    for args in (["export", "parks", "/proc/gridmap-test.geojson"],
                 ["hazards", "export", "/proc/gridmap-test.csv"]):
        result = runner(*args)
        assert _faults(args[0], result, 2, "/proc/") == []


def test_a_csv_whose_byte_order_mark_lies_is_refused(runner, tmp_path):
    """A UTF-16 byte order mark before bytes that are not UTF-16 was a UnicodeDecodeError."""
    assert runner("import", "parks", _park_file(tmp_path)).exit_code == 0
    path = tmp_path / "sites.csv"
    path.write_bytes(b"\xff\xfe\x00garbage,,\n")
    result = runner("import", "enterprises", path, "--park", "P")
    assert _faults("import", result, 2, "byte order mark") == []


def _number_settings():
    from dataclasses import fields

    from geodata.config import Settings

    return [f.name for f in fields(Settings) if f.type in (int, float)]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1_0", " 5", "٥"])
def test_every_number_setting_is_read_plainly(value, monkeypatch, tmp_path):
    """A ``nan`` GRIDMAP_SQLITE_BUSY_TIMEOUT_S passed validation and was a traceback later."""
    names = _number_settings()
    assert len(names) >= 10
    for name in names:
        with monkeypatch.context() as patch:
            patch.setenv(f"GRIDMAP_{name.upper()}", value)
            result = _run(f"sqlite:///{tmp_path}/none.sqlite", ["users", "list"])
        assert _faults(name, result, 2, f"GRIDMAP_{name.upper()}=") == []


def _gbk_cells(tmp_path):
    """Grid cells as a GBK CSV (Excel's "CSV" on Chinese Windows): read with a warning."""
    path = tmp_path / "cells-gbk.csv"
    wkt = metric_box(0, 0, 400, 200).wkt
    path.write_bytes(f'code,name,wkt\nP-001,第一网格,"{wkt}"\n'.encode("gbk"))
    return path


@pytest.mark.parametrize("args", [
    ("import", "grids", "{cells}", "--park", "P"),
    ("import", "grids", "{cells}", "--park", "P", "--diff"),
    ("check", "--grids-file", "{cells}"),
    ("check", "--grids-file", "{cells}", "--park-file", "{park}"),
], ids=["import", "import --diff", "check file", "check files"])
def test_json_output_stays_one_document_when_there_are_warnings(runner, tmp_path, args):
    park = _park_file(tmp_path)
    assert runner("import", "parks", park).exit_code == 0
    cells = _gbk_cells(tmp_path)
    args = [a.replace("{cells}", str(cells)).replace("{park}", str(park)) for a in args]
    result = runner(*args, "--crs", "EPSG:4326", "--format", "json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "warning: " in result.stderr and "GBK" in result.stderr
    assert "warning" not in result.stdout.split('"warnings"')[0]


def test_every_park_option_refuses_a_blank_code(tmp_path):
    """``--park ""`` (an unset ``$PARK``) meant "the only park" or crashed: now a usage error."""
    from geodata.cli.context import ParkCode

    with_park = [name for name, command in LEAVES.items()
                 if any(p.name == "park_code" for p in command.params)]
    assert len(with_park) >= 30
    for name in with_park:
        (param,) = [p for p in LEAVES[name].params if p.name == "park_code"]
        assert isinstance(param.type, ParkCode), name
    faults = []
    for name in with_park:
        args = ARGS[name][0] if name in ARGS else []
        args = ["" if a == PARK else a for a in args] if PARK in args else [*args, "--park", ""]
        result = _run("sqlite:////nonexistent/x.sqlite", _args(name, tmp_path, args=args))
        faults += _faults(name, result, 2, "give a park code")
    assert faults == []


def test_a_prompt_on_an_ended_stdin_is_exit_2_not_aborted_1(runner):
    """click answers an ended stdin at a prompt with "Aborted!" and exit 1 ("problems found")."""
    for args in (["users", "add", "bob", "--role", "admin"], ["users", "set-password", "bob"]):
        result = runner(*args)
        assert _faults(" ".join(args), result, 2, "stdin ended") == []


def test_format_json_is_one_document_or_nothing_on_every_command(db_url, runner, tmp_path):
    """On the demo park: exit 0/1 print exactly one JSON document, exit 2 print nothing."""
    from geodata.demo import PARK_CODE

    assert runner("demo").exit_code == 0
    faults = []
    offering = [name for name in ARGS if _offers_json(name)]
    assert len(offering) >= 25
    for name in offering:
        args = ARGS[name][0]
        if "--out" in args:  # stdout is the subject here
            at = args.index("--out")
            args = args[:at] + args[at + 2:]
        result = _run(db_url, _args(name, tmp_path, PARK_CODE, [*args, "--format", "json"]))
        if result.exit_code == 2:
            faults += _faults(name, result, 2, "error: ")
            if result.stdout:
                faults.append(f"{name}: printed {result.stdout[:80]!r} with its error")
            continue
        faults += _faults(name, result, result.exit_code, None)
        try:
            json.loads(result.stdout)
        except ValueError:
            faults.append(f"{name}: exit {result.exit_code} printed {result.stdout[:80]!r}")
    assert faults == []


#: Paths no file system call takes, or that name a file nobody meant.
BAD_PATHS = {"NUL": "a\x00b.geojson", "escape": "a\x1bb.geojson", "CR": "a\rb.geojson",
             "not UTF-8": "\udcff.geojson", "bidi override": "\u202egnp.exe.geojson",
             "a name of 256 bytes": "x" * 251 + ".json", "4096 bytes in all": "d/" * 2048}


def test_every_path_option_refuses_what_no_file_can_be_named(tmp_path):
    """A NUL in ``--park-file`` was ``ValueError: embedded null byte``, a traceback with exit 1."""
    from geodata.cli.context import FilePath

    faults, walked = [], 0
    for name, command in LEAVES.items():
        for param in command.params:
            if not isinstance(param.type, click.Path):
                continue
            assert isinstance(param.type, FilePath), (name, param.name)
            base = (OUTPUTS[name] if param.name == "out" else
                    ARGS[name][0] if name in ARGS else EVERY_PARK[name])
            for label, bad in BAD_PATHS.items():
                if isinstance(param, click.Argument):  # the base names its file in {tmp}
                    args = [bad if TMP in a else a for a in base]
                    assert bad in args, name
                else:
                    args = [a for a in base if a != param.opts[0]] + [param.opts[0], bad]
                    if param.name == "out":  # the --out of the base goes
                        args = [a for i, a in enumerate(base) if a != "--out" and (
                            i == 0 or base[i - 1] != "--out")] + [param.opts[0], bad]
                args = [a.replace(PARK, UNKNOWN) if a == PARK else a for a in args]
                result = _run("sqlite:////nonexistent/x.sqlite", [*name.split(), *args])
                hint = param.opts[0] if param.opts[0].startswith("--") else param.name.upper()
                faults += [f"{label}: {f}" for f in _faults(name, result, 2, f"'{hint}'")]
                walked += 1
    assert walked >= 15 * len(BAD_PATHS) and faults == []


@pytest.mark.parametrize("label", ["NUL", "not UTF-8", "CR"])
def test_a_database_url_or_data_folder_no_file_can_have_is_exit_2(label, monkeypatch, tmp_path):
    """``--db sqlite:////tmp/a<NUL>b`` was ``ValueError: embedded null byte`` from init-db."""
    bad = BAD_PATHS[label]
    for command in (["init-db"], ["users", "list"]):
        result = _run(f"sqlite:///{tmp_path}/{bad}", command)
        assert _faults(label, result, 2, "GRIDMAP_DATABASE_URL") == []
    monkeypatch.setenv("GRIDMAP_DATA_DIR", f"{tmp_path}/{bad}".replace("\x00", "\x01"))
    result = CliRunner().invoke(main, ["info"])
    assert _faults(label, result, 2, "GRIDMAP_DATA_DIR") == []
