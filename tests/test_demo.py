"""Tests for geodata.demo: determinism, topology of grids and sites, tables, hazard ledger."""

import re
from datetime import date

import numpy as np
import pytest
import shapely
import sqlalchemy as sa

from geodata.creditcode import credit_code_problem
from geodata.crs import to_metric
from geodata.demo import DEFAULT_SEED, PARK_AREA_M2, build_demo_park, summary
from geodata.gridcodes import grid_code, reading_order
from geodata.models import Enterprise, Grid, GridStaff, Hazard, HazardEvent
from geodata.models.base import to_shapes
from geodata.services.coverage import check_park
from geodata.services.demo_loader import load_demo
from geodata.services.parks import get_park
from geodata.services.users import DEMO_ACCOUNTS, authenticate, check_password
from geodata.storage import session_scope

EPSG = 4547  # CGCS2000 3-degree GK zone of 114°E, the park's metric CRS


@pytest.fixture(scope="module")
def demo():
    return build_demo_park()


@pytest.fixture(scope="module")
def level1(demo):
    return demo.grids[demo.grids["level"] == 1]


def _wkb(geoms):
    return [shapely.to_wkb(g) for g in geoms]


def test_build_is_deterministic(demo):
    again = build_demo_park(DEFAULT_SEED)
    assert again.grids["code"].tolist() == demo.grids["code"].tolist()
    assert _wkb(again.grids.geometry) == _wkb(demo.grids.geometry)
    assert _wkb(again.enterprises.geometry) == _wkb(demo.enterprises.geometry)
    assert _wkb(again.hazards.geometry) == _wkb(demo.hazards.geometry)
    assert shapely.to_wkb(again.park["boundary"]) == shapely.to_wkb(demo.park["boundary"])
    for attr in ("enterprises", "hazards"):
        left = getattr(again, attr).drop(columns="geometry")
        right = getattr(demo, attr).drop(columns="geometry")
        assert left.equals(right)
    assert again.staff.equals(demo.staff)


def test_other_seed_gives_other_park():
    other = build_demo_park(7, n_enterprises=120, n_hidden=20, n_grids=20, n_hazards=100,
                            n_enterprise_grids=3, n_party_instructors=5)
    s = summary(other)
    assert s["enterprises"] == 120 and s["enterprises_hidden"] == 20
    assert s["grids_level1"] == 20 and s["hazards"] == 100
    assert abs(s["park_area_km2"] - 12.53) < 0.25


def test_park_area_holes_and_crs(demo):
    boundary = demo.park["boundary"]
    assert demo.park["code"] == "FGKFQ" and demo.park["division_code"] == "411621"
    assert boundary.geom_type == "MultiPolygon" and boundary.is_valid
    area = shapely.area(to_metric(boundary, EPSG))
    assert abs(area - PARK_AREA_M2) <= 0.02 * PARK_AREA_M2
    assert 2 <= sum(len(p.interiors) for p in boundary.geoms) <= 3
    lon, lat = shapely.get_coordinates(boundary.centroid)[0]
    assert abs(lon - 114.39) < 0.02 and abs(lat - 34.06) < 0.02
    for frame in (demo.grids, demo.enterprises, demo.hazards):
        assert frame.crs.to_epsg() == 4326
    assert demo.metric_epsg == EPSG


def _assert_tiles(pieces, whole):
    """``pieces`` (EPSG:4326) form a coverage whose union is ``whole``; checked in metres."""
    pieces = np.asarray(pieces, dtype=object)
    assert all(shapely.is_empty(shapely.coverage_invalid_edges(pieces)))
    assert shapely.coverage_is_valid(pieces)
    union = shapely.coverage_union_all(pieces)
    diff = shapely.area(to_metric(shapely.symmetric_difference(union, whole), EPSG))
    assert diff < 1e-6 * shapely.area(to_metric(whole, EPSG))
    metric = to_metric(pieces, EPSG)
    left, right = shapely.STRtree(metric).query(metric, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(metric[left[pairs]], metric[right[pairs]]))
    assert overlap.sum() < 1.0  # m²


