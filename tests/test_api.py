"""The read-only JSON API on both backends: filters, agreement with the database,
the OpenAPI document, and a table of bad inputs answered with the JSON error body."""

import contextlib
from datetime import date

import pytest
import sqlalchemy as sa

from geodata.models import Enterprise, Grid, Hazard
from tests.browser import demo_url  # noqa: F401
from tests.conftest import table_counts
from webmap import create_app

TODAY = date(2025, 11, 30)
OPEN = ("found", "rectifying", "supervising")


@pytest.fixture
def app(demo_url):  # noqa: F811
    app = create_app({"DATABASE_URL": demo_url, "TESTING": True, "TODAY": TODAY})
    yield app
    app.extensions["gridmap.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def db_scalar(app, query):
    with app.extensions["gridmap.engine"].connect() as conn:
        return conn.execute(query).scalar()


BAD = [
    ("/api/parks/FGKFQ/hazards?bbox=1,2,3", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=1,2,3,4,5,6,7", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=1,2,3,4c", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=5,1,4,2", 422, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=1,5,2,4", 422, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=nan,1,2,3", 422, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=1,2,inf,3", 422, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?bbox=34,114,35,115", 422, "invalid_bbox"),
    ("/api/parks/FGKFQ/grids?bbox=1,2,3", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/enterprises?bbox=a,b,c,d", 400, "invalid_bbox"),
    ("/api/parks/FGKFQ/hazards?limit=1000000000", 422, "invalid_limit"),
    ("/api/parks/FGKFQ/hazards?limit=0", 422, "invalid_limit"),
    ("/api/parks/FGKFQ/hazards?limit=-5", 422, "invalid_limit"),
    ("/api/parks/FGKFQ/hazards?limit=ten", 400, "invalid_limit"),
    ("/api/parks/FGKFQ/hazards?offset=-1", 422, "invalid_offset"),
    ("/api/parks/FGKFQ/grids?limit=99999999", 422, "invalid_limit"),
    ("/api/parks/FGKFQ/grids?zoom=99", 422, "invalid_zoom"),
    ("/api/parks/FGKFQ/grids?zoom=1.5", 400, "invalid_zoom"),
    ("/api/parks/FGKFQ/grids?level=0", 422, "invalid_level"),
    ("/api/parks/FGKFQ/hazards?status=open;DROP TABLE hazards", 422, "unknown_status"),
    ("/api/parks/FGKFQ/hazards?status=fixed", 422, "unknown_status"),
    ("/api/parks/FGKFQ/hazards?level=catastrophic", 422, "unknown_level"),
    ("/api/parks/FGKFQ/hazards?overdue=maybe", 422, "invalid_overdue"),
    ("/api/parks/FGKFQ/enterprises?hidden=yes please", 422, "invalid_hidden"),
    ("/api/parks/FGKFQ/hazards?sort=name;--", 422, "unknown_parameter"),
    ("/api/parks/FGKFQ/hazards?limit=1&limit=2", 400, "repeated_parameter"),
    ("/api/parks/FGKFQ/search?q=" + "x" * 101, 422, "text_too_long"),
    ("/api/parks/NOPE/grids", 404, "not_found"),
    ("/api/parks/1;DROP TABLE parks/hazards", 404, "not_found"),
    ("/api/parks/NOPE", 404, "not_found"),
    ("/api/parks/FGKFQ/grids/NOPE-999", 404, "not_found"),
    ("/api/parks/FGKFQ/summaries/NOPE-999", 404, "not_found"),
    ("/api/parks/FGKFQ/hazards?grid=NOPE-999", 404, "not_found"),
    ("/api/no/such/route", 404, "not_found"),
    ("/parks/NOPE/map", 404, "not_found"),
    ("/parks/FGKFQ/grids/NOPE-999", 404, "not_found"),
]


@pytest.mark.parametrize("url, status, code", BAD)
def test_bad_input_gets_json_error(app, client, url, status, code):
    before = table_counts(app.extensions["gridmap.engine"])
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in body["error"]["message"] and "SELECT" not in str(body)
    assert table_counts(app.extensions["gridmap.engine"]) == before


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
@pytest.mark.parametrize("url", ["/api/parks", "/api/parks/FGKFQ/grids",
                                 "/parks/FGKFQ/map", "/api/openapi.json"])
def test_wrong_method_is_405_with_allow(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_hazard_collection_allows_get_and_post_only(client, method):
    response = getattr(client, method)("/api/parks/FGKFQ/hazards")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_grid_counts_agree_with_database(app, client):
    fc = client.get("/api/parks/FGKFQ/grids").get_json()
    assert fc["numberMatched"] == len(fc["features"]) == db_scalar(
        app, sa.select(sa.func.count()).where(Grid.level == 1))
    subs = client.get("/api/parks/FGKFQ/grids?level=2").get_json()
    assert len(subs["features"]) == db_scalar(app, sa.select(sa.func.count()).where(
        Grid.level == 2))
    open_total = db_scalar(app, sa.select(sa.func.count()).where(Hazard.status.in_(OPEN)))
    assert sum(f["properties"]["open_hazards"] for f in fc["features"]) == open_total
    overdue = db_scalar(app, sa.select(sa.func.count()).where(
        Hazard.status.in_(OPEN), Hazard.deadline < TODAY))
    assert sum(f["properties"]["overdue_hazards"] for f in fc["features"]) == overdue
    # per grid, against a direct count (hazards of the grid and its sub-grids)
    for f in fc["features"][:12]:
        code = f["properties"]["code"]
        grid_id = db_scalar(app, sa.select(Grid.id).where(Grid.code == code))
        subs_ids = sa.select(Grid.id).where(sa.or_(Grid.id == grid_id,
                                                   Grid.parent_id == grid_id))
        n = db_scalar(app, sa.select(sa.func.count()).where(
            Hazard.status.in_(OPEN), Hazard.grid_id.in_(subs_ids)))
        assert f["properties"]["open_hazards"] == n, code
        ents = db_scalar(app, sa.select(sa.func.count()).where(Enterprise.grid_id == grid_id))
        assert f["properties"]["enterprise_count"] == ents


def test_overview_hidden_and_enterprises_agree(app, client):
    park = client.get("/api/parks/FGKFQ").get_json()["properties"]
    hidden = client.get("/api/parks/FGKFQ/hidden-units").get_json()
    flagged = client.get("/api/parks/FGKFQ/enterprises?hidden=true").get_json()
    others = client.get("/api/parks/FGKFQ/enterprises?hidden=false").get_json()
    assert park["hidden_units"] == len(hidden) == len(flagged["features"]) == 117
    assert {f["properties"]["credit_code"] for f in flagged["features"]} == {
        u["credit_code"] for u in hidden}
    assert len(flagged["features"]) + len(others["features"]) == park["enterprises"] == \
        db_scalar(app, sa.select(sa.func.count()).select_from(Enterprise))
    assert park["open_hazards"] == db_scalar(app, sa.select(sa.func.count()).where(
        Hazard.status.in_(OPEN)))
    summaries = client.get("/api/parks/FGKFQ/summaries").get_json()
    level1 = [s for s in summaries.values() if s["level"] == 1]
    assert sum(s["hidden_count"] for s in level1) == 117
    assert all(s["chief"] for s in level1)


def test_hazard_filters(app, client):
    all_open = client.get("/api/parks/FGKFQ/hazards?status=open").get_json()
    assert all(f["properties"]["status"] in OPEN for f in all_open["features"])
    major = client.get("/api/parks/FGKFQ/hazards?level=major&limit=5000").get_json()
    assert major["numberMatched"] == db_scalar(app, sa.select(sa.func.count()).where(
        Hazard.level == "major"))
    overdue = client.get("/api/parks/FGKFQ/hazards?overdue=true").get_json()
    assert overdue["numberMatched"] == sum(
        f["properties"]["overdue"] for f in all_open["features"])
    assert all(f["properties"]["overdue"] for f in overdue["features"])
    page = client.get("/api/parks/FGKFQ/hazards?limit=7&offset=7").get_json()
    assert page["numberReturned"] == 7 and page["numberMatched"] == 920
    grid = overdue["features"][0]["properties"]["grid"]
    top = grid.rsplit("-", 1)[0] if grid.count("-") > 1 else grid
    in_grid = client.get(f"/api/parks/FGKFQ/hazards?grid={top}&limit=5000").get_json()
    assert in_grid["numberMatched"] >= 1
    assert all(f["properties"]["grid"].startswith(top) for f in in_grid["features"])
    x, y = overdue["features"][0]["geometry"]["coordinates"]
    box = client.get(f"/api/parks/FGKFQ/hazards?bbox={x - 1e-5},{y - 1e-5},{x + 1e-5},"
                     f"{y + 1e-5}").get_json()
    assert overdue["features"][0]["id"] in [f["id"] for f in box["features"]]


def test_grids_by_bbox_and_zoom(client):
    whole = client.get("/api/parks/FGKFQ/grids").get_json()
    first = whole["features"][0]
    x, y = first["properties"]["anchor"]
    near = client.get(f"/api/parks/FGKFQ/grids?bbox={x},{y},{x},{y}&zoom=13").get_json()
    assert first["id"] in [f["id"] for f in near["features"]]
    assert 1 <= len(near["features"]) < len(whole["features"])
    assert near["simplified"] is True and whole["simplified"] is False
    one = client.get(f"/api/parks/FGKFQ/grids/{first['id']}").get_json()
    assert one["geometry"] == first["geometry"]  # authoritative geometry a request away


def test_search(client):
    grids = client.get("/api/parks/FGKFQ/search?q=fgkfq-022").get_json()
    assert grids[0]["kind"] == "grid" and grids[0]["code"] == "FGKFQ-022"
    name = client.get("/api/parks/FGKFQ/enterprises?hidden=true").get_json()[
        "features"][0]["properties"]["name"]
    found = client.get("/api/parks/FGKFQ/search", query_string={"q": name}).get_json()
    assert any(r["kind"] == "enterprise" and r["name"] == name for r in found)
    assert client.get("/api/parks/FGKFQ/search?q=%25").get_json() == []


def test_openapi_document(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/parks", "/api/parks/{code}/grids", "/api/parks/{code}/hazards",
                 "/api/parks/{code}/enterprises", "/api/parks/{code}/summaries"):
        assert "get" in doc["paths"][path]
    params = {p["name"] for p in doc["paths"]["/api/parks/{code}/hazards"]["get"]["parameters"]}
    assert {"status", "level", "grid", "overdue", "bbox", "limit"} <= params


@contextlib.contextmanager
def _search_client(db_url, engine, rename):
    """A client on the ledger test park after ``rename(session)`` changed a stored name."""
    from geodata.storage import session_scope
    from tests.ledger_helpers import build_park

    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        rename(session)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    try:
        yield app.test_client()
    finally:
        app.extensions["gridmap.engine"].dispose()


def _rename_firm(name):
    def rename(session):
        session.execute(sa.select(Enterprise).where(Enterprise.name == "甲公司")
                        ).scalar_one().name = name
    return rename


def test_search_ignores_case_on_both_backends(db_url, engine):
    """SQLite's LIKE ignores ASCII case and PostgreSQL's does not: the search must agree."""
    with _search_client(db_url, engine, _rename_firm("甲公司 ABC Lab")) as client:
        for q in ("abc lab", "ABC LAB", "Abc", "t-00"):
            found = client.get("/api/parks/T/search", query_string={"q": q}).get_json()
            assert found, q
        assert [r["name"] for r in client.get("/api/parks/T/search?q=abc").get_json()] == [
            "甲公司 ABC Lab"]
        assert len(client.get("/api/parks/T/search?q=t-00").get_json()) == 4


@pytest.mark.parametrize("stored, query", [
    ("Café ÉTOILE", "étoile"), ("Café ÉTOILE", "CAFÉ"), ("ＡＢＣ 化工", "abc"),
    ("abc 化工", "ＡＢＣ"), ("ΣΟΦΙΑ", "σοφια"), ("Straße", "STRAẞE"), ("ÅNGSTRÖM", "ångström"),
    ("Ｔｅｓｔ", "test"), ("Ⅻ 号厂", "xii"),
    # Full case folding, not lower case: ß is ss, final ς is σ, Cherokee folds to capitals.
    ("Straße", "STRASSE"), ("STRASSE 化工", "straße"), ("ＳＴＲＡＳＳＥ", "Straße"),
    ("ΟΔΟΣ", "οδος"), ("οδος 厂", "ΟΔΟΣ"), ("ᏣᎳᎩ", "ꮳꮃꭹ"), ("ᾼ 工厂", "ΑΙ"),
    ("ǅ 号", "ǆ")])
def test_search_folds_unicode_case_and_width_on_both_backends(db_url, engine, stored, query):
    """SQL ``lower()`` folds ASCII only on SQLite (and under PostgreSQL's C locale)."""
    with _search_client(db_url, engine, _rename_firm(stored)) as client:
        found = client.get("/api/parks/T/search", query_string={"q": query}).get_json()
        assert [r["name"] for r in found] == [stored]
        assert client.get("/api/parks/T/search", query_string={"q": query + "zz"}).get_json() == []


def test_search_folds_grid_codes_and_names_the_same_way(db_url, engine):
    """Grids are matched by the same folding as enterprises (one ``folded`` for both)."""
    def rename(session):
        session.execute(sa.select(Grid).where(Grid.code == "T-002")
                        ).scalar_one().name = "Weiße Straße"

    with _search_client(db_url, engine, rename) as client:
        for q in ("WEISSE", "weisse strasse", "ｗｅｉｓｓｅ", "Weiße"):
            found = client.get("/api/parks/T/search", query_string={"q": q}).get_json()
            assert [(r["kind"], r["code"]) for r in found] == [("grid", "T-002")], q


def _every_code_point():
    import sys

    return (chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)


def test_the_table_after_lower_is_full_case_folding_for_every_code_point():
    """``storage._AFTER_LOWER`` is derived again from Unicode, and the SQL recipe gives casefold.

    PostgreSQL's half of :func:`geodata.storage.folded` is lower case, NFD, the
    table, NFKC: simulated here in Python for every code point, it must equal
    :func:`geodata.storage.fold_text` (a Python with newer Unicode data fails
    here until the table is brought in step).
    """
    import unicodedata

    from geodata.storage import _AFTER_LOWER, fold_text

    def nfd(text):
        return unicodedata.normalize("NFD", text)

    derived = {}
    for c in _every_code_point():
        if (nfd(c) == c and unicodedata.normalize("NFKC", c) == c and c.lower() == c
                and nfd(c.casefold()) != c):
            derived[ord(c)] = nfd(c.casefold())
    assert derived == _AFTER_LOWER
    wrong = [c for c in _every_code_point() if unicodedata.normalize(
        "NFKC", nfd(unicodedata.normalize("NFKC", c).lower()).translate(_AFTER_LOWER))
        != fold_text(c)]
    assert wrong == []


def test_sql_folding_equals_python_folding_on_both_backends(engine):
    """``folded`` in SQL gives :func:`fold_text` for every character of the table and more."""
    from geodata.storage import _AFTER_LOWER, fold_text, folded, session_scope

    samples = [chr(k) for k in _AFTER_LOWER] + [
        "Straße", "STRAẞE", "ΟΔΟΣ ΚΑΙ ΟΔΟΣ", "ᾼᾳῼ", "İstanbul", "ＡＢＣ１２３", "ﬃ ſt",
        "ᏣᎳᎩ ꮳꮃꭹ", "ǅǄǆ", "Ⅻ", "Café", "化工 ABC", "µ", "ΐ", "ẞ"]
    with session_scope(engine) as session:
        got = [session.execute(sa.select(folded(session, sa.literal(s)))).scalar()
               for s in samples]
    assert got == [fold_text(s) for s in samples]
