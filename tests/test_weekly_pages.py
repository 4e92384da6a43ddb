"""The weekly report, assessment and dashboard pages on both backends (scripted week)."""

import re

import pytest

from geodata.periods import iso_week, local_today
from tests.conftest import table_counts
from tests.ledger_helpers import PASSWORDS
from tests.test_weekly import WEEK, script_week
from webmap import create_app


@pytest.fixture
def client(db_url, engine):
    script_week(engine)
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    yield app.test_client()
    app.extensions["gridmap.engine"].dispose()


def _login(client, user):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": user, "password": PASSWORDS[user],
                                           "csrf_token": token, "next": ""})
    assert response.status_code == 302


def test_weekly_page_shows_the_report_and_its_files(client):
    assert "/login" in client.get(f"/parks/T/weekly/{WEEK}").headers["Location"]
    _login(client, "viewer")
    page = client.get(f"/parks/T/weekly/{WEEK}")
    assert page.status_code == 200
    assert "script-src 'none'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert "<th>发现隐患 hazards found</th><td>2</td>" in html
    assert "<th>满意率 satisfaction rate (满意+基本满意)/回访</th><td>50.0%</td>" in html
    assert "<th>走访完成 visits done / due</th><td>1 / 2</td>" in html
    assert "用工 &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'id="open-items-map" src="data:image/png;base64,' in html
    assert 'href="/parks/T/weekly/2026-W47"' in html and 'href="/parks/T/weekly/2026-W49"' in html
    pdf = client.get(f"/parks/T/weekly/{WEEK}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert "weekly-T-2026-W48.pdf" in pdf.headers["Content-Disposition"]
    xlsx = client.get(f"/parks/T/weekly/{WEEK}.xlsx")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    current = client.get("/parks/T/weekly").get_data(as_text=True)
    assert f"周汇报 Weekly report {iso_week(local_today())}" in current


@pytest.mark.parametrize("url, status", [
    ("/parks/T/weekly/2026-W54", 422), ("/parks/T/weekly/2026-48", 422),
    ("/parks/NOPE/weekly/2026-W48", 404), ("/parks/T/weekly/2026-W48.docx", 422),
    ("/parks/T/assessment?from=2026-11-30&to=2026-11-29", 422),
    ("/parks/T/assessment?from=yesterday&to=2026-11-29", 422),
    ("/parks/NOPE/assessment", 404),
])
def test_bad_page_input_is_refused_and_changes_nothing(client, engine, url, status):
    _login(client, "supervisor")
    before = table_counts(engine)
    response = client.get(url)
    assert response.status_code == status
    assert response.json["error"]["code"]
    assert table_counts(engine) == before


def test_assessment_page_is_for_supervisors(client):
    _login(client, "viewer")
    assert client.get("/parks/T/assessment").status_code == 403
    client.post("/logout")
    client = client.application.test_client()
    _login(client, "supervisor")
    page = client.get("/parks/T/assessment?from=2026-11-23&to=2026-11-29")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    row = re.search(r'<tr data-user="member">(.*?)</tr>', html, re.S).group(1)
    assert "1 / 1" in row and "50.0%" in row and '<td class="score">84.4</td>' in row


def test_dashboard_adds_requests_and_visit_coverage(client):
    _login(client, "viewer")
    html = client.get("/parks/T/dashboard").get_data(as_text=True)
    # Six requests, three 办结 or 回访 now; 回访 answers 满意, 不满意, 基本满意.
    assert 'id="request-resolution-rate">50.0%' in html
    assert 'id="satisfaction-rate">66.7%' in html
    # SQ2026-0003 (open) is overdue once its deadline 2026-12-05 has passed.
    late = 1 if local_today().isoformat() > "2026-12-05" else 0
    assert f'id="requests-overdue">{late}<' in html
    assert 'id="visit-coverage">' in html
    assert 'href="/parks/T/weekly"' in html
