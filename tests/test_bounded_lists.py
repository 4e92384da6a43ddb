"""Every JSON answer about a park is bounded (issue 13: a park of 10^5 grids).

A park of a few hundred grids and the page cap lowered to 50
(``GRIDMAP_API_PAGE_MAX``): every GET rule of ``app.url_map`` that takes a
park code (in its path, or as the ``park`` query parameter its OpenAPI
operation declares) is called, and no JSON answer may carry more than 50 rows or
features: no list longer than the cap, no object keyed by more grid codes
than the cap.  A new route that sends the whole park fails here.
"""

import re

import pytest
import sqlalchemy as sa

from geodata.config import Settings
from geodata.errors import ConfigError
from geodata.models import Enterprise, Grid, Hazard
from geodata.models.base import to_shapes
from geodata.periods import iso_week, local_today
from geodata.services.demo_loader import load_province
from geodata.services.parks import get_park
from geodata.services.users import add_user, create_token
from geodata.storage import session_scope
from webmap import create_app
from webmap.api import declared_parameters

CAP = 50
GRIDS = 300
PARK = "PV001"


@pytest.fixture
def big_park(engine):
    """Park PV001 of 300 grids; tokens of an admin and of a grid member of its first grid."""
    load_province(engine, 1, GRIDS, seed=7)
    tokens = {}
    with session_scope(engine, write=True) as session:
        first = session.execute(sa.select(Grid.code).order_by(Grid.code).limit(1)).scalar()
        add_user(session, "admin", "admin-pass-123", "admin")
        add_user(session, "member", "member-pass-123", "inspector", grid_codes=[first],
                 park=get_park(session, PARK))
        for name in ("admin", "member"):
            tokens[name], _ = create_token(session, name, "tests")
        fill = {"code": PARK, "grid_code": first,
                "credit_code": session.execute(sa.select(Enterprise.credit_code)).scalar(),
                "hazard_id": session.execute(sa.select(Hazard.id)).scalar(),
                "week": iso_week(local_today()), "fmt": "json", "z": 0, "x": 0, "y": 0}
    return tokens, fill


@pytest.fixture
def capped_app(request):
    """``capped_app(db_url, tmp_path)``: the app with the page cap at ``CAP``, disposed after."""
    apps = []

    def make(db_url, tmp_path, **config):
        apps.append(create_app({"DATABASE_URL": db_url, "TESTING": True,
                                "DATA_DIR": str(tmp_path), "API_PAGE_MAX": CAP, **config}))
        return apps[-1]
    yield make
    for app in apps:
        app.extensions["gridmap.engine"].dispose()


def _widest(value, codes):
    """The longest list in ``value``, or the most grid codes one of its objects is keyed by.

    A geometry's ``coordinates`` are one row's shape (vertices), not rows.
    """
    if isinstance(value, list):
        return max([len(value), *(_widest(v, codes) for v in value)])
    if isinstance(value, dict):
        keyed = sum(1 for k in value if k in codes)
        return max([keyed, *(_widest(v, codes) for k, v in value.items()
                             if k not in ("coordinates", "bbox"))])
    return 0


def test_no_json_answer_about_a_park_carries_more_than_the_page_cap(db_url, engine, big_park,
                                                                    capped_app, tmp_path):
    tokens, fill = big_park
    with session_scope(engine) as session:
        codes = set(session.execute(sa.select(Grid.code)).scalars())
    assert len(codes) == GRIDS > CAP
    app = capped_app(db_url, tmp_path)
    client = app.test_client()
    checked = []
    for path in _park_paths(app, fill):
        for who in ("admin", "member"):
            response = client.get(path, headers={"Authorization": f"Bearer {tokens[who]}",
                                                 "Accept": "application/json"})
            assert response.status_code < 500, (path, who, response.data[:300])
            if not response.is_json:
                continue
            widest = _widest(response.get_json(), codes)
            assert widest <= CAP, f"{path} as {who}: {widest} rows in one answer (cap {CAP})"
            checked.append(path)
    # the park's lists were among the answers checked (not all skipped as HTML or errors)
    for path in ("grids", "summaries", "enterprises", "hazards", "visits/layer", "edits/state",
                 "dashboard"):
        assert f"/api/parks/{PARK}/{path}" in checked, path
    assert f"/api/me/worklist?park={PARK}" in checked


