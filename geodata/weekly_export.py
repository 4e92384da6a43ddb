"""The weekly report (周汇报) as a file: XLSX, printable HTML or PDF, and its static map.

The HTML is rendered from package templates (``geodata/templates``) with
autoescaping, so every stored text is shown literally; the same body
template is included by the web page ``/parks/<code>/weekly/<week>``.  The
PDF holds the same tables, laid out by reportlab with the Chinese font of
:func:`geodata.pdf.chinese_font` embedded.  The map of the week's open
items is drawn on the server with matplotlib (Agg, no display) and
embedded as a ``data:`` PNG (HTML) or an image (PDF).  Files are
written with :func:`geodata.files.atomic_write`: whole or not at all.
"""

import base64
import io
import math
import operator
import re
from pathlib import Path

import numpy as np
import shapely

from geodata.errors import ValidationError
from geodata.files import atomic_write
from geodata.services.weekly import busiest

FORMATS = (".xlsx", ".html", ".pdf")
TEMPLATES = Path(__file__).parent / "templates"
#: Rows the printed tables (HTML page and file, PDF) show of the per-grid table and of the
#: review list: a city's park holds 10^5 grids, which no page or print can show.  The
#: grids with the most overdue and open items come first; the XLSX holds every row.
TABLE_ROWS = 200
#: The static map labels its grids with their codes only up to this many grids; more
#: labels overlap into an unreadable blot (and cost a text artist each).
MAP_LABELS = 150

#: (key, Chinese header) of the per-grid table, in column order.
GRID_COLUMNS = [
    ("code", "网格编码"), ("name", "网格名称"), ("hazards_found", "发现隐患"),
    ("hazards_closed", "销号隐患"), ("hazards_open", "未销号隐患"), ("hazards_overdue", "逾期隐患"),
    ("requests_received", "受理诉求"), ("requests_resolved", "办结诉求"),
    ("requests_open", "未办结诉求"), ("requests_overdue", "逾期诉求"), ("visits", "走访记录"),
    ("visits_done", "应走访已完成"), ("visits_due", "应走访"),
]
#: (key, Chinese header) of the 周研判 review list.
REVIEW_COLUMNS = [("kind", "类型"), ("ref", "编号"), ("grid", "网格"), ("reason", "研判事由"),
                  ("deadline", "期限"), ("text", "内容")]
#: (key, Chinese header) of the 周交办 assignment list.
ASSIGNMENT_COLUMNS = [("id", "交办号"), ("kind", "类型"), ("ref", "事项编号"), ("owner", "责任人"),
                      ("deadline", "办理期限"), ("state", "办理状态"), ("overdue", "是否逾期"),
                      ("note", "交办内容")]


def summary_rows(report):
    """The report's headline figures as ``(Chinese label, value)`` pairs, in print order."""
    h, q, v = report["hazards"], report["requests"], report["visits"]
    rows = [("发现隐患 hazards found", h["found"]), ("销号隐患 hazards closed", h["closed"]),
            ("未销号隐患 hazards open at week end", h["open"]),
            ("逾期隐患 hazards overdue at week end", h["overdue"]),
            ("受理诉求 requests received", q["received"]),
            ("办结诉求 requests resolved", q["resolved"]),
            ("未办结诉求 requests open at week end", q["open"]),
            ("逾期诉求 requests overdue at week end", q["overdue"]),
            ("回访 follow-ups", q["follow_ups"]),
            ("满意率 satisfaction rate (满意+基本满意)/回访", percent(q["satisfaction_rate"])),
            ("走访完成 visits done / due", f"{v['done']} / {v['due']}"),
            ("走访覆盖率 visit coverage", percent(v["rate"])),
            ("走访记录 visit records", v["records"])]
    for item in report["rates"].values():
        rows.append((item["name"], percent(item["value"])))
    return rows


def percent(value):
    """A rate 0..1 as ``"87.5%"``; None (no denominator) as ``"—"``."""
    return "—" if value is None else f"{value * 100:.1f}%"


