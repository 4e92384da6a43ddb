"""Ledger service on both backends: the demo dashboard, the three rates, relocation, the CLI."""

import json
from datetime import date

import pytest
import sqlalchemy as sa

from geodata.cli.hazards import LIST_COLUMNS
from geodata.models import Grid, Hazard, HazardEvent, User
from geodata.services import ledger
from geodata.services.demo_loader import load_demo
from geodata.services.parks import get_park
from geodata.services.users import DEMO_ACCOUNTS, authenticate
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.ledger_helpers import ACTORS, build_park, future, lonlat

TODAY = date(2025, 11, 30)


def test_demo_dashboard_adds_up(engine):
    load_demo(engine, today=TODAY)
    with session_scope(engine) as session:
        park = get_park(session, "FGKFQ")
        d = ledger.dashboard(session, park, today=TODAY)
        total = session.execute(sa.select(sa.func.count()).select_from(Hazard)).scalar()
        closed = session.execute(sa.select(sa.func.count()).where(
            Hazard.status == "closed")).scalar()
        _, overdue = ledger.list_hazards(session, park=park, overdue=True, today=TODAY)
        users = {u.username: u.role for u in session.execute(sa.select(User)).scalars()}
        for name, (role, password) in DEMO_ACCOUNTS.items():
            assert authenticate(session, name, password).role == role
    assert d["total"] == total > 900
    assert sum(d["by_status"].values()) == total == sum(d["by_level"].values())
    assert sum(g["total"] for g in d["by_grid"].values()) + d["no_grid"] == total
    assert sum(m["found"] for m in d["by_month"]) == total
    assert sum(m["closed"] for m in d["by_month"]) == closed
    assert d["closure_rate"] == round(closed / total, 4)
    assert d["overdue"] == overdue > 0
    assert d["by_escalation"]["grid"] == total
    for rate in ("enterprises_in_grid", "grids_with_staff", "enterprises_complete"):
        assert 0 < d[rate] <= 1
    assert users == {name: role for name, (role, _) in DEMO_ACCOUNTS.items()}


def test_three_rates_on_a_small_park(engine):
    build_park(engine, users=False)
    with session_scope(engine) as session:
        d = ledger.dashboard(session, get_park(session, "T"))
    # Both enterprises are in a grid; only 甲 has every basic field; only T-001
    # has a chief whose contacts are published (T-002's board is not up).
    assert (d["enterprises_in_grid"], d["enterprises_complete"], d["grids_with_staff"]) == (
        1.0, 0.5, 0.25)
    assert d["total"] == 0 and d["closure_rate"] is None


def test_the_dashboard_the_weekly_report_and_the_check_give_the_same_rates(engine):
    """One definition of each 100% rate: the dashboard used to count an enterprise with
    every basic field but no grid as incomplete, where `gridmap check` did not."""
    from geodata.models import Enterprise
    from geodata.periods import iso_week
    from geodata.services.coverage import park_rates
    from geodata.services.weekly import weekly_report

    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        firm = session.execute(sa.select(Enterprise).where(Enterprise.name == "甲公司")).scalar_one()
        firm.grid_id = None  # complete records, in no grid
    with session_scope(engine) as session:
        park = get_park(session, "T")
        check = park_rates(session, park)
        board = ledger.dashboard(session, park)
        week = weekly_report(session, park, iso_week(date.today()))["rates"]
    assert check == {"enterprises_in_grid": 0.5, "grids_staffed": 0.25, "records_complete": 0.5}
    assert (board["enterprises_in_grid"], board["grids_with_staff"],
            board["enterprises_complete"]) == tuple(check.values())
    assert [week[k]["value"] for k in ("enterprises_in_grid", "grids_with_staff",
                                       "enterprises_complete")] == list(check.values())


@pytest.mark.parametrize("change, complete", [
    ({}, 1), ({"employees": 0}, 1), ({"contact_name": ""}, 0), ({"industry": None}, 0),
    ({"credit_code": "91411621MA00000000"}, 0), ({"contact_phone": " "}, 1)])
