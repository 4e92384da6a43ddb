"""Pages of a park with many grids stay within the page size (issue 13), on both backends.

A city's park holds 10^5 grids.  Every HTML page and printed export of a
park must show at most a page (config ``PAGE_ROWS``) of grid rows, however
many grids the park has; the data exports (CSV, XLSX) hold every row by
design.  The test walks every GET rule of ``app.url_map`` that takes a park
code, so a new page that lists every grid fails here.
"""

import io
import re
import uuid
from datetime import date, datetime, timezone

import geopandas as gpd
import pypdf
import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import (Enterprise, EnterpriseLink, Hazard, HazardEvent, RequestEvent,
                            ServiceRequest, Visit)
from geodata.models.base import to_element
from geodata.services.grids import import_grids
from geodata.services.parks import get_park, import_parks
from geodata.services.sites import import_enterprises
from geodata.services.users import add_user, create_token
from geodata.services.weekly import busiest, weekly_report
from geodata.storage import session_scope
from geodata.weekly_export import GRID_COLUMNS, TABLE_ROWS, printed
from tests.conftest import metric_box, metric_point
from webmap import create_app

COLS, ROWS, CELL = 20, 15, 50  # 300 grids of 50 m
CAP = 20
WEEK = "2026-W48"
#: Downloads that are data files: they hold every row, as the ledger's exports always did.
DATA_FILES = {"csv", "xlsx"}
GRID_CODE = re.compile(r"B-\d{3}")


def _grid_code(i):
    return f"B-{i + 1:03d}"


def build_big_park(engine, cols=COLS, rows=ROWS, hazards=True):
    """Park B of ``cols`` x ``rows`` grids of 50 m, a hazard in each grid, one enterprise."""
    park_gdf = gpd.GeoDataFrame([{"code": "B", "name": "大园区", "division_code": "411621"}],
                                geometry=[metric_box(0, 0, cols * CELL, rows * CELL)], crs=4326)
    boxes = [(c * CELL, r * CELL) for r in range(rows) for c in range(cols)]
    grids = gpd.GeoDataFrame(
        [{"code": _grid_code(i), "name": f"第{i + 1}网格"} for i in range(len(boxes))],
        geometry=[metric_box(x, y, x + CELL, y + CELL, vertex_spacing_m=CELL)
                  for x, y in boxes], crs=4326)
    sites = gpd.GeoDataFrame([{"name": "甲公司", "credit_code": make_credit_code("411621", 1)}],
                             geometry=[metric_box(10, 10, 40, 40)], crs=4326)
    with session_scope(engine, write=True) as session:
        (park,), _ = import_parks(session, park_gdf)
        import_grids(session, park, grids)
        import_enterprises(session, park, sites)
        add_user(session, "admin", "admin-pass-123", "admin")
        token, _ = create_token(session, "admin", "tests")
        if hazards:
            ids = dict(session.execute(sa.text("SELECT code, id FROM grids")).all())
            found = datetime(2026, 11, 24, 2, tzinfo=timezone.utc)
            for i, (x, y) in enumerate(boxes):
                hazard = Hazard(park_id=park.id, code=f"YH2026-{i + 1:04d}",
                                grid_id=ids[_grid_code(i)],
                                location=to_element(metric_point(x + CELL / 2, y + CELL / 2)),
                                category="消防安全", level="general", description="",
                                found_date=date(2026, 11, 24), deadline=date(2026, 11, 25),
                                status="found", escalation="grid")
                hazard.events.append(HazardEvent(at=found, actor="admin", from_status=None,
                                                 to_status="found", action="log", note=""))
                session.add(hazard)
    return token


@pytest.fixture
def big(db_url, engine):
    token = build_big_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "PAGE_ROWS": CAP})
    yield app, {"Authorization": f"Bearer {token}"}
    app.extensions["gridmap.engine"].dispose()


def _urls(app, engine):
    """Every GET URL of a park page or download, its path arguments filled in for park B."""
    with session_scope(engine) as session:
        park = get_park(session, "B")
        credit = session.execute(sa.text("SELECT credit_code FROM enterprises")).scalar()
        assert park is not None
    values = {"code": "B", "grid_code": _grid_code(0), "week": WEEK, "credit_code": credit}
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or "code" not in rule.arguments or rule.rule.startswith(
                ("/api/", "/ogcapi/")):
            continue
        unknown = rule.arguments - set(values) - {"fmt"}
        assert not unknown, f"{rule.rule}: fill in {unknown} to check this page"
        for fmt in (["html", "pdf", "xlsx", "csv"] if "fmt" in rule.arguments else [None]):
            urls.append((rule.rule, fmt, re.sub(r"<(?:\w+:)?(\w+)>",
                                                lambda m: str(values.get(m.group(1), fmt)),
                                                rule.rule)))
    return urls