def static_map(session, park, report):
    """PNG bytes of the park, the grids of ``report``'s table and its open items (EPSG:4326).

    The grids drawn are the rows of the per-grid table (a page, cut by
    :func:`printed`): in a park of 10^5 grids those are the busiest, where
    the open items are, and the park's outline shows where they lie; reading
    and drawing every grid's outline was most of a page's time.  A park
    with no more grids than a page has them all drawn.  The rings are one
    path (one artist, not a line per grid); codes are drawn only up to
    :data:`MAP_LABELS` grids.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import sqlalchemy as sa

    from geodata.models import Grid
    from geodata.models.base import to_shapes
    from geodata.services.parks import park_boundary

    boundary = park_boundary(park)
    codes = [g["code"] for g in report["grids"]]
    grids = session.execute(sa.select(Grid.code, Grid.geom).where(
        Grid.park_id == park.id, Grid.level == 1, Grid.active_to.is_(None),
        Grid.code.in_(codes))).all() if codes else []
    shapes = to_shapes([g.geom for g in grids])
    figure = Figure(figsize=(7, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _draw(axes, [boundary], color="#333333", width=1.6)
    _draw(axes, shapes, color="#7a8ca3", width=0.6)
    if len(grids) <= MAP_LABELS:
        points = shapely.point_on_surface(shapes)
        for grid, x, y in zip(grids, shapely.get_x(points), shapely.get_y(points)):
            # Grid codes are ASCII (geodata.domains), so the default font draws them.
            axes.annotate(grid.code, (x, y), fontsize=6, ha="center", color="#4a5a70")
    for kind, marker, colour in (("hazard", "o", "#e67e22"), ("request", "s", "#2e86de")):
        items = [i for i in report["open_items"] if i["kind"] == kind]
        for late in (False, True):
            chosen = [i for i in items if i["overdue"] == late]
            if chosen:
                axes.scatter([i["lon"] for i in chosen], [i["lat"] for i in chosen], s=24,
                             marker=marker, c="#c0392b" if late else colour, zorder=3,
                             edgecolors="white", linewidths=0.5)
    axes.set_aspect(1 / math.cos(math.radians(boundary.centroid.y)))
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw(axes, shapes, *, color, width):
    """Draw every ring (exterior and holes) of ``shapes`` as one path: one artist in all."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    rings = shapely.get_rings(shapely.get_parts(np.asarray(shapes, dtype=object)))
    if not len(rings):
        return
    coords, index = shapely.get_coordinates(rings, return_index=True)
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    codes[np.r_[0, np.flatnonzero(np.diff(index)) + 1]] = MplPath.MOVETO
    # add_artist, not add_patch: add_patch walks the path segment by segment for the
    # limits (seconds for 10^5 rings); the limits are the coordinates' own.
    axes.add_artist(PathPatch(MplPath(coords, codes), fill=False, edgecolor=color,
                              linewidth=width))
    axes.update_datalim(coords)
    axes.autoscale_view()


def map_data_url(png):
    """A ``data:`` URL of PNG bytes (the pages' CSP allows ``img-src data:``)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True))


def printed(report, rows=TABLE_ROWS):
    """``report`` with its per-grid table and review list cut to ``rows`` rows each.

    What the HTML and PDF show: when the park has more level-1 grids than
    ``rows``, the grids with the most overdue, then open, then new items
    come first (:func:`geodata.services.weekly.busiest`).  ``grids_left_out``
    and ``review_left_out`` count the rows not shown; the XLSX holds them
    all.  A report built as a page (``weekly_report(..., rows=)``) is cut
    already and counts its rows in ``grids_total`` and ``review_total``.
    """
    grids = report["grids"]
    if len(grids) > rows:
        grids = sorted(grids, key=busiest)[:rows]
    review = report["review"][:rows]
    return {**report, "grids": grids,
            "grids_left_out": report.get("grids_total", len(report["grids"])) - len(grids),
            "review": review,
            "review_left_out": report.get("review_total", len(report["review"])) - len(review)}


def template_context(report, map_png, rows=TABLE_ROWS):
    """What the report templates (print and web page) need, tables cut by :func:`printed`."""
    return {"r": printed(report, rows), "summary": summary_rows(report), "percent": percent,
            "grid_columns": GRID_COLUMNS, "review_columns": REVIEW_COLUMNS,
            "assignment_columns": ASSIGNMENT_COLUMNS, "display": display,
            "left_out_note": left_out_note,
            "map_url": map_data_url(map_png) if map_png else None}


def to_html(report, map_png=None, rows=TABLE_ROWS):
    """The printable HTML document of the report (str), tables cut to ``rows`` rows."""
    return _environment().get_template("weekly_print.html").render(
        **template_context(report, map_png, rows))


def display(value):
    """A cell's text: yes/no as 是/否, None as empty, rates as they come."""
    if isinstance(value, bool):
        return "是" if value else "否"
    return "" if value is None else value