def test_level1_grids_tile_the_park(demo, level1):
    assert len(level1) == 60
    assert all(level1.geometry.geom_type == "MultiPolygon") and all(level1.geometry.is_valid)
    _assert_tiles(level1.geometry.values, demo.park["boundary"])
    assert level1["parent_code"].isna().all()
    assert set(level1["kind"]) == {"area", "enterprise"}


def test_level1_tiling_also_holds_in_metres(demo):
    cells = demo.metric["cells"]
    assert all(shapely.is_empty(shapely.coverage_invalid_edges(cells)))


def test_subgrids_tile_their_parent(demo, level1):
    subs = demo.grids[demo.grids["level"] == 2]
    parents = subs["parent_code"].unique()
    assert 6 <= len(parents) <= 10
    assert set(subs["kind"]) == {"workshop"}
    by_code = level1.set_index("code")
    for parent in parents:
        mine = subs[subs["parent_code"] == parent]
        assert 2 <= len(mine) <= 5
        assert by_code.loc[parent, "kind"] == "enterprise"
        _assert_tiles(mine.geometry.values, by_code.loc[parent, "geometry"])
        expected = [grid_code("FGKFQ", int(parent[-3:]), n) for n in range(1, len(mine) + 1)]
        assert sorted(mine["code"]) == expected


def test_codes_follow_reading_order(level1):
    assert level1["code"].tolist() == [grid_code("FGKFQ", n) for n in range(1, 61)]
    rank = reading_order(level1.geometry.values, epsg=4326)
    assert (rank + 1).tolist() == list(range(1, 61))
    assert level1["name"].str.match(r"^第\d+网格（.+）$").all()


def test_enterprise_counts_and_codes(demo):
    ents = demo.enterprises
    assert len(ents) == 621
    hidden = ents[ents["host_credit_code"].notna()]
    assert len(hidden) == 117
    assert set(hidden["site_kind"]) == {"hidden_polygon", "hidden_point"}
    assert (ents["site_kind"] == "gate").sum() == 10
    assert ents["credit_code"].is_unique and ents["name"].is_unique
    assert all(credit_code_problem(c) is None for c in ents["credit_code"])
    assert ents["contact_phone"].str.fullmatch(r"1[358]\d{9}").all()
    assert hidden["registered"].mean() < 0.5 and ents.loc[~ents.index.isin(hidden.index),
                                                          "registered"].all()
    emp = ents["employees"]
    assert (emp > 1000).sum() >= 3 and 10 <= emp.median() <= 200


def test_hidden_units_inside_their_hosts(demo):
    ents = demo.enterprises
    by_code = ents.set_index("credit_code")
    hidden = ents[ents["host_credit_code"].notna()]
    hosts = by_code.loc[hidden["host_credit_code"]]
    assert (hosts["site_kind"] == "parcel").all()
    assert shapely.within(hidden.geometry.values, hosts.geometry.values).all()
    assert (hidden["grid_code"].to_numpy() == hosts["grid_code"].to_numpy()).all()


def test_sites_lie_in_exactly_one_level1_grid(demo, level1):
    ents = demo.enterprises
    own = ents[ents["host_credit_code"].isna()]
    tree = shapely.STRtree(level1.geometry.values)
    site_idx, grid_idx = tree.query(own.geometry.values, predicate="within")
    assert np.array_equal(np.sort(site_idx), np.arange(len(own)))
    codes = level1["code"].to_numpy()[grid_idx[np.argsort(site_idx)]]
    assert (codes == own["grid_code"].to_numpy()).all()