def _text(response, fmt):
    if fmt == "pdf":
        reader = pypdf.PdfReader(io.BytesIO(response.data))
        return "\n".join(page.extract_text() for page in reader.pages)
    return response.get_data(as_text=True)


def test_no_park_page_shows_more_grid_rows_than_a_page(big, engine):
    app, auth = big
    client = app.test_client()
    checked, shown = set(), {}
    for rule, fmt, url in _urls(app, engine):
        response = client.get(url, headers=auth)
        if fmt is not None and response.status_code == 422:
            continue  # a format this download does not offer
        assert response.status_code in (200, 403), (url, response.status_code)
        if fmt in DATA_FILES:
            continue
        codes = set(GRID_CODE.findall(_text(response, fmt)))
        assert len(codes) <= CAP, f"{url} shows {len(codes)} grids, more than a page ({CAP})"
        checked.add(rule)
        shown[url] = len(codes)
    # The pages of the issue were walked, and the counting reads them (PDF text included).
    assert {"/parks/<code>/dashboard", "/parks/<code>/weekly/<week>",
            "/parks/<code>/weekly/<week>.<fmt>", "/parks/<code>/grids/<grid_code>"} <= checked
    assert shown[f"/parks/B/weekly/{WEEK}.pdf"] == shown["/parks/B/dashboard"] == CAP


def test_the_dashboard_pages_through_the_grids_with_hazards(big):
    app, auth = big
    client = app.test_client()
    seen, url = [], "/parks/B/dashboard"
    while url:
        html = client.get(url, headers=auth).get_data(as_text=True)
        body = re.search(r'<table id="by-grid">.*?</table>', html, re.S).group(0)
        rows = re.findall(r'<tr data-grid="([^"]+)">', body)
        assert 0 < len(rows) <= CAP
        seen += rows
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert sorted(seen) == [_grid_code(i) for i in range(COLS * ROWS)]


def test_the_weekly_files_cut_the_grid_table_and_the_xlsx_holds_it_all(big):
    import openpyxl

    app, auth = big
    client = app.test_client()
    html = client.get(f"/parks/B/weekly/{WEEK}", headers=auth).get_data(as_text=True)
    rows = re.findall(r'<tr data-grid="([^"]+)">', html)
    assert len(rows) == CAP
    assert f"另有 {COLS * ROWS - CAP} 行未列出" in html
    book = openpyxl.load_workbook(io.BytesIO(
        client.get(f"/parks/B/weekly/{WEEK}.xlsx", headers=auth).data))
    assert book["分网格"].max_row == 1 + COLS * ROWS


def test_the_static_map_of_thousands_of_grids_has_a_few_artists(engine, monkeypatch):
    """The weekly map draws the page's grids' rings as one artist and labels none past the cap.

    The page's grids only: reading and drawing a park's every outline was
    most of the weekly page's time in a park of 10^5 grids.
    """
    from matplotlib.figure import Figure
    from matplotlib.path import Path as MplPath

    from geodata.weekly_export import MAP_LABELS, static_map

    build_big_park(engine, cols=60, rows=50, hazards=False)
    counted = {}
    savefig = Figure.savefig

    def count_then_save(figure, *args, **kwargs):
        axes = figure.axes[0]
        counted.update(lines=len(axes.lines), texts=len(axes.texts),
                       rings=len(axes.patches), all=len(axes.get_children()),
                       grid_rings=int((axes.patches[1].get_path().codes
                                       == MplPath.MOVETO).sum()))
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", count_then_save)
    with session_scope(engine) as session:
        park = get_park(session, "B")
        png = static_map(session, park, weekly_report(session, park, WEEK, rows=TABLE_ROWS))
    assert png.startswith(b"\x89PNG") and TABLE_ROWS > MAP_LABELS
    # One path for the park, one for the page's grids; the axes' own spines, title and axes.
    assert {**counted, "all": None} == {"lines": 0, "texts": 0, "rings": 2, "all": None,
                                        "grid_rings": TABLE_ROWS}
    assert counted["all"] < 20


TODAY = date(2026, 12, 10)
SUB_GRID = "B-002-01"
RETIRED = _grid_code(14)


def _at(day, hour=2):
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc)