def test_the_stored_counts_in_sql_are_those_of_the_records(engine, change, complete):
    """The dashboard's and weekly report's counts (SQL, no sites read) equal the check's.

    The check counts the records one by one (:func:`record_complete`); the
    pages count in SQL.  Each edge of "filled" is tried on 甲, the complete one.
    """
    from geodata.models import Enterprise
    from geodata.services.coverage import enterprise_sites, rate_counts

    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        if change:
            session.execute(sa.update(Enterprise).where(Enterprise.name == "甲公司").values(
                **change))
        session.execute(sa.update(Enterprise).where(Enterprise.name == "乙公司").values(
            grid_id=None))
    with session_scope(engine) as session:
        park = get_park(session, "T")
        stored = rate_counts(session, park)
        counted = rate_counts(session, park, enterprise_sites(session, park))
    assert stored == counted
    assert (stored["enterprises"], stored["in_grid"], stored["complete"]) == (2, 1, complete)


def test_relocate_after_grid_change(engine):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        h = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-001")),
                                 category="其他", actor=ACTORS["admin"])
        hid = h.id
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        # Retire T-001: the hazard falls into no grid until the planner redraws it.
        session.execute(sa.update(Grid).where(Grid.code == "T-001").values(
            active_to=date(2025, 1, 1), version=Grid.version + 1))
        assert ledger.relocate(session, park) == 1
    with session_scope(engine) as session:
        assert ledger.get_hazard(session, hid).grid_id is None


def test_hazard_codes_count_up_per_year(engine):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        codes = [ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat(g)),
                                      category="其他", actor=ACTORS["inspector"],
                                      found_date=date(2025, 3, 1)).code
                 for g in ("T-001", "T-002")]
    assert codes == ["YH2025-0001", "YH2025-0002"]


def _cli_hazard(engine):
    build_park(engine)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        return ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-002")),
                                    category="用电安全", description="配电箱未上锁",
                                    actor=ACTORS["inspector"]).id


def test_cli_hazards_walk(runner, engine):
    hid = _cli_hazard(engine)
    listed = runner("hazards", "list", "--park", "T")
    assert listed.exit_code == 0 and "配电箱未上锁" in listed.output
    moved = runner("hazards", "transition", hid, "整改", "--as", "inspector", "--deadline",
                   future().isoformat())
    assert moved.exit_code == 0 and "rectifying (version 2)" in moved.output
    assert runner("hazards", "transition", hid, "supervising", "--as", "inspector",
                  "--version", 2).exit_code == 0
    unsupervised = runner("hazards", "transition", hid, "closed", "--as", "supervisor")
    assert unsupervised.exit_code == 2 and "supervision record" in unsupervised.output
    assert runner("hazards", "transition", hid, "closed", "--as", "supervisor",
                  "--supervision-note", "已上锁").exit_code == 0
    shown = json.loads(runner("hazards", "show", hid, "--format", "json").output)
    assert shown["status"] == "closed" and len(shown["history"]) == 4
    assert shown["supervisions"][0]["note"] == "已上锁"
    as_json = json.loads(runner("hazards", "list", "--status", "销号", "--format", "json").output)
    assert as_json["total"] == 1
    code = as_json["hazards"][0]["code"]
    by_code = runner("hazards", "show", code)
    assert by_code.exit_code == 0 and by_code.output.startswith(f"{code} (id {hid}) 销号")
    assert "时间 at\t人员 actor" in by_code.output  # the history table has a header row
    as_csv = runner("hazards", "list", "--status", "closed", "--format", "csv").output
    assert as_csv.splitlines()[0].startswith("id,编号 code,") and code in as_csv
    assert runner("hazards", "list", "--overdue").stdout.splitlines() == [
        "\t".join(h for _, h in LIST_COLUMNS)]


