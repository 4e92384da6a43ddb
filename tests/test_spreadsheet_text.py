"""No export runs stored text as a spreadsheet formula, and CSV layers still round-trip.

Every CSV or XLSX that gridmap writes goes through
:func:`geodata.files.spreadsheet_text`: the layer exports (``gridmap export``,
re-read by ``gridmap import``), every ``--format csv`` table of the CLI, the
ledgers and the weekly report.  The quote it adds is removed on import, so
a layer exported and imported again keeps its text exactly.
"""

import csv
import io

import pytest
import sqlalchemy as sa

from geodata.files import spreadsheet_text, spreadsheet_value
from geodata.formats import read_layer
from geodata.models import Enterprise, Grid, GridStaff, Hazard, Park
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.services.transfer import export_file
from geodata.storage import session_scope
from geodata.vocabulary import LAYERS
from tests.ledger_helpers import build_park, lonlat

#: Stored texts a spreadsheet would run (or that look like an escaped one).
FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+86 138", "-1+1", "@SUM(1)", " =1", "'=q",
            "''+a", "'", "plain 文本", "a=b"]
#: The user-text columns of every layer's export.
TEXT_COLUMNS = {"parks": (Park, ["name"]), "grids": (Grid, ["name"]),
                "enterprises": (Enterprise, ["name", "industry", "contact_name",
                                             "contact_phone"]),
                "staff": (GridStaff, ["name", "phone"]),
                "hazards": (Hazard, ["category", "description"])}


def formula_like(cell):
    return cell[:1] in ("\t", "\r", "\n") or cell.lstrip()[:1] in ("=", "+", "-", "@")


@pytest.mark.parametrize("value", FORMULAS + ["\t=1", "\n-1", "", "''", 12, None])
def test_spreadsheet_text_is_inert_and_reversible(value):
    cell = spreadsheet_text(value)
    assert not (isinstance(cell, str) and formula_like(cell))
    assert spreadsheet_value(cell) == value


def test_every_layer_has_its_text_columns_listed():
    assert set(TEXT_COLUMNS) == set(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_csv_export_is_inert_and_reads_back(engine, tmp_path, layer):
    build_park(engine, users=False)
    model, columns = TEXT_COLUMNS[layer]
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "T"),
                             point=ledger.parse_point(*lonlat("T-001")), category="其他",
                             description="x", actor=ledger.Actor("admin", "admin"))
        ids = session.execute(sa.select(model.id).order_by(model.id)).scalars().all()
        for n, row_id in enumerate(ids):
            session.execute(sa.update(model).where(model.id == row_id).values(
                {c: FORMULAS[(n + k) % len(FORMULAS)] for k, c in enumerate(columns)}))
    path = tmp_path / f"{layer}.csv"
    export_file(engine, layer, path, park_code=None if layer == "parks" else "T")
    rows = list(csv.DictReader(io.StringIO(path.read_text("utf-8"))))
    assert len(rows) == len(ids)
    for row in rows:
        for column in columns:
            assert not formula_like(row[column]), (column, row[column])
    frame, _ = read_layer(path, geometry=layer != "staff", crs="EPSG:4326")
    with session_scope(engine) as session:
        order = {"staff": [Grid.code, GridStaff.id], "parks": [Park.id],
                 "grids": [Grid.level, Grid.code]}.get(layer, [model.id])
        query = sa.select(*[getattr(model, c) for c in columns])
        if layer == "staff":
            query = query.join(Grid, GridStaff.grid_id == Grid.id)
        stored = [list(r) for r in session.execute(query.order_by(*order)).all()]
    if layer == "enterprises":  # exported in name order
        stored.sort(key=lambda r: r[0])
        assert sorted(frame[columns].values.tolist(), key=lambda r: r[0]) == stored
    else:
        assert frame[columns].values.tolist() == stored


def test_cli_csv_tables_are_inert(engine, runner):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        ledger.create_hazard(session, get_park(session, "T"),
                             point=ledger.parse_point(*lonlat("T-001")), category="其他",
                             description="=1+1", actor=ledger.Actor("admin", "admin"))
        session.execute(sa.update(Grid).values(name="@SUM(A1)"))
    result = runner("hazards", "list", "--park", "T", "--format", "csv")
    assert result.exit_code == 0, result.output
    cells = [c for row in csv.reader(io.StringIO(result.output)) for c in row]
    assert "'=1+1" in cells or "'@SUM(A1)" in cells
    assert not [c for c in cells if formula_like(c)]


def test_weekly_xlsx_park_name_is_text(engine, db_url):
    from openpyxl import load_workbook

    from webmap import create_app

    tokens = build_park(engine)
    with session_scope(engine, write=True) as session:
        session.execute(sa.update(Park).values(name="=HYPERLINK(\"http://x\",\"y\")"))
    app = create_app({"DATABASE_URL": db_url})
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {tokens['viewer']}"}
        week = client.get("/parks/T/weekly", headers=auth)
        assert week.status_code in (200, 302), week.status_code
        from geodata.periods import iso_week, local_today

        body = client.get(f"/parks/T/weekly/{iso_week(local_today())}.xlsx", headers=auth)
        assert body.status_code == 200, body.data[:300]
        book = load_workbook(io.BytesIO(body.data))
        cells = [c for sheet in book for row in sheet.iter_rows() for c in row
                 if c.value is not None]
        assert not [c.value for c in cells if c.data_type == "f"]
        assert "'=HYPERLINK(\"http://x\",\"y\")" in [c.value for c in cells]
    finally:
        app.extensions["gridmap.engine"].dispose()
