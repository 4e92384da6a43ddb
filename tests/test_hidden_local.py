"""The hidden units of a few enterprises, found from the sites near them (issue 13, scale).

A grid's summary, its GeoJSON feature and page, and one page of the
enterprise layer tell which of their enterprises are hidden units without
classifying the whole park (:func:`geodata.hidden.hidden_units_among`).  The
answer must be the park-wide detection's, restricted: checked here for every
grid of a park with hidden units planted inside hosts' premises (厂中厂),
inside a parcel straddling four grids (园中园), on grid borders, held by a
parcel nested in another, registered to a distant host or to a gate point,
and in sub-grids; and the enterprise layer's pages, walked through their
``next`` links, must add up to the whole list, filters included.
"""

import re

import geopandas as gpd
import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.hidden import find_hidden_units, hidden_units_among
from geodata.models import Enterprise, Grid
from geodata.models.base import to_shapes
from geodata.services import mapdata
from geodata.services.enterprise_file import enterprise_file
from geodata.services.grids import import_grids
from geodata.services.parks import get_park
from geodata.services.sites import import_enterprises
from geodata.spatial import assign_to_cells
from geodata.storage import boxes_filter, session_scope
from tests.conftest import metric_box, metric_point
from tests.ledger_helpers import build_park
from webmap import create_app

#: Sites in metres on park T (grids T-001 NW, T-002 NE, T-003 SW, T-004 SE, 500 m each;
#: 甲 (100..200) in T-003 and 乙 (600..700) in T-002 come from build_park), with hosts.
PLANTED = [
    ("丙 厂中厂", (120, 120, 160, 160), "甲"),          # inside its host
    ("丁 门点", (180, 180), None),                       # a gate point inside 甲, no host
    ("戊 错挂", (105, 105, 115, 115), "乙"),            # inside 甲, registered to 乙
    ("己 空地", (300, 300, 320, 320), "乙"),            # on vacant land, far from its host
    ("庚 园区", (420, 380, 620, 580), None),            # straddles four grids, mostly T-004
    ("辛 园中园", (430, 510, 490, 570), None),          # inside 庚, in T-001
    ("壬 跨界", (480, 470, 540, 530), "庚 园区"),       # inside 庚, across four grids
    ("癸 中层", (520, 400, 600, 480), None),            # inside 庚
    ("子 内层", (540, 420, 560, 440), None),            # inside 癸 inside 庚: 癸 holds it
    ("卯 界点", (500, 450), None),                       # a gate point on a grid border in 庚
    ("丑 门点主", (800, 800), None),                     # a host known by its gate only
    ("寅 挂门点", (850, 850, 870, 870), "丑 门点主"),   # registered to that gate
    ("巳 主厂", (300, 50, 450, 200), None),             # a host in sub-grid T-003-2
    ("辰 子厂", (350, 100, 400, 150), "巳 主厂"),       # inside it
    ("午 普通", (900, 100, 950, 150), None),            # an ordinary enterprise
]
SUB_GRIDS = [("T-003-1", "T-003", (0, 0, 250, 500)), ("T-003-2", "T-003", (250, 0, 500, 500)),
             ("T-003-1-1", "T-003-1", (0, 0, 250, 250)), ("T-004-1", "T-004", (500, 0, 1000, 500))]


def _credit(n):
    return make_credit_code("411621", n)


@pytest.fixture
def planted(engine):
    """Park T with the planted units and sub-grids; ``{name: credit code}``."""
    build_park(engine, users=False)
    codes = {"甲": _credit(1), "乙": _credit(2)}
    codes.update({name: _credit(10 + i) for i, (name, _, _) in enumerate(PLANTED)})
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_grids(session, park, gpd.GeoDataFrame(
            [{"code": c, "name": c, "parent_code": p} for c, p, _ in SUB_GRIDS],
            geometry=[metric_box(*xy) for _, _, xy in SUB_GRIDS], crs=4326))
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": name, "credit_code": codes[name],
              "host_credit_code": codes[host] if host else None}
             for name, _, host in PLANTED],
            geometry=[metric_point(*xy) if len(xy) == 2 else metric_box(*xy)
                      for _, xy, _ in PLANTED], crs=4326))
    return codes


