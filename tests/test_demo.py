"""Tests for geodata.demo: determinism, topology of grids and sites, tables, hazard ledger."""

import re
import time
from datetime import date

import numpy as np
import pytest
import shapely

from geodata.creditcode import credit_code_problem
from geodata.crs import to_metric
from geodata.demo import DEFAULT_SEED, PARK_AREA_M2, build_demo_park, summary
from geodata.gridcodes import grid_code, reading_order

EPSG = 4547  # CGCS2000 3-degree GK zone of 114°E, the park's metric CRS


@pytest.fixture(scope="module")
def demo():
    start = time.perf_counter()
    built = build_demo_park()
    built.build_seconds = time.perf_counter() - start
    return built


@pytest.fixture(scope="module")
def level1(demo):
    return demo.grids[demo.grids["level"] == 1]


def _wkb(geoms):
    return [shapely.to_wkb(g) for g in geoms]


def test_build_is_deterministic_and_fast(demo):
    assert demo.build_seconds < 5.0
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