def _cell(value):
    from geodata.ledger_export import _xlsx_cell

    # Counters (most cells of a big park's sheets) are plain ints: nothing to make safe.
    return value if type(value) is int else _xlsx_cell(display(value))


#: Texts openpyxl stores as error cells (``t="e"``), not as text.
_ERROR_CODES = frozenset(('#NULL!', '#DIV/0!', '#VALUE!', '#REF!', '#NAME?', '#NUM!', '#N/A'))
#: Values :func:`_cell_xml` writes itself; a sheet holding anything else (a float, a date)
#: is written by openpyxl cell by cell.
_PLAIN = (int, str, bool, type(None))
#: Rows turned into XML at a time: the sheet is streamed into the file, never whole.
_ROWS_AT_ONCE = 5000
#: Text that _cell and the XML leave as it is: no leading quote, blank, formula start
#: (= + - @, spreadsheet_text) or # (error codes), no trailing blank (xml:space), and
#: none of & < > (escaped) or the control characters XML cannot hold (_xlsx_cell).
_PLAIN_TEXT = re.compile(r"[^\s'=+\-@#&<>\x00-\x08\x0b\x0c\x0e-\x1f]"
                         r"[^&<>\x00-\x08\x0b\x0c\x0e-\x1f]*(?<!\s)")


def _text_xml(text):
    """An inline string's ``<is>`` element as openpyxl (without lxml) writes it."""
    stripped = text.strip()
    space = ' xml:space="preserve"' if stripped and text != stripped else ""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<is><t{space}>{text}</t></is>"


def _cell_xml(ref, value):
    """The ``<c>`` element of one data cell ``ref`` (``"B7"``).

    Byte for byte what openpyxl's write-only sheet writes for
    ``_cell(value)``; ``value`` is one of :data:`_PLAIN`.
    """
    value = _cell(value)
    if type(value) is int:
        # openpyxl formats numbers with "%.16g" (whole numbers up to 16 digits as str()).
        return f'<c r="{ref}" t="n"><v>{"%.16g" % value}</v></c>'
    value = value[:32767]  # openpyxl's cap on a cell's text
    if value == "":
        return f'<c r="{ref}" t="inlineStr" />'
    if value in _ERROR_CODES:
        return f'<c r="{ref}" t="e"><v>{value}</v></c>'
    # _cell never leaves a formula: spreadsheet_text quotes a leading "=".
    return f'<c r="{ref}" t="inlineStr">{_text_xml(value)}</c>'


def _rows_xml(keys, rows, first):
    """The ``<row>`` elements of ``rows`` (dicts), numbered from ``first``, as one str.

    Built column by column (one comprehension per column, the counters
    inline) instead of a cell object and an XML element per cell, which
    were 90 % of a 10^5-grid park's XLSX.
    """
    from openpyxl.utils import get_column_letter

    numbers = range(first, first + len(rows))
    plain = _PLAIN_TEXT.fullmatch
    columns = []
    for i, key in enumerate(keys, 1):
        letter = get_column_letter(i)
        values = [row.get(key) for row in rows]
        # Counters and names that need nothing done inline; the rest through _cell_xml.
        columns.append([
            f'<c r="{letter}{n}" t="n"><v>{v}</v></c>'
            if type(v) is int and -10**15 < v < 10**15 else
            f'<c r="{letter}{n}" t="inlineStr"><is><t>{v}</t></is></c>'
            if type(v) is str and len(v) <= 32767 and plain(v) else
            _cell_xml(f"{letter}{n}", v)
            for n, v in zip(numbers, values)])
    return "".join(f'<row r="{n}">{"".join(cells)}</row>'
                   for n, cells in zip(numbers, zip(*columns)))


