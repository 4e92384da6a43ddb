"""Pages of a park with many grids stay within the page size (issue 13), on both backends.

A city's park holds 10^5 grids.  Every HTML page and printed export of a
park must show at most a page (config ``PAGE_ROWS``) of grid rows, however
many grids the park has; the data exports (CSV, XLSX) hold every row by
design.  The test walks every GET rule of ``app.url_map`` that takes a park
code, so a new page that lists every grid fails here.
"""

import io
import re
from datetime import date, datetime, timezone

import geopandas as gpd
import pypdf
import pytest
import sqlalchemy as sa

from geodata.creditcode import make_credit_code
from geodata.models import Hazard, HazardEvent
from geodata.models.base import to_element
from geodata.services.grids import import_grids
from geodata.services.parks import get_park, import_parks
from geodata.services.sites import import_enterprises
from geodata.services.users import add_user, create_token
from geodata.storage import session_scope
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
    """The weekly map draws all grids' rings as one artist and labels none past the cap."""
    from matplotlib.figure import Figure

    from geodata.services import weekly
    from geodata.weekly_export import MAP_LABELS, static_map

    build_big_park(engine, cols=60, rows=50, hazards=False)
    counted = {}
    savefig = Figure.savefig

    def count_then_save(figure, *args, **kwargs):
        axes = figure.axes[0]
        counted.update(lines=len(axes.lines), texts=len(axes.texts),
                       rings=len(axes.patches), all=len(axes.get_children()))
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", count_then_save)
    with session_scope(engine) as session:
        park = get_park(session, "B")
        png = static_map(session, park, weekly.weekly_report(session, park, WEEK))
    assert png.startswith(b"\x89PNG") and 60 * 50 > MAP_LABELS
    # One path for the park, one for its 3000 grids; the axes' own spines, title and axes.
    assert {**counted, "all": None} == {"lines": 0, "texts": 0, "rings": 2, "all": None}
    assert counted["all"] < 20
