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
from pathlib import Path

from geodata.errors import ValidationError
from geodata.files import atomic_write

FORMATS = (".xlsx", ".html", ".pdf")
TEMPLATES = Path(__file__).parent / "templates"

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
    """PNG bytes of the park, its level-1 grids and the week's open items (EPSG:4326 axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from geodata.services.parks import park_boundary
    from geodata.services.weekly import level1_grids
    from geodata.models.base import to_shapes

    boundary = park_boundary(park)
    grids, _ = level1_grids(session, park)
    figure = Figure(figsize=(7, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _draw(axes, boundary, color="#333333", width=1.6)
    for grid, shape in zip(grids, to_shapes([g.geom for g in grids])):
        _draw(axes, shape, color="#7a8ca3", width=0.6)
        point = shape.representative_point()
        # Grid codes are ASCII (geodata.domains), so the default font draws them.
        axes.annotate(grid.code, (point.x, point.y), fontsize=6, ha="center", color="#4a5a70")
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


def _draw(axes, shape, *, color, width):
    for polygon in getattr(shape, "geoms", [shape]):
        for ring in (polygon.exterior, *polygon.interiors):
            xs, ys = ring.xy
            axes.plot(xs, ys, color=color, linewidth=width)


def map_data_url(png):
    """A ``data:`` URL of PNG bytes (the pages' CSP allows ``img-src data:``)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(
        default=True, default_for_string=True))


def template_context(report, map_png):
    """What the report templates (print and web page) need."""
    return {"r": report, "summary": summary_rows(report), "percent": percent,
            "grid_columns": GRID_COLUMNS, "review_columns": REVIEW_COLUMNS,
            "assignment_columns": ASSIGNMENT_COLUMNS, "display": display,
            "map_url": map_data_url(map_png) if map_png else None}


def to_html(report, map_png=None):
    """The printable HTML document of the report (str)."""
    return _environment().get_template("weekly_print.html").render(
        **template_context(report, map_png))


def display(value):
    """A cell's text: yes/no as 是/否, None as empty, rates as they come."""
    if isinstance(value, bool):
        return "是" if value else "否"
    return "" if value is None else value


def _cell(value):
    from geodata.ledger_export import _xlsx_cell

    return _xlsx_cell(display(value))


def _sheet(book, title, columns, rows):
    from openpyxl.styles import Font

    sheet = book.create_sheet(title)
    sheet.append([header for _, header in columns])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_cell(row.get(key)) for key, _ in columns])
    sheet.freeze_panes = "A2"
    return sheet


def table_xlsx(title, columns, rows):
    """XLSX bytes of one sheet ``title``: a bold, frozen header row of ``columns`` and ``rows``.

    ``columns`` are ``(key, header)`` pairs; ``rows`` are dicts.
    """
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    _sheet(book, title, columns, rows)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def to_xlsx(report):
    """XLSX bytes: sheets 周汇报 (figures), 分网格 (per grid), 周研判 and 周交办."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "周汇报"
    # Every value goes through _cell, as in the other sheets: openpyxl stores a text that
    # starts with "=" as a formula, and the park's name is user text.
    for label, value in [("园区", report["park"]["name"]), ("园区编码", report["park"]["code"]),
                         ("周次", report["week"]),
                         ("起止日期", f"{report['monday']} 至 {report['sunday']}"),
                         ("统计截至", report["as_of"]), *summary_rows(report)]:
        sheet.append([_cell(label), _cell(value)])
    sheet.column_dimensions["A"].width = 36
    sheet.column_dimensions["B"].width = 24
    for title, columns, rows in (("分网格", GRID_COLUMNS, report["grids"]),
                                 ("周研判", REVIEW_COLUMNS, report["review"]),
                                 ("周交办", ASSIGNMENT_COLUMNS, report.get("assignments", []))):
        _sheet(book, title, columns, rows)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def check_format(path):
    """Return the lower-case suffix of ``path`` or raise 422 ``unsupported_format``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValidationError(f"the weekly report is written as {', '.join(FORMATS)}, not "
                              f"{suffix or 'a name without extension'!r}",
                              code="unsupported_format", details={"field": "out"})
    return suffix


def render(session, park, report, suffix):
    """The report's bytes in format ``suffix`` (``.xlsx``, ``.html`` or ``.pdf``)."""
    if suffix == ".xlsx":
        return to_xlsx(report)
    png = static_map(session, park, report)
    if suffix == ".html":
        return to_html(report, png).encode("utf-8")
    return to_pdf(report, png)


def _tables(report):
    """The report's tables as ``(title, headers, rows of str)``, in print order."""
    out = [("汇总 Figures", None, [[label, str(value)] for label, value in summary_rows(report)])]
    for title, columns, rows in (("分网格 By grid", GRID_COLUMNS, report["grids"]),
                                 ("周研判 Review list", REVIEW_COLUMNS, report["review"]),
                                 ("周交办 Assignments", ASSIGNMENT_COLUMNS,
                                  report.get("assignments", []))):
        out.append((title, [h for _, h in columns],
                    [[str(display(row.get(k))) for k, _ in columns]
                     for row in rows]))
    return out


def to_pdf(report, map_png=None):
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

    tables = _tables(report)
    title = (f"{report['park']['name']}（{report['park']['code']}）周汇报 Weekly report "
             f"{report['week']}")
    period = (f"{report['monday']} 至 {report['sunday']}（Asia/Shanghai）· 统计截至 as of "
              f"{report['as_of']}")
    legend = "本周未办结事项 Open items: 橙色圆点 隐患，蓝色方块 诉求，红色 逾期"
    texts = [title, period, legend]
    for name, headers, rows in tables:
        texts += [name, *(headers or []), *(cell for row in rows for cell in row)]
    font = chinese_font(texts)
    bold = chinese_font(texts, bold=True)
    body = ParagraphStyle("body", fontName=font, fontSize=8, leading=10, wordWrap="CJK")
    head = ParagraphStyle("head", parent=body, fontName=bold)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=14, leading=18, wordWrap="CJK")
    h2 = ParagraphStyle("h2", fontName=bold, fontSize=11, leading=15, spaceBefore=8,
                        spaceAfter=3)
    story = [Paragraph(escape(title), h1), Paragraph(escape(period), body)]
    width = landscape(A4)[0] - 24 * mm
    for i, (name, headers, rows) in enumerate(tables):
        story.append(Paragraph(escape(name), h2))
        data = ([[Paragraph(escape(h), head) for h in headers]] if headers else []) + [
            [Paragraph(escape(cell), body) for cell in row] for row in rows]
        if not data:
            story.append(Paragraph("无 None.", body))
        else:
            table = Table(data, repeatRows=1 if headers else 0,
                          colWidths=[width / len(data[0])] * len(data[0]))
            table.setStyle(TableStyle([
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
                ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            story.append(table)
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
    try:
        with atomic_write(path) as temp:
            temp.write_bytes(data)
    except OSError as exc:
        raise ValidationError(f"cannot write {path}: {exc.strerror or exc}",
                              code="unwritable_output", details={"field": "out"}) from None