def build_busy_park(engine):
    """Park B of 300 grids with a week of varied work in W48, for pages against the XLSX.

    Every seventh grid has a hazard (found and overdue, closed in the week,
    escalated, open on time, or closed before the week, in turn) and every
    fourteenth a second one; every eleventh grid has a visit; a sub-grid of
    B-002 has a hazard and a visit (they roll up); grid B-015 is retired
    with its hazards; two requests and a cadre's link (visits due) in B-001.
    Returns the admin's token.
    """
    token = build_big_park(engine, hazards=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "B")
        import_grids(session, park, gpd.GeoDataFrame(
            [{"code": SUB_GRID, "name": "子网格", "parent_code": _grid_code(1)}],
            geometry=[metric_box(55, 5, 95, 45)], crs=4326))
        ids = dict(session.execute(sa.text("SELECT code, id FROM grids")).all())
        admin = session.execute(sa.text("SELECT id FROM users WHERE username = 'admin'")).scalar()
        firm = session.execute(sa.select(Enterprise)).scalar_one()
        kinds = [  # (found date, deadline, escalation, events)
            (date(2026, 11, 24), date(2026, 11, 25), "grid", [(_at(24), "found")]),
            (date(2026, 11, 24), None, "grid", [(_at(24), "found"), (_at(26), "closed")]),
            (date(2026, 11, 10), None, "park", [(_at(10), "found")]),
            (date(2026, 11, 25), date(2026, 12, 20), "grid", [(_at(25), "found")]),
            (date(2026, 11, 10), None, "grid", [(_at(10), "found"), (_at(12), "closed")])]
        work = [(_grid_code(i), kinds[(i // 7) % 5]) for i in range(0, COLS * ROWS, 7)]
        work += [(_grid_code(i), kinds[0]) for i in range(0, COLS * ROWS, 14)]
        work += [(SUB_GRID, kinds[0])]
        for n, (grid, (found, deadline, escalation, events)) in enumerate(work):
            hazard = Hazard(park_id=park.id, code=f"YH2026-{n + 1:04d}", grid_id=ids[grid],
                            location=to_element(metric_point(60, 10)), category="消防安全",
                            level="general", description=f"隐患 {n}", found_date=found,
                            deadline=deadline, status=events[-1][1], escalation=escalation)
            prev = None
            for at, target in events:
                hazard.events.append(HazardEvent(at=at, actor="admin", from_status=prev,
                                                 to_status=target, action="log", note=""))
                prev = target
            session.add(hazard)
        for n, grid in enumerate([_grid_code(i) for i in range(0, COLS * ROWS, 11)]
                                 + [SUB_GRID]):
            session.add(Visit(park_id=park.id, grid_id=ids[grid], enterprise_id=firm.id,
                              user_id=admin, actor="admin", kind="visit", occurred_at=_at(25),
                              recorded_at=_at(25), location=to_element(metric_point(60, 10)),
                              note="", findings="", client_id=str(uuid.uuid4())))
        for n, (grid, events) in enumerate([
                (_grid_code(3), [(_at(23), "accepted", "accept", None)]),
                (_grid_code(5), [(_at(23), "accepted", "accept", None),
                                 (_at(24), "resolved", "resolve", None),
                                 (_at(25), "followed_up", "follow_up", "unsatisfied")])]):
            item = ServiceRequest(park_id=park.id, enterprise_id=firm.id, grid_id=ids[grid],
                                  code=f"SQ2026-{n + 1:04d}", category="用工",
                                  description="诉求", received_date=date(2026, 11, 23),
                                  source="phone", deadline=date(2026, 11, 26),
                                  responsible="admin", status=events[-1][1], resolution="",
                                  satisfaction=events[-1][3])
            prev = None
            for at, target, action, answer in events:
                item.events.append(RequestEvent(at=at, actor="admin", from_status=prev,
                                                to_status=target, action=action, note="",
                                                satisfaction=answer))
                prev = target
            session.add(item)
        session.add(EnterpriseLink(user_id=admin, enterprise_id=firm.id,
                                   created_at=datetime(2026, 11, 1, tzinfo=timezone.utc)))
        session.execute(sa.text("UPDATE grids SET active_to = :d WHERE code = :c"),
                        {"d": date(2026, 11, 1), "c": RETIRED})
    return token


@pytest.mark.parametrize("member", [False, True])
def test_a_weekly_page_is_the_cut_of_the_whole_report(engine, member, monkeypatch):
    """Built as a page, the report prints exactly what the whole report cut to a page prints.

    Every page size from one row to more than the park's grids, for the
    whole park and for a grid member's grids (some with work, the sub-grid,
    the retired grid, some quiet).  The page reads the quiet grids in
    batches of 7 here, so it goes on from batch to batch (keyset on the code).
    """
    from geodata.services import weekly

    monkeypatch.setattr(weekly, "WALK_BATCH", 7)
    build_busy_park(engine)
    with session_scope(engine) as session:
        park = get_park(session, "B")
        ids = dict(session.execute(sa.text("SELECT code, id FROM grids")).all())
        grid_ids = {ids[c] for c in (_grid_code(0), _grid_code(1), SUB_GRID, RETIRED,
                                     _grid_code(8), _grid_code(11), _grid_code(12),
                                     _grid_code(70))} if member else None
        whole = weekly_report(session, park, WEEK, today=TODAY, grid_ids=grid_ids)
        assert whole["grids_total"] == len(whole["grids"]) == (6 if member else 299)
        assert whole["hazards"]["overdue"] and whole["visits"]["records"]
        for rows in (1, 3, 8, CAP, 60, 298, 299, 400):
            page = weekly_report(session, park, WEEK, today=TODAY, grid_ids=grid_ids,
                                 rows=rows)
            assert printed(page, rows) == printed(whole, rows), rows
            assert len(page["grids"]) <= rows and len(page["review"]) <= rows


def _html_table(html, table_id):
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", c).replace("&amp;", "&") for c in
             re.findall(r"<t[dh]>(.*?)</t[dh]>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def _sheet(book, title):
    return [["" if v is None else str(v) for v in row]
            for row in book[title].iter_rows(values_only=True)]


def test_the_weekly_page_shows_the_figures_of_the_xlsx(db_url, engine):
    """Page against XLSX on a busy park of 300 grids, PAGE_ROWS 20: every figure agrees.

    The summary, the page's grid rows (the XLSX's busiest first), the page's
    review items (the XLSX's first), and the count of rows left out.
    """
    import openpyxl

    token = build_busy_park(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True, "PAGE_ROWS": CAP})
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {token}"}
        html = client.get(f"/parks/B/weekly/{WEEK}", headers=auth).get_data(as_text=True)
        book = openpyxl.load_workbook(io.BytesIO(
            client.get(f"/parks/B/weekly/{WEEK}.xlsx", headers=auth).data))
    finally:
        app.extensions["gridmap.engine"].dispose()
    figures = dict(row for row in _sheet(book, "周汇报")[5:])
    summary = dict(_html_table(html, "summary"))
    assert summary == figures and len(summary) == 16
    assert summary["逾期隐患 hazards overdue at week end"] != "0"
    header, *grids = _sheet(book, "分网格")
    assert header == [h for _, h in GRID_COLUMNS] and len(grids) == COLS * ROWS - 1
    by_key = [dict(zip([k for k, _ in GRID_COLUMNS], row)) for row in grids]
    for row in by_key:
        row.update({k: int(row[k]) for k, _ in GRID_COLUMNS[2:]})
    busiest_rows = [[str(r[k]) for k, _ in GRID_COLUMNS]
                    for r in sorted(by_key, key=busiest)[:CAP]]
    assert _html_table(html, "by-grid")[1:] == busiest_rows
    codes = [r[0] for r in busiest_rows]
    assert codes != sorted(codes)  # the order is by work, not by code
    review = _sheet(book, "周研判")[1:]
    assert _html_table(html, "review")[1:] == review[:CAP]
    assert f"另有 {len(grids) - CAP} 行未列出" in html
    assert f"另有 {len(review) - CAP} 行未列出" in html


#: Grids in even rows and every third column: no two touch, so each leaves its own gap.
RETIRED_APART = [_grid_code(r * COLS + c) for r in range(0, ROWS, 2) for c in range(1, COLS, 3)]


def test_the_coverage_answer_checks_once_and_pages_its_problems(db_url, engine, monkeypatch):
    """``/api/parks/<code>/coverage``: one check for all its pages, and each page slices it.

    The check of a whole park is O(park) by nature (a gap is a gap of the
    whole tiling); what a request must not do is check again while the grids
    and boundary are unchanged, or send more than its page.  Park B retires
    grids apart from each other: one gap each.  The pages put together are
    ``gridmap check``'s findings (``check_park``).
    """
    from geodata.services import coverage

    token = build_big_park(engine, hazards=False)
    with session_scope(engine, write=True) as session:
        session.execute(sa.text("UPDATE grids SET active_to = :d WHERE code IN :codes")
                        .bindparams(sa.bindparam("codes", expanding=True)),
                        {"d": date(2026, 11, 1),
                         "codes": RETIRED_APART})
        park = get_park(session, "B")
        _, report = coverage.check_park(session, park)
        whole = report.to_geojson()["features"]
    assert sum(f["properties"]["problem"] == "gap" for f in whole) == len(RETIRED_APART) > 50
    checks = []
    check = coverage.check_coverage
    monkeypatch.setattr(coverage, "check_coverage",
                        lambda *a, **k: checks.append(1) or check(*a, **k))
    coverage.clear_report_cache()
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    try:
        client = app.test_client()
        pages, offset = [], 0
        while offset < len(whole):
            answer = client.get(f"/api/parks/B/coverage?limit=7&offset={offset}",
                                headers={"Authorization": f"Bearer {token}"}).get_json()
            assert answer["numberMatched"] == len(whole) and answer["numberReturned"] <= 7
            pages += answer["features"]
            offset += 7
    finally:
        app.extensions["gridmap.engine"].dispose()
    assert pages == whole and offset > 7 and len(checks) == 1