def test_parcels_do_not_overlap_and_avoid_holes(demo):
    ents = demo.enterprises
    parcels = ents[ents["site_kind"] == "parcel"].geometry.values
    assert all(shapely.get_type_id(parcels) == 3)  # Polygon
    left, right = shapely.STRtree(parcels).query(parcels, predicate="intersects")
    assert (left == right).all()
    assert shapely.within(parcels, demo.park["boundary"]).all()


def test_every_enterprise_has_a_location_point_on_its_site(demo):
    ents = demo.enterprises
    assert ents["location"].crs.to_epsg() == 4326
    assert (ents["location"].geom_type == "Point").all()
    assert shapely.intersects(ents["location"].values, ents.geometry.values).all()


def test_staff_roles(demo, level1):
    staff = demo.staff
    chiefs = staff[staff["role"] == "grid_chief"]
    assert sorted(chiefs["grid_code"]) == sorted(level1["code"])
    full = staff[staff["role"] == "full_time"]
    assert set(full["grid_code"]) == set(level1["code"])
    part = staff[staff["role"] == "part_time"]
    for code in level1.loc[level1["kind"] == "enterprise", "code"]:
        assert (part["grid_code"] == code).any()
    assert (staff["role"] == "party_instructor").sum() == 21
    assert set(staff["grid_code"]) <= set(demo.grids["code"])
    assert staff["published"].all() and staff["phone"].is_unique


def test_unpublished_boards_are_optional():
    some = build_demo_park(unpublished_grids=2, n_hazards=50)
    assert some.staff.loc[~some.staff["published"], "grid_code"].nunique() == 2


def test_hazard_mix_and_places(demo, level1):
    haz = demo.hazards
    assert len(haz) == 920 and haz["code"].is_unique
    assert (haz["status"] == "closed").sum() == 890
    immediate = (haz["status"] == "closed") & haz["deadline"].isna()
    assert immediate.sum() == 872
    open_ = haz[haz["status"] != "closed"]
    overdue = open_["deadline"].map(lambda d: d is not None and d < demo.today)
    assert overdue.sum() > 0 and len(open_) == 30
    assert 0.02 <= (haz["level"] == "major").mean() <= 0.04
    assert shapely.within(haz.geometry.values, demo.park["boundary"]).all()
    tree = shapely.STRtree(level1.geometry.values)
    h_idx, g_idx = tree.query(haz.geometry.values, predicate="intersects")
    assert np.array_equal(np.unique(h_idx), np.arange(len(haz)))
    codes = level1["code"].to_numpy()
    assert all(haz["grid_code"].iloc[h] == codes[g] for h, g in zip(h_idx, g_idx)
               if np.sum(h_idx == h) == 1)
    # a hazard charged to an enterprise lies on its site
    sites = demo.enterprises.set_index("credit_code").geometry
    charged = haz[haz["credit_code"].notna()]
    assert shapely.intersects(charged.geometry.values,
                              sites.loc[charged["credit_code"]].values).all()
    assert charged.shape[0] > 0.85 * len(haz)


def test_hazard_histories_are_consistent(demo):
    haz = demo.hazards
    chain = ["found", "rectifying", "supervising", "closed"]
    for row in haz.itertuples():
        steps = row.history
        assert steps[0]["from_status"] is None and steps[-1]["to_status"] == row.status
        assert [s["to_status"] for s in steps] == chain[:len(steps)]
        assert all(a["to_status"] == b["from_status"] for a, b in zip(steps, steps[1:]))
        times = [s["at"] for s in steps]
        assert times == sorted(times) and times[0].date() == row.found_date
        assert date(2025, 1, 1) <= row.found_date and times[-1].date() <= demo.today
        assert all(s["actor"] and s["note"] for s in steps)
        if row.deadline is None:
            assert row.status in ("closed", "found")
        else:
            assert row.deadline > row.found_date
        if row.status == "closed" and row.deadline is None:
            assert steps[1]["note"] == "即时整改"


