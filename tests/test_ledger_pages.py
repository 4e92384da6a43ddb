"""The ledger tables page through a park's entries; the exports still hold every row."""

import re
from datetime import date

import pytest
import sqlalchemy as sa

from geodata.models import Hazard, ServiceRequest
from geodata.services.requests import overdue_clause
from geodata.services.users import add_user, create_token
from geodata.storage import session_scope
from webmap import create_app, dashboard


@pytest.fixture
def db_url(demo_db_url):
    """Every database test here starts from the demo park of 2025-11-30 (a copy, see conftest)."""
    return demo_db_url


@pytest.fixture
def demo_site(db_url, engine):
    with session_scope(engine, write=True) as session:
        add_user(session, "pager", "pager-pass-123", "viewer")
        token, _ = create_token(session, "pager", "tests")
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    client.headers = {"Authorization": f"Bearer {token}"}
    yield client
    app.extensions["gridmap.engine"].dispose()


def _page(site, path):
    response = site.get(path, headers=site.headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    html = response.get_data(as_text=True)
    rows = re.findall(r'<tr id="hazard-([^"]+)"', html) if "/ledger" in path else re.findall(
        r'<tr class="[^"]*">\s*<td>(\d+)</td><td>(SQ[^<]+)</td>', html)
    nxt = re.search(r'<a rel="next" href="([^"]+)"', html)
    return html, rows, nxt and nxt.group(1).replace("&amp;", "&")


def test_the_hazard_ledger_pages_through_every_hazard_once(demo_site, engine):
    with session_scope(engine) as session:
        stored = session.execute(sa.select(Hazard.code).order_by(Hazard.code)).scalars().all()
        overdue = session.execute(sa.select(Hazard.code).where(
            Hazard.status != "closed", Hazard.deadline < date.today()).order_by(
                Hazard.code)).scalars().all()
    assert len(stored) > 2 * dashboard.PAGE_ROWS
    seen, path, pages = [], "/parks/FGKFQ/ledger", 0
    while path:
        html, codes, path = _page(demo_site, path)
        pages += 1
        assert len(codes) == (dashboard.PAGE_ROWS if path else len(stored) % dashboard.PAGE_ROWS)
        assert f"{len(stored)} 条 rows" in html and f"第 {pages} / " in html
        # 序号 runs on across pages
        first = re.search(r'<tr id="hazard-[^"]+"[^>]*><td>(\d+)</td>', html).group(1)
        assert int(first) == len(seen) + 1
        seen += codes
    assert seen == stored and pages == -(-len(stored) // dashboard.PAGE_ROWS)

    # the filters go with the page links, and the export still holds every matching row
    html, codes, nxt = _page(demo_site, "/parks/FGKFQ/ledger?status=closed&overdue=false")
    assert nxt and "status=closed" in nxt and "overdue=false" in nxt and "page=2" in nxt
    with session_scope(engine) as session:
        closed = session.execute(sa.select(sa.func.count()).where(
            Hazard.status == "closed")).scalar()
    export = demo_site.get("/parks/FGKFQ/ledger.csv?status=closed", headers=demo_site.headers)
    assert closed > dashboard.PAGE_ROWS
    assert len(export.data.decode("utf-8-sig").strip().splitlines()) == closed + 1

    # one ledger number: the row, on a one-row page; overdue only: exactly the overdue ones
    html, codes, nxt = _page(demo_site, f"/parks/FGKFQ/ledger?number={stored[-1].lower()}")
    assert codes == [stored[-1]] and nxt is None and "1 条 rows" in html
    html, codes, nxt = _page(demo_site, "/parks/FGKFQ/ledger?overdue=true")
    assert codes == overdue and nxt is None


def test_the_ledger_pages_read_overdue_as_the_api_does(demo_site):
    """One reading of ``overdue`` for the API lists and both HTML ledgers: the filter
    form's empty "any" is no filter, 1/0 are booleans, anything else names the parameter."""
    for path in ("/parks/FGKFQ/ledger", "/parks/FGKFQ/requests"):
        for value in ("", "1", "0", "TRUE"):
            page = demo_site.get(f"{path}?overdue={value}", headers=demo_site.headers)
            assert page.status_code == 200, (path, value)
        for value in ("maybe", "yes", " true"):
            page = demo_site.get(f"{path}?overdue={value}", headers=demo_site.headers)
            assert page.status_code == 422, (path, value)
            assert "invalid_overdue" in page.get_data(as_text=True), (path, value)


def test_the_request_ledger_pages_and_counts_overdue_on_all(demo_site, engine):
    demo_site.application.config["PAGE_ROWS"] = 50
    with session_scope(engine) as session:
        stored = session.execute(sa.select(ServiceRequest.code)).scalars().all()
        late = session.execute(sa.select(sa.func.count()).where(
            overdue_clause(date.today()))).scalar()
    assert len(stored) > 100 and late > 0
    seen, path = [], "/parks/FGKFQ/requests"
    while path:
        html, rows, path = _page(demo_site, path)
        assert f"逾期 overdue {late}</p>" in html
        assert [int(seq) for seq, _ in rows] == list(range(len(seen) + 1, len(seen) + 1 + len(
            rows)))
        seen += [code for _, code in rows]
    assert sorted(seen) == sorted(stored)


@pytest.mark.parametrize("page, status, code", [
    ("0", 422, "invalid_page"), ("-1", 422, "invalid_page"), ("abc", 400, "invalid_page"),
    ("1e3", 400, "invalid_page"), (str(10**12), 422, "invalid_page")])
def test_a_bad_page_is_refused(demo_site, page, status, code):
    for path in ("/parks/FGKFQ/ledger", "/parks/FGKFQ/requests"):
        response = demo_site.get(f"{path}?page={page}", headers=demo_site.headers)
        assert response.status_code == status and code in response.get_data(as_text=True)


def test_a_page_past_the_end_is_empty_and_a_bad_number_is_refused(demo_site):
    html, codes, nxt = _page(demo_site, "/parks/FGKFQ/ledger?page=99")
    assert codes == [] and nxt is None and "第 99 / 5 页" in html
    response = demo_site.get("/parks/FGKFQ/ledger?number=YH2025-abc", headers=demo_site.headers)
    assert response.status_code == 422