def test_pages_walk_the_whole_list_through_their_next_links(db_url, big_park, capped_app,
                                                            tmp_path):
    """Following ``Link: rel=next`` gives every grid once, and ``X-Total-Count`` counts them."""
    tokens, _ = big_park
    app = capped_app(db_url, tmp_path)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    for path, rows in (("grids", lambda r: [f["id"] for f in r.get_json()["features"]]),
                       ("summaries", lambda r: list(r.get_json())),
                       ("visits/layer", lambda r: [f["properties"]["code"]
                                                   for f in r.get_json()["features"]])):
        url, seen, pages = f"/api/parks/{PARK}/{path}", [], 0
        while url:
            response = client.get(url, headers=auth)
            assert response.status_code == 200, response.data[:300]
            assert int(response.headers["X-Total-Count"]) == GRIDS
            seen += rows(response)
            pages += 1
            link = response.headers.get("Link")
            url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
        assert len(seen) == len(set(seen)) == GRIDS and pages == -(-GRIDS // CAP), path
    too_big = client.get(f"/api/parks/{PARK}/grids?limit={CAP + 1}", headers=auth)
    assert too_big.status_code == 422
    assert too_big.get_json()["error"]["details"]["maximum"] == CAP


@pytest.mark.parametrize("raw, ok", [("1", True), ("20000", True), ("0", False), ("-3", False),
                                     ("many", False)])
def test_the_page_cap_is_a_setting_checked_at_startup(raw, ok):
    """``GRIDMAP_API_PAGE_MAX``: a positive integer, else a configuration error naming it."""
    if ok:
        assert Settings.from_env({"GRIDMAP_API_PAGE_MAX": raw}).api_page_max == int(raw)
        return
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GRIDMAP_API_PAGE_MAX": raw})
    assert "GRIDMAP_API_PAGE_MAX" in str(caught.value)


#: The page of the walk below: small against the park, so a page's work is far below it.
PAGE = 10


def add_sites(engine):
    """Three 4 m parcels in each grid of PV001, a gate point inside every tenth (hidden units)."""
    import geopandas as gpd
    import shapely

    from geodata.creditcode import make_credit_code
    from geodata.services.sites import import_enterprises

    with session_scope(engine, write=True) as session:
        park = get_park(session, PARK)
        spots = shapely.point_on_surface(to_shapes(session.execute(
            sa.select(Grid.geom).where(Grid.park_id == park.id, Grid.level == 1)
            .order_by(Grid.code)).scalars().all()))
        sites = [shapely.buffer(shapely.Point(p.x + dx, p.y), 2e-5, cap_style="square")
                 for p in spots for dx in (-1e-4, 0, 1e-4)]
        sites += [p for p in spots[::10]]
        import_enterprises(session, park, gpd.GeoDataFrame(
            [{"name": f"企业{i}", "credit_code": make_credit_code("411621", 90000 + i)}
             for i in range(len(sites))], geometry=sites, crs=4326))


def _park_urls(app, fill):
    """Every GET URL that takes the park (path or ``?park=``), and the park-less lists of parks."""
    urls = ["/api/parks", "/ogcapi/collections/parks/items",
            f"/ogcapi/collections/enterprises/items?hidden=true&limit={PAGE}",
            f"/ogcapi/collections/enterprises/items?park={PARK}&hidden=false&limit={PAGE}",
            f"/api/parks/{PARK}/enterprises?hidden=true",
            f"/api/parks/{PARK}/enterprises?hidden=false"]
    return urls + _park_paths(app, fill)


def _park_paths(app, fill):
    """Every GET route that takes the park's code in its path or (the ledgers, the phone's
    work list) as ``?park=``, filled with ``fill``'s values."""
    with app.test_request_context():
        declared = declared_parameters()
    paths = []
    for rule in app.url_map.iter_rules():
        by_query = "park" in declared.get(
            (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), "GET"), ())
        if "GET" not in rule.methods or not ("<code>" in rule.rule or by_query):
            continue
        path = rule.rule + (f"?park={PARK}" if by_query else "")
        for name, value in fill.items():
            path = re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), path)
        assert "<" not in path, f"no value to fill in {rule.rule}"
        paths.append(path)
    return paths


def test_no_request_reads_the_whole_park_once_its_caches_are_warm(db_url, engine, big_park,
                                                                  capped_app, tmp_path,
                                                                  monkeypatch):
    """Every route, walked twice: the second time no request decodes or classifies the park.

    The first walk fills the caches that are kept per park state (the map's grid
    layer, the hidden-unit detection under ``park_sites_stamps``, the coverage
    report under ``park_coverage_stamps``).  On the
    second, a spy on ``shapely.from_wkb`` (every geometry read from the
    database is decoded there) and on the hidden-unit rule counts each request's
    geometries: a route that reads the park's grids or enterprise sites (300
    and 936 here) per request, as the park list's hidden-unit count and an
    unlimited user's work list did, fails.  Work done in SQL alone is not
    counted.  The coverage check is O(park) by nature: it runs on the first walk
    only.
    """
    import shapely

    from geodata import hidden

    tokens, fill = big_park
    add_sites(engine)
    with session_scope(engine) as session:
        firms = session.execute(sa.select(sa.func.count()).select_from(Enterprise)).scalar()
    bound = GRIDS // 2  # pages of 10 grids or sites and their neighbours stay far below
    assert firms > 3 * GRIDS
    app = capped_app(db_url, tmp_path, PAGE_ROWS=PAGE, API_PAGE_MAX=PAGE)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {tokens['admin']}", "Accept": "application/json"}
    urls = _park_urls(app, fill)
    for url in urls:
        assert client.get(url, headers=auth).status_code < 500, url
    decoded, classified = [], []
    from_wkb, classify = shapely.from_wkb, hidden.classify
    monkeypatch.setattr(shapely, "from_wkb", lambda values, *a, **k: (
        decoded.append(len(values) if hasattr(values, "__len__") else 1)
        or from_wkb(values, *a, **k)))
    monkeypatch.setattr(hidden, "classify", lambda sites, registered: (
        classified.append(len(sites)) or classify(sites, registered)))
    most = {}
    for url in urls:
        decoded.clear()
        classified.clear()
        response = client.get(url, headers=auth)
        assert response.status_code < 500, url
        most[url] = (sum(decoded), max(classified, default=0))
    over = {u: n for u, n in most.items() if n[0] > bound or n[1] > bound}
    assert over == {}
    # The walk reached the park-level counts and the hidden filters.
    assert {"/api/parks", f"/api/parks/{PARK}", f"/parks/{PARK}/map"} <= set(most)