def test_summary_counts(demo):
    s = summary(demo)
    assert s["enterprises"] == 621 and s["enterprises_hidden"] == 117
    assert s["grids_level1"] == 60 and s["staff_grid_chief"] == 60
    assert s["staff_party_instructor"] == 21 and s["staff_published_rate"] == 1.0
    assert s["hazards_closed_immediately"] == 872 and s["hazards_overdue"] == 8
    assert re.fullmatch(r"\d+\.\d+", str(s["park_area_km2"]))


@pytest.mark.parametrize("today, found_years", [(date(2025, 11, 30), {2025}),
                                                (date(2026, 3, 1), {2025, 2026}),
                                                (date(2026, 11, 29), {2026})])
def test_ledger_codes_carry_the_found_year(today, found_years):
    haz = build_demo_park(today=today).hazards
    years = haz["found_date"].map(lambda d: d.year)
    assert (haz["code"].str[2:6].astype(int) == years).all()
    assert haz["code"].is_unique and set(years) == found_years
    assert (haz["found_date"] <= today).all()
    # numbers count up from 1 in each year, in order of discovery
    for year in set(years):
        seq = haz.loc[years == year, "code"].str[7:].astype(int).tolist()
        assert seq == list(range(1, len(seq) + 1))


def test_loaded_demo_tells_the_truth(engine):
    """The seed's figures and the demo's invariants, read back from the database.

    ``today`` in March puts the year boundary inside the ledger.  "Fixed at
    once" (即时整改) is what :func:`geodata.demo.summary` counts: closed with
    no rectification deadline.
    """
    today = date(2026, 3, 1)
    load_demo(engine, today=today)
    with session_scope(engine) as session:
        park = get_park(session, "FGKFQ")
        ents = session.execute(sa.select(Enterprise)).scalars().all()
        assert len(ents) == 621
        by_id = {e.id: e for e in ents}
        hidden = [e for e in ents if e.host_id is not None]
        assert len(hidden) == 117
        sites = dict(zip(by_id, to_shapes([e.site for e in ents])))
        for e in hidden:
            host = by_id[e.host_id]
            assert host.host_id is None and shapely.within(sites[e.id], sites[host.id])
            assert e.grid_id == host.grid_id

        grids = session.execute(sa.select(Grid)).scalars().all()
        level1 = {g.id: g for g in grids if g.level == 1}
        shapes = dict(zip(level1, to_shapes([g.geom for g in level1.values()])))
        tree_ids = list(shapes)
        tree = shapely.STRtree([shapes[i] for i in tree_ids])
        for e in ents:
            if e.host_id is None:
                inside = tree.query(sites[e.id], predicate="within")
                assert [tree_ids[k] for k in inside] == [e.grid_id], e.name
        result, _ = check_park(session, park)
        assert result["valid"], result
        chiefs = session.execute(sa.select(GridStaff.grid_id).where(
            GridStaff.role == "grid_chief")).scalars().all()
        assert sorted(chiefs) == sorted(level1)

        hazards = session.execute(sa.select(Hazard)).scalars().all()
        assert len(hazards) >= 900
        at_once = [h for h in hazards if h.status == "closed" and h.deadline is None]
        assert len(at_once) == 872
        closing = set(session.execute(sa.select(HazardEvent.hazard_id).where(
            HazardEvent.to_status == "closed")).scalars())
        fixed_at_once = set(session.execute(sa.select(HazardEvent.hazard_id).where(
            HazardEvent.note == "即时整改")).scalars())
        assert fixed_at_once == {h.id for h in at_once}
        years = set()
        for h in hazards:
            assert h.code.startswith(f"YH{h.found_date.year}-"), (h.code, h.found_date)
            assert h.found_date <= today
            years.add(h.found_date.year)
            if h.deadline is not None:
                assert h.deadline > h.found_date, h.code
            assert (h.id in closing) == (h.status == "closed"), h.code
        assert years == {2025, 2026}

        for name, (role, password) in DEMO_ACCOUNTS.items():
            check_password(password, name)
            assert authenticate(session, name, password).role == role