@pytest.mark.parametrize("args, message", [
    (("hazards", "transition", "1", "closed", "--as", "viewer"), "changed since you read"),
    (("hazards", "transition", "1", "rectifying", "--as", "viewer", "--deadline",
      "2099-01-01"), "may not"),
    (("hazards", "transition", "1", "rectifying", "--as", "nobody"), "no user"),
    (("hazards", "transition", "1", "limbo", "--as", "admin"), "unknown status"),
    (("hazards", "show", "999"), "no hazard"),
    (("hazards", "list", "--status", "open"), "unknown status"),
    (("hazards", "list", "--park", "NOPE"), "no park"),
    (("hazards", "export", "ledger.pdf"), ".csv or .xlsx"),
    (("users", "add", "x y", "--role", "viewer", "--password", "longenough"), "user names"),
    (("users", "add", "newbie", "--role", "viewer", "--password", "short"), "at least"),
    (("users", "add", "viewer", "--role", "viewer", "--password", "longenough"), "exists"),
    (("users", "set-role", "nobody", "admin"), "no user"),
    (("users", "token", "viewer", "--days", "0"), "1<=x"),
    (("hazards", "show", "YH1999-0001"), "no hazard with ledger number"),
])
def test_cli_errors_exit_2_and_change_nothing(runner, engine, args, message):
    _cli_hazard(engine)
    if args[:3] == ("hazards", "transition", "1") and args[3] == "closed":
        args = args + ("--version", "7")
    before = table_counts(engine)
    result = runner(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert table_counts(engine) == before


def test_cli_users(runner, engine):
    build_park(engine, users=False)
    assert runner("users", "add", "wang", "--role", "inspector", "--password", "secret-pass-1",
                  "--grid", "T-001", "--park", "T").exit_code == 0
    assert "wang\tinspector\tactive\tT-001" in runner("users", "list").output
    assert runner("users", "set-role", "wang", "supervisor").exit_code == 0
    token = runner("users", "token", "wang", "--name", "script", "--days", "30").output.strip()
    assert token.startswith("gm_") and len(token) > 40
    with session_scope(engine) as session:
        user = session.execute(sa.select(User).where(User.username == "wang")).scalar_one()
        assert user.role == "supervisor" and token not in user.tokens[0].token_hash
        assert "secret-pass-1" not in user.password_hash
        assert session.execute(sa.select(sa.func.count()).select_from(HazardEvent)).scalar() == 0


def test_cli_demo_accounts(runner):
    first = runner("users", "demo-accounts")
    assert first.exit_code == 0 and "created 5" in first.output
    assert "none needed" in runner("users", "demo-accounts").output
    listed = runner("users", "list").output
    assert all(f"{name}\t{role}\t" in listed for name, (role, _) in DEMO_ACCOUNTS.items())


def test_locate_near_a_few_points_agrees_with_the_whole_layers(engine):
    """One point at a time reads only nearby grids and sites: the same answers as all at once.

    The points sit where the ranking matters: grid corners and edges shared
    by several grids and sub-grids, enterprise corners (hidden units inside
    their hosts), plus points inside cells and outside every site.
    """
    import numpy as np
    import shapely

    from geodata.models import Enterprise
    from geodata.models.base import to_shapes
    from geodata.services.hazards import FEW_POINTS, locate

    load_demo(engine, today=date(2025, 11, 30))
    with session_scope(engine) as session:
        park = get_park(session, "FGKFQ")
        cells = to_shapes(session.execute(sa.select(Grid.geom).where(
            Grid.park_id == park.id)).scalars().all())
        sites = to_shapes(session.execute(sa.select(Enterprise.site).where(
            Enterprise.park_id == park.id)).scalars().all())
        corners = shapely.get_coordinates(cells)
        site_corners = shapely.get_coordinates(sites)
        rng = np.random.default_rng(3)
        xy = np.vstack([corners[rng.choice(len(corners), 80, replace=False)],
                        site_corners[rng.choice(len(site_corners), 40, replace=False)],
                        shapely.get_coordinates(shapely.point_on_surface(sites[:20])),
                        shapely.get_coordinates(shapely.point_on_surface(cells[:20]))])
        points = shapely.points(xy)
        assert len(points) > FEW_POINTS  # all at once: the whole-layer path
        grids_all, sites_all = locate(session, park, points)
        one_by_one = [locate(session, park, [p]) for p in points]
        assert [g for (g,), _ in one_by_one] == grids_all
        assert [e for _, (e,) in one_by_one] == sites_all
        assert len(set(grids_all)) > 20 and sum(e is not None for e in sites_all) > 40
