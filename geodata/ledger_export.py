"""Export the hazard ledger (隐患台账) as CSV or XLSX with Chinese headers.

CSV is UTF-8 with a byte-order mark so that Excel (and WPS) detect the
encoding; XLSX is written with openpyxl, one sheet ``隐患台账`` with a frozen
header row.  Both hold every hazard matching the filters, in ledger order.
The writers (:func:`to_csv`, :func:`to_xlsx`, :func:`write_export`) take the
columns, so the request ledger (:mod:`geodata.request_export`) uses them too,
formula neutralising included.
"""

import csv
import functools
import io
from pathlib import Path

import sqlalchemy as sa

from geodata.errors import ValidationError
from geodata.files import atomic_write, spreadsheet_text
from geodata.models import Hazard, Supervision
from geodata.periods import local_today
from geodata.services import ledger
from geodata.workflow import ESCALATION_NAMES, STATE_NAMES

LEVEL_NAMES = {"general": "一般", "major": "重大"}

#: (header, key) in column order.
COLUMNS = [
    ("序号", "seq"), ("隐患编号", "code"), ("园区", "park"), ("所属网格", "grid_code"),
    ("网格名称", "grid_name"), ("企业名称", "enterprise"), ("统一社会信用代码", "credit_code"),
    ("隐患类别", "category"), ("隐患等级", "level"), ("隐患描述", "description"),
    ("发现日期", "found_date"), ("整改期限", "deadline"), ("当前状态", "status"),
    ("是否逾期", "overdue"), ("督办层级", "escalation"), ("督导人", "supervisor"),
    ("督导时间", "checked_at"), ("销号时间", "closed_at"), ("经度", "lon"), ("纬度", "lat"),
]
HEADERS = [h for h, _ in COLUMNS]


def listed(list_page, window=None):
    """Entries of a ledger list function, all of them or one ``window``.

    ``list_page(limit=, offset=)`` returns ``(entries, total)``
    (:func:`geodata.services.ledger.list_hazards`,
    :func:`geodata.services.requests.list_requests`).  ``window`` is
    ``(offset, limit)`` for one page of a table; without it every entry is
    read, a thousand at a time (an export holds the whole ledger).

    Returns ``(entries, total, first)``: ``first`` is the ledger's row number
    (序号) of the first entry.
    """
    if window is not None:
        offset, limit = window
        entries, total = list_page(limit=limit, offset=offset)
        return entries, total, offset + 1
    entries, offset = [], 0
    while True:
        page, total = list_page(limit=ledger.MAX_PAGE, offset=offset)
        entries.extend(page)
        offset += len(page)
        if not page or offset >= total:
            return entries, total, 1


def ledger_rows(session, *, park=None, status=None, overdue=None, code=None, today=None,
                grid_ids=None, window=None):
    """Return ``(rows, total)``: the ledger rows matching the filters.

    Rows are dicts keyed as :data:`COLUMNS`, plus the hazard ``id``: all of
    them, or one ``window`` (:func:`listed`).  ``grid_ids`` (a grid member's)
    keeps only hazards in those grids.
    """
    today = today or local_today()
    hazards, total, first = listed(functools.partial(
        ledger.list_hazards, session, park=park, status=status, overdue=overdue, code=code,
        today=today, grid_ids=grid_ids), window)
    items = ledger.hazard_dicts(session, hazards, today=today)
    passed = {}
    if hazards:
        # Only the listed hazards' records (the last passed one counts): a park's ledger
        # must not read every park's supervision history.
        query = sa.select(Supervision).where(Supervision.outcome == "passed").order_by(
            Supervision.id)
        if park is not None:
            query = query.join(Hazard, Hazard.id == Supervision.hazard_id).where(
                Hazard.park_id == park.id)
        for record in session.execute(query).scalars():
            passed[record.hazard_id] = record
    rows = []
    for seq, item in enumerate(items, first):
        record = passed.get(item["id"]) if item["status"] == "closed" else None
        rows.append({
            "id": item["id"],  # not a column: the ledger page finds the hazard's photos by it
            "seq": seq, "code": item["code"], "park": item["park"],
            "grid_code": (item["grid"] or {}).get("code", ""),
            "grid_name": (item["grid"] or {}).get("name", ""),
            "enterprise": (item["enterprise"] or {}).get("name", ""),
            "credit_code": (item["enterprise"] or {}).get("credit_code", ""),
            "category": item["category"], "level": LEVEL_NAMES[item["level"]],
            "description": item["description"], "found_date": item["found_date"],
            "deadline": item["deadline"] or "", "status": STATE_NAMES[item["status"]],
            "overdue": "是" if item["overdue"] else "否",
            "escalation": ESCALATION_NAMES[item["escalation"]],
            "supervisor": record.supervisor if record else "",
            "checked_at": record.checked_at.strftime("%Y-%m-%d %H:%M") if record else "",
            "closed_at": (item["closed_at"] or "")[:16].replace("T", " "),
            "lon": item["lon"], "lat": item["lat"],
        })
    return rows, total


def to_csv(rows, columns=COLUMNS):
    """Return the ledger as CSV bytes (UTF-8 with BOM); ``columns`` are (header, key) pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([h for h, _ in columns])
    for row in rows:
        writer.writerow([spreadsheet_text(row[k]) for _, k in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _xlsx_cell(value):
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    # XML 1.0 cannot hold most C0 control characters: openpyxl raises on them, so a
    # stored note holding one would make the whole export fail.
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return spreadsheet_text(value)


def to_xlsx(rows, title="隐患台账", columns=COLUMNS, widths=(6, 14, 8, 14, 12, 24, 22, 10, 8, 30)):
    """Return the ledger as XLSX bytes (one sheet, frozen header; column widths in characters)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append([h for h, _ in columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_xlsx_cell(row[k]) for _, k in columns])
    sheet.freeze_panes = "A2"
    for letter, width in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", widths):
        sheet.column_dimensions[letter].width = width
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def export_suffix(path):
    """Return ``.csv`` or ``.xlsx`` for ``path``; checked before any row is read.

    Raises
    ------
    ValidationError
        422 ``unsupported_format`` for another extension.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ValidationError(f"export to .csv or .xlsx, not {suffix or 'no extension'!r}",
                              code="unsupported_format")
    return suffix


def write_export(path, rows, *, columns=COLUMNS, title="隐患台账", **xlsx):
    """Write ``rows`` to ``path`` (``.csv`` or ``.xlsx``, replaced atomically); return the count."""
    suffix = export_suffix(path)
    with atomic_write(Path(path)) as temp:
        temp.write_bytes(to_csv(rows, columns) if suffix == ".csv"
                         else to_xlsx(rows, title, columns, **xlsx))
    return len(rows)


def export_ledger(session, path, **filters):
    """Write the ledger to ``path`` (``.csv`` or ``.xlsx``); return the number of rows.

    Raises
    ------
    ValidationError
        422 ``unsupported_format`` for another extension.
    """
    export_suffix(path)
    return write_export(path, ledger_rows(session, **filters)[0])