def _park_wide(session, park):
    """The park-wide detection, per enterprise id, and every grid's enterprise ids (id order).

    A level-1 grid holds the enterprises assigned to it; a sub-grid the sites
    lying mostly in it among all the park's grids of its level (ties: the
    lowest code).
    """
    units = {u.enterprise_id: u for u in find_hidden_units(session, park)}
    ents = session.execute(sa.select(Enterprise.id, Enterprise.grid_id, Enterprise.site)
                           .where(Enterprise.park_id == park.id)
                           .order_by(Enterprise.id)).all()
    sites = to_shapes([e[2] for e in ents])
    grids = sorted(session.execute(sa.select(Grid).where(Grid.park_id == park.id))
                   .scalars(), key=lambda g: g.code)
    members = {}
    for g in grids:
        if g.level == 1:
            members[g.code] = [e[0] for e in ents if e[1] == g.id]
        else:
            level = [c for c in grids if c.level == g.level]
            where = assign_to_cells(sites, to_shapes([c.geom for c in level]))
            members[g.code] = [e[0] for e, k in zip(ents, where) if k == level.index(g)]
    return units, members


def test_every_grid_reports_the_park_wide_hidden_units(engine, planted):
    with session_scope(engine) as session:
        park = get_park(session, "T")
        units, members = _park_wide(session, park)
        # the planted cases are all there, so each grid's check below means something
        reasons = {u.name: (u.reason, u.host) for u in units.values()}
        assert reasons == {
            "丙 厂中厂": ("inside_host_site", "甲公司"), "丁 门点": ("inside_other_site", "甲公司"),
            "戊 错挂": ("host_mismatch", "甲公司"), "己 空地": ("host_mismatch", "乙公司"),
            "辛 园中园": ("inside_other_site", "庚 园区"), "壬 跨界": ("inside_host_site", "庚 园区"),
            "癸 中层": ("inside_other_site", "庚 园区"), "子 内层": ("inside_other_site", "癸 中层"),
            "卯 界点": ("inside_other_site", "庚 园区"),
            "寅 挂门点": ("inside_host_site", "丑 门点主"),
            "辰 子厂": ("inside_host_site", "巳 主厂")}
        assert len(members) == 4 + len(SUB_GRIDS)
        assert {c for c, ids in members.items() if any(i in units for i in ids)} >= {
            "T-001", "T-003", "T-004", "T-003-1", "T-003-1-1", "T-003-2", "T-004-1"}
        paged = mapdata.grid_summaries(session, park, limit=3, offset=0)
        paged.update(mapdata.grid_summaries(session, park, limit=100, offset=3))
        for code, ids in members.items():
            expected = [{"name": units[i].name, "credit_code": units[i].credit_code,
                         "host": units[i].host, "reason": units[i].reason}
                        for i in ids if i in units]
            for summary in (mapdata.grid_summary(session, park, code), paged[code],
                            mapdata.grid_feature(session, park, code)["properties"]):
                assert summary["hidden_units"] == expected, code
                assert summary["hidden_count"] == len(expected)
                assert summary["enterprise_count"] == len(ids), code
            page = mapdata.grid_page(session, park, code)["enterprises"]
            credit = {units[i].credit_code: units[i] for i in ids if i in units}
            assert sorted(e["credit_code"] for e in page) == sorted(
                session.execute(sa.select(Enterprise.credit_code).where(
                    Enterprise.id.in_(ids))).scalars())
            assert [(e["hidden"], e["host"]) for e in page] == [
                (e["credit_code"] in credit, credit[e["credit_code"]].host
                 if e["credit_code"] in credit else None) for e in page], code
        # any few enterprises: the local answer is the park-wide one restricted to them
        ids = sorted(i for grid in members.values() for i in grid)
        for start in range(len(ids)):
            chosen = ids[start:start + 3]
            assert hidden_units_among(session, park, chosen) == {
                i: units[i] for i in chosen if i in units}


def test_equal_holders_pick_the_same_host_locally(engine, planted):
    """Two identical parcels holding a unit: the lower id holds it, park-wide and locally."""
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": "未 双甲", "credit_code": _credit(90)},
             {"name": "申 双乙", "credit_code": _credit(91)},
             {"name": "酉 双内", "credit_code": _credit(92)}],
            geometry=[metric_box(700, 300, 800, 400), metric_box(700, 300, 800, 400),
                      metric_box(740, 340, 760, 360)], crs=4326))
    with session_scope(engine) as session:
        park = get_park(session, "T")
        inner = session.execute(sa.select(Enterprise.id).where(
            Enterprise.credit_code == _credit(92))).scalar()
        wide = {u.enterprise_id: u for u in find_hidden_units(session, park)}
        assert wide[inner].host == "未 双甲"
        assert hidden_units_among(session, park, [inner]) == {inner: wide[inner]}


