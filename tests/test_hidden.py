"""Hidden sub-unit detection (厂中厂/园中园): the pure rule, the demo park, the CLI."""

import json

import numpy as np
import pytest
import shapely
import sqlalchemy as sa
from click.testing import CliRunner

from geodata.cli import main
from geodata.hidden import classify, containers, count_hidden_units, find_hidden_units
from geodata.models import Enterprise, Grid
from geodata.models.base import to_shapes
from geodata.services.parks import get_park
from geodata.storage import make_engine, session_scope
from tests.browser import demo_url  # noqa: F401
from webmap import create_app

BIG = shapely.box(0, 0, 10, 10)
OTHER = shapely.box(20, 0, 30, 10)


@pytest.mark.parametrize("site, expected", [
    (shapely.Point(5, 5), 0),                      # gate point inside the big parcel
    (shapely.Point(10, 5), 0),                     # on its edge still counts (covers)
    (shapely.Point(15, 5), -1),                    # on vacant land
    (shapely.box(1, 1, 3, 3), 0),                  # wholly inside
    (shapely.box(8, 0, 12, 2), -1),                # exactly half inside: not "mostly"
    (shapely.box(7, 0, 11, 2), 0),                 # 75% inside
    (shapely.box(9, 0, 13, 2), -1),                # 25% inside
])
def test_containers_rule(site, expected):
    assert containers([BIG, OTHER, site])[2] == expected


def test_innermost_holder_wins_and_equal_parcels_do_not_hold_each_other():
    middle = shapely.box(1, 1, 6, 6)
    unit = shapely.box(2, 2, 3, 3)
    twin = shapely.box(20, 0, 30, 10)
    assert containers([BIG, middle, unit, OTHER, twin]).tolist() == [-1, 0, 1, -1, 3]


def test_classify_reasons():
    sites = np.array([BIG, OTHER, shapely.Point(5, 5), shapely.Point(5, 5),
                      shapely.Point(25, 5), shapely.Point(15, 5), shapely.Point(16, 5)],
                     dtype=object)
    registered = np.array([-1, -1, 0, 1, -1, 0, -1])
    _, reason = classify(sites, registered)
    assert reason.tolist() == [None, None, "inside_host_site", "host_mismatch",
                               "inside_other_site", "host_mismatch", None]


def test_empty_and_single():
    assert containers([]).tolist() == []
    assert containers([BIG]).tolist() == [-1]


def test_demo_hidden_units_match_registered_hosts(demo_url):  # noqa: F811
    engine = make_engine(demo_url)
    try:
        with session_scope(engine) as session:
            units = find_hidden_units(session, get_park(session, "FGKFQ"))
            hosted = session.execute(sa.select(sa.func.count()).where(
                Enterprise.host_id.is_not(None))).scalar()
    finally:
        engine.dispose()
    assert len(units) == hosted == 117
    assert {u.reason for u in units} == {"inside_host_site"}
    assert all(u.grid and u.host and u.host == u.registered_host for u in units)


def test_hidden_units_from_columns_match_the_orm_rebuild_and_page(demo_url):  # noqa: F811
    """The units read from three columns are those of ORM objects classified; the API pages them.

    The rebuild classifies the park's ORM enterprises (what the detection
    read before it read plain columns); the API's pages, put together, are
    the whole ordered list, and ``X-Total-Count`` counts it.
    """
    engine = make_engine(demo_url)
    try:
        with session_scope(engine) as session:
            park = get_park(session, "FGKFQ")
            units = [u.to_dict() for u in find_hidden_units(session, park)]
            counted = count_hidden_units(session, [park])
            ents = session.execute(sa.select(Enterprise).where(Enterprise.park_id == park.id)
                                   .order_by(Enterprise.id)).scalars().all()
            codes = dict(session.execute(sa.select(Grid.id, Grid.code)).all())
    finally:
        engine.dispose()
    index = {e.id: i for i, e in enumerate(ents)}
    registered = np.array([index.get(e.host_id, -1) if e.host_id else -1 for e in ents])
    holder, reason = classify(to_shapes([e.site for e in ents]), registered)
    host = np.where(holder >= 0, holder, registered)
    rebuilt = sorted(({"name": e.name, "credit_code": e.credit_code,
                       "host": ents[host[i]].name, "host_credit_code": ents[host[i]].credit_code,
                       "registered_host": ents[registered[i]].name if registered[i] >= 0
                       else None, "grid": codes.get(e.grid_id), "reason": reason[i]}
                      for i, e in enumerate(ents) if reason[i] is not None),
                     key=lambda u: (u["grid"] or "", u["name"], u["credit_code"]))
    assert units == rebuilt and len(units) == counted[park.id] == 117
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True})
    try:
        client = app.test_client()
        pages, offset = [], 0
        while offset < len(units) + 40:
            response = client.get(f"/api/parks/FGKFQ/hidden-units?limit=40&offset={offset}")
            assert response.headers["X-Total-Count"] == "117"
            pages += response.get_json()
            offset += 40
    finally:
        app.extensions["gridmap.engine"].dispose()
    assert pages == units


def test_cli_json_and_text(demo_url):  # noqa: F811
    runner = CliRunner()
    result = runner.invoke(main, ["--db", demo_url, "hidden-units", "--park", "FGKFQ",
                                  "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    units = json.loads(result.stdout)
    assert len(units) == 117
    assert {"name", "credit_code", "host", "grid", "reason"} <= set(units[0])
    text = runner.invoke(main, ["--db", demo_url, "hidden-units", "--park", "FGKFQ"])
    assert text.exit_code == 0
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith("园区 park\t网格 grid\t名称 name") and len(lines) == 1 + 117
    assert "117 hidden sub-unit candidates" in text.stderr


def test_cli_unknown_park_exits_2(demo_url):  # noqa: F811
    result = CliRunner().invoke(main, ["--db", demo_url, "hidden-units", "--park", "NOPE"])
    assert result.exit_code == 2
    assert "no park" in result.stderr and "Traceback" not in result.output