def _sheet(book, title, columns, rows):
    """Append sheet ``title`` to write-only ``book``: a bold, frozen header, then ``rows``.

    Returns ``(sheet, rows left)``: the rows :func:`_save` writes into the
    saved sheet (:func:`_rows_xml`) when every value is an int or text
    (:data:`_PLAIN`), else none (openpyxl wrote them).  A park of 10^5
    grids writes a row per grid into two sheets: 13 s with openpyxl's
    write-only cells, half a minute as an ordinary workbook.
    """
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    sheet = book.create_sheet(title)
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for _, text in columns:
        cell = WriteOnlyCell(sheet, value=text)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    keys = [key for key, _ in columns]
    types = set()
    for key in keys:
        types.update(map(type, map(operator.methodcaller("get", key), rows)))
    if types <= set(_PLAIN):
        return sheet, (keys, rows)
    for row in rows:
        sheet.append([_cell(row.get(key)) for key in keys])
    return sheet, None


def _save(book, sheets):
    """XLSX bytes of ``book`` with the rows :func:`_sheet` left for each of ``sheets``.

    openpyxl saves the workbook with each such sheet's header row; the rows
    are then streamed into that sheet's XML before ``</sheetData>`` (after
    the header: openpyxl writes no dimension or anything else that counts
    rows), every other part copied as it is.
    """
    import zipfile

    buffer = io.BytesIO()
    book.save(buffer)
    left = {sheet.path.lstrip("/"): rest for sheet, rest in sheets if rest is not None}
    if not left:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as saved, zipfile.ZipFile(out, "w") as book_file:
        for info in saved.infolist():
            part = zipfile.ZipInfo(info.filename, info.date_time)
            part.compress_type, part.external_attr = info.compress_type, info.external_attr
            data = saved.read(info)
            if info.filename not in left:
                book_file.writestr(part, data)
                continue
            keys, rows = left[info.filename]
            head, tail = data.split(b"</sheetData>", 1)
            with book_file.open(part, "w", force_zip64=True) as sheet:
                sheet.write(head)
                for start in range(0, len(rows), _ROWS_AT_ONCE):
                    sheet.write(_rows_xml(keys, rows[start:start + _ROWS_AT_ONCE],
                                          start + 2).encode("utf-8"))
                sheet.write(b"</sheetData>" + tail)
    return out.getvalue()


def table_xlsx(title, columns, rows):
    """XLSX bytes of one sheet ``title``: a bold, frozen header row of ``columns`` and ``rows``.

    ``columns`` are ``(key, header)`` pairs; ``rows`` are dicts.
    """
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    return _save(book, [_sheet(book, title, columns, rows)])


def to_xlsx(report):
    """XLSX bytes: sheets 周汇报 (figures), 分网格 (per grid), 周研判 and 周交办."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("周汇报")
    # Widths are set before any row: a write-only sheet writes its columns first.
    sheet.column_dimensions["A"].width = 36
    sheet.column_dimensions["B"].width = 24
    # Every value goes through _cell, as in the other sheets: openpyxl stores a text that
    # starts with "=" as a formula, and the park's name is user text.
    for label, value in [("园区", report["park"]["name"]), ("园区编码", report["park"]["code"]),
                         ("周次", report["week"]),
                         ("起止日期", f"{report['monday']} 至 {report['sunday']}"),
                         ("统计截至", report["as_of"]), *summary_rows(report)]:
        sheet.append([_cell(label), _cell(value)])
    return _save(book, [_sheet(book, title, columns, rows) for title, columns, rows in (
        ("分网格", GRID_COLUMNS, report["grids"]), ("周研判", REVIEW_COLUMNS, report["review"]),
        ("周交办", ASSIGNMENT_COLUMNS, report.get("assignments", [])))])


def check_format(path):
    """Return the lower-case suffix of ``path`` or raise 422 ``unsupported_format``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValidationError(f"the weekly report is written as {', '.join(FORMATS)}, not "
                              f"{suffix or 'a name without extension'!r}",
                              code="unsupported_format", details={"field": "out"})
    return suffix


def render(session, park, report, suffix, rows=TABLE_ROWS):
    """The report's bytes in format ``suffix`` (``.xlsx``, ``.html`` or ``.pdf``).

    The HTML and PDF tables hold at most ``rows`` rows (:func:`printed`); the
    XLSX, a data file, holds every grid.
    """
    if suffix == ".xlsx":
        return to_xlsx(report)
    png = static_map(session, park, printed(report, rows))
    if suffix == ".html":
        return to_html(report, png, rows).encode("utf-8")
    return to_pdf(report, png, rows)