def test_enterprise_files_and_ogc_features_report_the_park_wide_units(db_url, engine, planted,
                                                                      tmp_path):
    """Each enterprise's file (its host, its units) and the OGC features' flags, page by page."""
    with session_scope(engine) as session:
        park = get_park(session, "T")
        units, _ = _park_wide(session, park)
        firms = session.execute(sa.select(Enterprise.id, Enterprise.credit_code).where(
            Enterprise.park_id == park.id).order_by(Enterprise.id)).all()
        for eid, code in firms:
            data = enterprise_file(session, park, code)
            u = units.get(eid)
            assert (data["host"] and (data["host"]["name"], data["host"]["credit_code"],
                                      data["host"]["reason"])) == (
                u and (u.host, u.host_credit_code, u.reason)), code
            assert [(v["credit_code"], v["reason"]) for v in data["hidden_units"]] == sorted(
                (v.credit_code, v.reason) for v in units.values()
                if v.host_credit_code == code and v.enterprise_id != eid), code
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()
        seen = []
        for offset in range(0, len(firms), 4):
            response = client.get(f"/ogcapi/collections/enterprises/items?limit=4&offset={offset}")
            assert response.status_code == 200, response.data[:300]
            for f in response.get_json()["features"]:
                u = units.get(f["id"])
                assert (f["properties"]["hidden"], f["properties"]["host"],
                        f["properties"]["reason"]) == (
                    (True, u.host, u.reason) if u else (False, None, None)), f["id"]
                seen.append(f["id"])
        assert seen == [eid for eid, _ in firms]
    finally:
        app.extensions["gridmap.engine"].dispose()


def _walk(client, url):
    """Every feature of a paged list, following ``Link: rel=next``; and the total."""
    features, total = [], None
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.data[:300]
        body = response.get_json()
        assert total in (None, body["numberMatched"])
        total = int(response.headers["X-Total-Count"])
        assert total == body["numberMatched"]
        features += body["features"]
        link = response.headers.get("Link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
    return features, total


def test_enterprise_pages_add_up_to_the_whole_list(db_url, engine, planted, tmp_path):
    """Pages of 4, filtered or not, concatenated: the whole list in id order, flags park-wide."""
    with session_scope(engine) as session:
        park = get_park(session, "T")
        units, _ = _park_wide(session, park)
        rows = session.execute(
            sa.select(Enterprise.id, Enterprise.name, Enterprise.credit_code,
                      Enterprise.industry, Enterprise.site, Grid.code)
            .outerjoin(Grid, Enterprise.grid_id == Grid.id)
            .where(Enterprise.park_id == park.id).order_by(Enterprise.id)).all()
    sites = to_shapes([r[4] for r in rows])
    whole = [{"name": r[1], "credit_code": r[2], "industry": r[3], "grid": r[5],
              "hidden": r[0] in units, "host": units[r[0]].host if r[0] in units else None,
              "reason": units[r[0]].reason if r[0] in units else None} for r in rows]
    west = metric_box(0, 0, 470, 1000).bounds
    cases = {"": np.ones(len(rows), dtype=bool),
             "&hidden=true": np.array([r[0] in units for r in rows]),
             "&hidden=false": np.array([r[0] not in units for r in rows]),
             "&bbox=" + ",".join(map(str, west)): shapely.intersects(sites, shapely.box(*west)),
             "&hidden=true&bbox=" + ",".join(map(str, west)): shapely.intersects(
                 sites, shapely.box(*west)) & np.array([r[0] in units for r in rows])}
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "DATA_DIR": str(tmp_path)})
    try:
        client = app.test_client()
        for query, keep in cases.items():
            features, total = _walk(client, f"/api/parks/T/enterprises?limit=4{query}")
            kept = np.flatnonzero(keep)
            assert 0 < total == len(kept) < len(rows) or query == "", query
            assert [f["properties"] for f in features] == [whole[i] for i in kept], query
            for f, i in zip(features, kept):
                assert shapely.geometry.shape(f["geometry"]).equals_exact(sites[i], 1e-7)
    finally:
        app.extensions["gridmap.engine"].dispose()


def test_boxes_written_into_sql_must_be_finite_numbers():
    """The bounds are written into the SQL text: anything but a finite number is refused."""
    for bad in (float("nan"), float("inf"), "1); DROP TABLE enterprises; --"):
        with pytest.raises(ValueError):
            boxes_filter("sqlite", Enterprise, Enterprise.site, [(0, 0, 1, 1), (0, 0, bad, 1)])
