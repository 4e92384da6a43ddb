"""The ledger export (隐患台账): CSV and XLSX with Chinese headers and every row."""

import csv
import io
from datetime import date

import openpyxl
import shapely
import sqlalchemy as sa

from geodata.ledger_export import HEADERS, ledger_rows
from geodata.models import Hazard, Supervision
from geodata.services import ledger
from geodata.services.demo_loader import load_demo
from geodata.services.parks import get_park, park_boundary
from geodata.storage import session_scope
from tests.ledger_helpers import ACTORS, build_park, future, lonlat
from webmap import create_app

TODAY = date(2025, 11, 30)


def _read_xlsx(path):
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["隐患台账"]
    rows = [list(r) for r in book["隐患台账"].iter_rows(values_only=True)]
    book.close()
    return rows


def test_demo_ledger_exports_every_row(runner, engine, tmp_path):
    load_demo(engine, today=TODAY)
    with session_scope(engine) as session:
        stored = dict(session.execute(sa.select(Hazard.code, Hazard.status)).all())
        closed = sum(1 for s in stored.values() if s == "closed")
    assert runner("hazards", "export", tmp_path / "ledger.xlsx", "--park",
                  "FGKFQ").exit_code == 0
    rows = _read_xlsx(tmp_path / "ledger.xlsx")
    assert rows[0] == HEADERS
    body = rows[1:]
    assert len(body) == len(stored) > 900
    code, status = HEADERS.index("隐患编号"), HEADERS.index("当前状态")
    assert {r[code] for r in body} == set(stored)
    names = {"found": "排查", "rectifying": "整改", "supervising": "督导", "closed": "销号"}
    assert all(names[stored[r[code]]] == r[status] for r in body)
    assert [r[0] for r in body] == list(range(1, len(body) + 1))

    assert runner("hazards", "export", tmp_path / "closed.csv", "--status",
                  "closed").exit_code == 0
    text = (tmp_path / "closed.csv").read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads it as UTF-8
    table = list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))
    assert table[0] == HEADERS and len(table) - 1 == closed


def test_csv_xlsx_over_http_and_formula_injection(db_url, engine, tmp_path):
    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat((150, 150))),
                             category="危化品", description="=HYPERLINK(\"http://x\")",
                             actor=ACTORS["inspector"])
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    client = app.test_client()
    assert client.get("/parks/T/ledger.xlsx").status_code == 302  # login first
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    response = client.get("/parks/T/ledger.xlsx", headers=auth)
    assert response.status_code == 200 and "attachment" in response.headers[
        "Content-Disposition"]
    (tmp_path / "x.xlsx").write_bytes(response.data)
    rows = _read_xlsx(tmp_path / "x.xlsx")
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1]))
    assert row["隐患描述"] == "'=HYPERLINK(\"http://x\")" and row["所属网格"] == "T-003"
    assert row["企业名称"] == "甲公司" and row["隐患等级"] == "一般"
    csv_text = client.get("/parks/T/ledger.csv", headers=auth).data.decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(csv_text)))[1][HEADERS.index("隐患类别")] == "危化品"
    page = client.get("/parks/T/ledger?status=found", headers=auth)
    assert page.status_code == 200 and "危化品" in page.get_data(as_text=True)
    assert client.get("/parks/T/ledger.pdf", headers=auth).status_code == 422
    app.extensions["gridmap.engine"].dispose()


def _closed_with_record(session, park, point, note):
    hazard = ledger.create_hazard(session, park, point=point, category="用电安全",
                                  description="配电箱未上锁", actor=ACTORS["inspector"])
    for target, kwargs in (("rectifying", {"deadline": future()}), ("supervising", {}),
                           ("closed", {"supervision": {"note": note}})):
        actor = ACTORS["supervisor" if target == "closed" else "inspector"]
        hazard = ledger.transition(session, hazard.id, target, actor=actor,
                                   expected_version=hazard.version, **kwargs)
    return hazard.id


def test_a_parks_ledger_reads_only_its_own_supervision_records(engine):
    """The closed hazards' supervisors come from the park's records, not every park's."""
    load_demo(engine, today=TODAY)
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        demo = get_park(session, "FGKFQ")
        other = _closed_with_record(session, demo, shapely.point_on_surface(park_boundary(demo)),
                                    "别的园区")
        mine = _closed_with_record(session, get_park(session, "T"),
                                   ledger.parse_point(*lonlat("T-002")), "已上锁")
    loaded = []
    with session_scope(engine) as session:
        listen = sa.event.listens_for(Supervision, "load")(
            lambda record, context: loaded.append(record.hazard_id))
        try:
            (row,), _ = ledger_rows(session, park=get_park(session, "T"))
            demo_rows, _ = ledger_rows(session, park=get_park(session, "FGKFQ"), status="closed")
        finally:
            sa.event.remove(Supervision, "load", listen)
    assert row["status"] == "销号" and row["supervisor"] == "supervisor"
    assert [r["supervisor"] for r in demo_rows if r["id"] == other] == ["supervisor"]
    assert loaded == [mine, other]
    # the closing times behind the dashboard and the re-checks are the park's own too
    with session_scope(engine) as session:
        closed = ledger.closing_times(get_park(session, "T"))
        assert session.execute(sa.select(closed.c.hazard_id)).scalars().all() == [mine]
