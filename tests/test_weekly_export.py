"""The weekly XLSX writes its rows as XML itself: the same bytes openpyxl writes, cell for cell.

The rows of the per-grid table and the review list (10^5 each in a big
park) are streamed into the saved sheets by :func:`geodata.weekly_export._save`
instead of through openpyxl's cell objects.  The oracle is openpyxl's
write-only sheet fed the same ``_cell`` values, as the export did before:
every part of the two files must be the same bytes, the creation time aside.
"""

import io
import re
import zipfile
from xml.etree.ElementTree import canonicalize

import openpyxl
import pytest
from openpyxl import Workbook, load_workbook

from geodata import weekly_export
from geodata.weekly_export import _cell, table_xlsx, to_xlsx

COLUMNS = [("a", "甲"), ("b", "乙"), ("c", "丙")]
#: Values a report's cell can hold, with every edge of what _cell and the XML change.
HOSTILE = [
    "A-001", "纺织厂", "x & <y> > z", " leading", "trailing ", "\u3000全角空格", "  ", "",
    "'quoted", "''=twice", "=1+1", "+86 138", "-3", "@SUM(A1)", "\tTab", "\nline", "a\nb",
    "a\rb", "ctl\x01\x0b\x1fend", "#N/A", "#REF!", "#DIV/0!", "#", "x" * 40_000,
    "emoji 😀", "\u202eRTL", None, True, False, 0, -7, 10**15 - 1, 10**15, 10**17, -10**17,
]


def _oracle(columns_rows, summary=None):
    """The workbook as openpyxl's write-only sheets write it (the export before)."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    if summary is not None:
        sheet = book.create_sheet("周汇报")
        sheet.column_dimensions["A"].width = 36
        sheet.column_dimensions["B"].width = 24
        for label, value in summary:
            sheet.append([_cell(label), _cell(value)])
    for title, columns, rows in columns_rows:
        sheet = book.create_sheet(title)
        sheet.freeze_panes = "A2"
        header = []
        for _, text in columns:
            cell = WriteOnlyCell(sheet, value=text)
            cell.font = Font(bold=True)
            header.append(cell)
        sheet.append(header)
        for row in rows:
            sheet.append([_cell(row.get(key)) for key, _ in columns])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _parts(data):
    """``{part name: bytes}`` of an XLSX, its creation and modification times blanked.

    openpyxl writes other (equivalent) bytes when lxml is installed, which
    this project does not need: with lxml the parts are compared as
    canonical XML (C14N) instead.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        parts = {name: book.read(name) for name in book.namelist()}
    parts["docProps/core.xml"] = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"T",
                                        parts["docProps/core.xml"])
    if openpyxl.LXML:
        parts = {name: canonicalize(xml.decode("utf-8")) for name, xml in parts.items()}
    return parts


def _rows(values):
    """Rows placing each value in every column, beside the others."""
    n = len(values)
    return [{"a": values[i], "b": values[(i + 1) % n], "c": values[(i + 2) % n]}
            for i in range(n)]


@pytest.mark.parametrize("at_once", [1, 7, 5000])
def test_a_table_is_the_same_bytes_as_openpyxl_writes(monkeypatch, at_once):
    monkeypatch.setattr(weekly_export, "_ROWS_AT_ONCE", at_once)
    rows = _rows(HOSTILE)
    ours = table_xlsx("表", COLUMNS, rows)
    assert _parts(ours) == _parts(_oracle([("表", COLUMNS, rows)]))
    sheet = load_workbook(io.BytesIO(ours))["表"]
    assert sheet.max_row == len(rows) + 1
    read = [c.value for c in sheet["A"][1:]]
    assert read[HOSTILE.index("=1+1")] == "'=1+1" and read[HOSTILE.index("#N/A")] == "#N/A"
    assert read[HOSTILE.index(True)] == "是" and read[HOSTILE.index(-7)] == -7


def test_a_sheet_with_other_values_is_written_by_openpyxl():
    """A float or a date (the assessment's scores, say) leaves the sheet to openpyxl."""
    from datetime import date

    rows = _rows(HOSTILE) + [{"a": 0.1, "b": date(2026, 11, 30), "c": 1.5e20}]
    assert _parts(table_xlsx("表", COLUMNS, rows)) == _parts(_oracle([("表", COLUMNS, rows)]))


def test_the_weekly_report_is_the_same_bytes_as_openpyxl_writes():
    grid = dict.fromkeys([k for k, _ in weekly_export.GRID_COLUMNS], 3)
    review = {k: v for (k, _), v in zip(weekly_export.REVIEW_COLUMNS, HOSTILE)}
    report = {
        "park": {"name": "=园区 & <名>", "code": "T"}, "week": "2026-W48",
        "monday": "2026-11-23", "sunday": "2026-11-29", "as_of": "2026-11-30",
        "hazards": dict.fromkeys(("found", "closed", "open", "overdue"), 2),
        "requests": {**dict.fromkeys(("received", "resolved", "open", "overdue", "follow_ups"),
                                     1), "satisfaction_rate": 0.5},
        "visits": {"done": 1, "due": 2, "rate": 0.5, "records": 3},
        "rates": {"x": {"name": "企业有格", "value": None}},
        "grids": [{**grid, "code": f"T-{i:03d}", "name": HOSTILE[i % len(HOSTILE)]}
                  for i in range(40)],
        "review": [review] * 3 + _rows(HOSTILE)[:5],
        "assignments": [{"id": 1, "kind": "hazard", "ref": "YH2026-0001", "owner": "王",
                         "deadline": "2026-12-01", "state": "open", "overdue": True,
                         "note": None}]}
    summary = [("园区", report["park"]["name"]), ("园区编码", "T"), ("周次", "2026-W48"),
               ("起止日期", "2026-11-23 至 2026-11-29"), ("统计截至", "2026-11-30"),
               *weekly_export.summary_rows(report)]
    expected = _oracle([("分网格", weekly_export.GRID_COLUMNS, report["grids"]),
                        ("周研判", weekly_export.REVIEW_COLUMNS, report["review"]),
                        ("周交办", weekly_export.ASSIGNMENT_COLUMNS, report["assignments"])],
                       summary)
    assert _parts(to_xlsx(report)) == _parts(expected)