def _tables(report):
    """The report's tables as ``(title, headers, rows of str, note)``, in print order.

    ``report`` is cut by :func:`printed`; the note says how many rows were left out.
    """
    out = [("汇总 Figures", None, [[label, str(value)] for label, value in summary_rows(report)],
            None)]
    for title, columns, rows, left_out in (
            ("分网格 By grid", GRID_COLUMNS, report["grids"], report["grids_left_out"]),
            ("周研判 Review list", REVIEW_COLUMNS, report["review"], report["review_left_out"]),
            ("周交办 Assignments", ASSIGNMENT_COLUMNS, report.get("assignments", []), 0)):
        out.append((title, [h for _, h in columns],
                    [[str(display(row.get(k))) for k, _ in columns] for row in rows],
                    left_out_note(left_out) if left_out else None))
    return out


def left_out_note(count):
    """The line under a cut table: how many rows are not shown, and where they are."""
    return f"另有 {count} 行未列出（完整数据见 XLSX）· {count} more rows are in the XLSX file."


def to_pdf(report, map_png=None, rows=TABLE_ROWS):
    """PDF bytes of the report (A4 landscape, reportlab) with Noto Sans CJK SC embedded.

    Cell text goes into reportlab Paragraphs escaped, so stored text is
    shown literally and never read as Paragraph markup.
    """
    from xml.sax.saxutils import escape

    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (Image, Paragraph, SimpleDocTemplate, Spacer, Table,
                                    TableStyle)

    from geodata.pdf import chinese_font

    tables = _tables(printed(report, rows))
    title = (f"{report['park']['name']}（{report['park']['code']}）周汇报 Weekly report "
             f"{report['week']}")
    period = (f"{report['monday']} 至 {report['sunday']}（Asia/Shanghai）· 统计截至 as of "
              f"{report['as_of']}")
    legend = "本周未办结事项 Open items: 橙色圆点 隐患，蓝色方块 诉求，红色 逾期"
    texts = [title, period, legend]
    for name, headers, cells, note in tables:
        texts += [name, *(headers or []), *(cell for row in cells for cell in row), note or ""]
    font = chinese_font(texts)
    bold = chinese_font(texts, bold=True)
    body = ParagraphStyle("body", fontName=font, fontSize=8, leading=10, wordWrap="CJK")
    head = ParagraphStyle("head", parent=body, fontName=bold)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=14, leading=18, wordWrap="CJK")
    h2 = ParagraphStyle("h2", fontName=bold, fontSize=11, leading=15, spaceBefore=8,
                        spaceAfter=3)
    story = [Paragraph(escape(title), h1), Paragraph(escape(period), body)]
    width = landscape(A4)[0] - 24 * mm
    for i, (name, headers, cells, note) in enumerate(tables):
        story.append(Paragraph(escape(name), h2))
        data = ([[Paragraph(escape(h), head) for h in headers]] if headers else []) + [
            [Paragraph(escape(cell), body) for cell in row] for row in cells]
        if not data:
            story.append(Paragraph("无 None.", body))
        else:
            table = Table(data, repeatRows=1 if headers else 0,
                          colWidths=[width / len(data[0])] * len(data[0]))
            table.setStyle(TableStyle([
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
                ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            story.append(table)
        if note:
            story.append(Paragraph(escape(note), body))
        if i == 0 and map_png:
            story += [Paragraph(escape(legend), h2),
                      Image(io.BytesIO(map_png), width=width * 0.6,
                            height=width * 0.6 * 5 / 7)]
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm,
                      topMargin=14 * mm, bottomMargin=14 * mm, title=title,
                      author="gridmap").build(story + [Spacer(1, 1)])
    return buffer.getvalue()


def write_report(session, park, report, path):
    """Write ``report`` to ``path`` in the format its suffix names, atomically.

    Raises
    ------
    ValidationError
        422 ``unsupported_format``, or ``unwritable_output`` (:func:`write_file`).
    """
    write_file(path, render(session, park, report, check_format(path)))


def write_file(path, data):
    """Write ``data`` (bytes) to ``path`` whole or not at all.

    Raises
    ------
    ValidationError
        422 ``unwritable_output`` naming the file and the reason (missing
        folder, no permission, full disk); the old file, if any, is kept.
    """
    with atomic_write(path) as temp:
        temp.write_bytes(data)
