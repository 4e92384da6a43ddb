"""Grid boards (网格员信息公示牌): one A4 page per grid, drawn with reportlab.

A board shows the grid's code and name, a small map of the grid inside the
park, the published staff (网格长 and members) with their phones, the park's
service line and a QR code of the grid's public page.  This module only
draws; :mod:`geodata.services.boards` reads the data.

The map is drawn once per park, not once per board: matplotlib renders the
park (boundary, holes, level-1 grid lines) to one PNG in the park's metric
CRS, stored once in the PDF as a form XObject that every page shows; each
page then draws its own grid over it as a vector path in the same frame.
Coordinates are metres of the park's metric CRS (:mod:`geodata.crs`), so the
map keeps true proportions.
"""

import io
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import numpy as np
import shapely

from geodata.errors import ValidationError

#: A4 portrait in points, and the page margin.
PAGE = (595.28, 841.89)
MARGIN = 40.0
#: The map's box on the page (points) and the base image's resolution.
MAP_BOX = (PAGE[0] - 2 * MARGIN, 290.0)
MAP_DPI = 200
#: The name of the park map's form XObject in the PDF.
PARK_FORM = "gridmap-park-map"
#: Colours: the board's header band, the highlighted grid, grid lines.
RED = (0.75, 0.09, 0.11)
HIGHLIGHT = (0.86, 0.15, 0.15)
#: Staff rows that fit under the map; more are summarised in one line.
MAX_ROWS = 11
#: Fixed text of every board.
TITLE = "网格员信息公示牌"
MOTTO = "企业有格 · 格中有人 · 事在格办"
LABELS = ("职务", "姓名", "电话", "园区服务热线", "扫码查看本网格信息", "暂无公示的网格员",
          "上级网格", "有事找网格员，服务企业零距离")


@dataclass
class Board:
    """One grid's board: the text it shows and its geometry (metres, park's metric CRS)."""

    code: str
    name: str
    level: int
    parent_code: str
    geometry: object
    staff: list = field(default_factory=list)  # (title, name, phone), chief first
    url: str = ""


@dataclass
class BoardSet:
    """The boards of one park and what they share: names, service line, the park map."""

    park_code: str
    park_name: str
    service_line: str
    boundary: object  # park boundary, metric
    cells: np.ndarray  # level-1 grids, metric: the lines of the base map
    boards: list


def public_url(base_url, park_code, grid_code):
    """The grid page's address under ``base_url`` (``/parks/<code>/grids/<grid>``)."""
    return (f"{base_url}/parks/{quote(park_code, safe='')}/grids/"
            f"{quote(grid_code, safe='')}")


def check_base_url(value):
    """Return the service's public base URL without a trailing slash, or raise 422.

    It must be ``http://`` or ``https://`` with a host, and no user, query
    or fragment: it is printed on paper and scanned by phones.

    Raises
    ------
    ValidationError
        ``invalid_base_url`` naming what is wrong.
    """
    text = (value or "").strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        parts = None
    problem = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "must be an http:// or https:// address with a host"
    elif parts.username or parts.password or parts.query or parts.fragment:
        problem = "must not hold a user, password, query or fragment"
    elif any(c.isspace() or ord(c) < 32 for c in text):
        problem = "must not contain spaces or control characters"
    if problem:
        raise ValidationError(f"base URL {value!r} {problem} (e.g. https://gridmap.example.cn)",
                              code="invalid_base_url", details={"field": "base_url"})
    return text.rstrip("/")


class ParkMap:
    """The park drawn once to a PNG, and the transform from metres to its frame.

    Parameters
    ----------
    boundary : shapely geometry
        The park boundary in the metric CRS (metres).
    cells : numpy.ndarray of shapely geometries
        Grid cells to draw as thin lines (metres).
    box : (float, float)
        Width and height (points) the image must fit, keeping true proportions.
    """

    def __init__(self, boundary, cells, box=MAP_BOX, dpi=MAP_DPI):
        minx, miny, maxx, maxy = boundary.bounds
        pad = 0.04 * max(maxx - minx, maxy - miny)
        minx, miny, maxx, maxy = minx - pad, miny - pad, maxx + pad, maxy + pad
        scale = min(box[0] / (maxx - minx), box[1] / (maxy - miny))  # points per metre
        self.size = ((maxx - minx) * scale, (maxy - miny) * scale)
        self.extent = (minx, miny, maxx, maxy)
        self.scale = scale
        self.png = _render_base(boundary, cells, self.extent, self.size, dpi)

    def to_page(self, coords, origin):
        """Page points of metric ``coords`` (n×2) for a map whose lower-left is ``origin``."""
        return np.column_stack([origin[0] + (coords[:, 0] - self.extent[0]) * self.scale,
                                origin[1] + (coords[:, 1] - self.extent[1]) * self.scale])


def _render_base(boundary, cells, extent, size, dpi):
    """The base map as PNG bytes: park filled, holes white, grid lines; no axes, no margins."""
    import geopandas as gpd
    from matplotlib.figure import Figure  # not pyplot: no global state, no display needed

    figure = Figure(figsize=(size[0] / 72, size[1] / 72), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    gpd.GeoSeries([boundary]).plot(ax=axes, color="#e8eef7", edgecolor="#1f3a93",
                                   linewidth=1.2)
    if len(cells):
        gpd.GeoSeries(shapely.boundary(cells)).plot(ax=axes, color="#8a9bb8", linewidth=0.4)
    axes.set_xlim(extent[0], extent[2])
    axes.set_ylim(extent[1], extent[3])
    axes.set_aspect("equal")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def document_texts(board_set):
    """Every string the PDF draws (the font is cut to exactly these characters)."""
    texts = [TITLE, MOTTO, *LABELS, board_set.park_name, board_set.service_line,
             "… 另有 人", "第 页 共"]
    for b in board_set.boards:
        texts += [b.code, b.name, b.parent_code, b.url]
        texts += [t for row in b.staff for t in row]
    return texts


def render(board_set, out):
    """Write the boards of ``board_set`` as a PDF to ``out`` (a path or binary file).

    The park map is rendered once; see the module docstring.
    """
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    from geodata.pdf import chinese_font

    texts = document_texts(board_set)
    fonts = {"regular": chinese_font(texts), "bold": chinese_font(texts, bold=True)}
    park_map = ParkMap(board_set.boundary, board_set.cells)
    pdf = canvas.Canvas(out, pagesize=PAGE, pageCompression=1)
    pdf.setTitle(f"{board_set.park_name} {TITLE}")
    pdf.setCreator("gridmap")
    # The park image as a form XObject, defined once: drawImage on every page would
    # hash the whole PNG again each time (a third of the time per board).
    pdf.beginForm(PARK_FORM, 0, 0, *park_map.size)
    pdf.drawImage(ImageReader(io.BytesIO(park_map.png)), 0, 0, *park_map.size)
    pdf.endForm()
    total = len(board_set.boards)
    for number, board in enumerate(board_set.boards, 1):
        _page(pdf, fonts, board_set, board, park_map, number, total, _shared_park_map)
        pdf.showPage()
    pdf.save()


def _fit(text, font, size, width, lines=1):
    """``text`` wrapped to ``width`` points, at most ``lines`` lines (the last one cut with …)."""
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase.pdfmetrics import stringWidth

    wrapped = simpleSplit(text, font, size, width) or [""]
    if len(wrapped) <= lines:
        return wrapped
    last = wrapped[lines - 1]
    while last and stringWidth(last + "…", font, size) > width:
        last = last[:-1]
    return wrapped[:lines - 1] + [last + "…"]


def _shared_park_map(pdf, origin):
    """Show the park map's form XObject with its lower-left corner at ``origin``."""
    pdf.saveState()
    pdf.translate(*origin)
    pdf.doForm(PARK_FORM)
    pdf.restoreState()


def _page(pdf, fonts, board_set, board, park_map, number, total, background):
    """One board; ``background(pdf, origin)`` draws the park map under the grid."""
    regular, bold = fonts["regular"], fonts["bold"]
    width, height = PAGE
    inner = width - 2 * MARGIN
    # header band
    pdf.setFillColorRGB(*RED)
    pdf.rect(0, height - 78, width, 78, stroke=0, fill=1)
    pdf.setFillColorRGB(1, 1, 1)
    pdf.setFont(bold, 28)
    pdf.drawCentredString(width / 2, height - 46, TITLE)
    pdf.setFont(regular, 12)
    pdf.drawCentredString(width / 2, height - 66, _fit(board_set.park_name, regular, 12,
                                                       inner)[0])
    # grid code and name
    pdf.setFillColorRGB(0, 0, 0)
    y = height - 112
    pdf.setFont(bold, 24)
    pdf.drawString(MARGIN, y, board.code)
    for line in _fit(board.name, bold, 16, inner, lines=2):
        y -= 22
        pdf.setFont(bold, 16)
        pdf.drawString(MARGIN, y, line)
    pdf.setFont(regular, 10)
    pdf.setFillColorRGB(0.35, 0.35, 0.35)
    y -= 16
    parent = f"    上级网格 {board.parent_code}" if board.parent_code else ""
    pdf.drawString(MARGIN, y, MOTTO + parent)
    # the map: shared park image, this grid drawn over it
    map_top = y - 10
    origin = (MARGIN + (MAP_BOX[0] - park_map.size[0]) / 2, map_top - park_map.size[1])
    pdf.setStrokeColorRGB(0.7, 0.7, 0.7)
    pdf.rect(MARGIN, map_top - MAP_BOX[1], MAP_BOX[0], MAP_BOX[1], stroke=1, fill=0)
    background(pdf, origin)
    _draw_grid(pdf, board.geometry, park_map, origin)
    # staff table
    y = map_top - MAP_BOX[1] - 26
    columns = (MARGIN, MARGIN + 130, MARGIN + 300)
    pdf.setFillColorRGB(*RED)
    pdf.setFont(bold, 13)
    for x, label in zip(columns, LABELS[:3]):
        pdf.drawString(x, y, label)
    pdf.setStrokeColorRGB(*RED)
    pdf.line(MARGIN, y - 6, width - MARGIN, y - 6)
    pdf.setFillColorRGB(0, 0, 0)
    rows = board.staff if len(board.staff) <= MAX_ROWS else board.staff[:MAX_ROWS - 1]
    for title, name, phone in rows:
        y -= 21
        pdf.setFont(regular, 13)
        pdf.drawString(columns[0], y, _fit(title, regular, 13, 125)[0])
        pdf.drawString(columns[1], y, _fit(name, regular, 13, 165)[0])
        pdf.setFont(bold, 13)
        pdf.drawString(columns[2], y, _fit(phone, bold, 13, inner - 300)[0])
    if not board.staff:
        y -= 21
        pdf.setFont(regular, 13)
        pdf.drawString(columns[0], y, LABELS[5])
    elif len(rows) < len(board.staff):
        y -= 21
        pdf.setFont(regular, 11)
        pdf.drawString(columns[0], y, f"… 另有 {len(board.staff) - len(rows)} 人")
    # footer: service line and QR code
    qr_size = 112.0
    pdf.setFillColorRGB(*RED)
    pdf.setFont(bold, 13)
    pdf.drawString(MARGIN, MARGIN + 78, LABELS[3])
    pdf.setFont(bold, 24)
    pdf.drawString(MARGIN, MARGIN + 48, _fit(board_set.service_line, bold, 24,
                                             inner - qr_size - 20)[0])
    pdf.setFillColorRGB(0.35, 0.35, 0.35)
    pdf.setFont(regular, 10)
    pdf.drawString(MARGIN, MARGIN + 22, LABELS[7])
    pdf.drawString(MARGIN, MARGIN + 6, f"第 {number} 页 共 {total} 页")
    _draw_qr(pdf, board.url, width - MARGIN - qr_size, MARGIN + 14, qr_size)
    pdf.setFont(regular, 9)
    pdf.drawCentredString(width - MARGIN - qr_size / 2, MARGIN + 2, LABELS[4])


def _draw_grid(pdf, geometry, park_map, origin):
    """The grid over the park image: translucent fill, red outline, a ring if it is tiny."""
    path = pdf.beginPath()
    for polygon in getattr(geometry, "geoms", [geometry]):
        for ring in [polygon.exterior, *polygon.interiors]:
            points = park_map.to_page(np.asarray(ring.coords), origin)
            path.moveTo(*points[0])
            for x, y in points[1:]:
                path.lineTo(x, y)
            path.close()
    pdf.saveState()
    pdf.setFillColorRGB(*HIGHLIGHT, alpha=0.45)
    pdf.setStrokeColorRGB(*HIGHLIGHT)
    pdf.setLineWidth(1.6)
    pdf.drawPath(path, stroke=1, fill=1, fillMode=0)  # even-odd: holes stay open
    minx, miny, maxx, maxy = geometry.bounds
    if max(maxx - minx, maxy - miny) * park_map.scale < 14:  # too small to see: ring it
        anchor = shapely.point_on_surface(geometry)
        x, y = park_map.to_page(np.array([[anchor.x, anchor.y]]), origin)[0]
        pdf.setLineWidth(2)
        pdf.circle(x, y, 9, stroke=1, fill=0)
    pdf.restoreState()


def _draw_qr(pdf, text, x, y, size):
    """``text`` as a QR code (segno, error correction M) of ``size`` points at ``(x, y)``.

    Drawn as vector squares, one path, so it stays sharp at any print size;
    the quiet zone of 4 modules is part of ``size``.
    """
    import segno

    code = segno.make(text, error="m", micro=False)
    matrix = code.matrix
    modules = len(matrix) + 8
    unit = size / modules
    pdf.saveState()
    pdf.setFillColorRGB(1, 1, 1)
    pdf.rect(x, y, size, size, stroke=0, fill=1)
    pdf.setFillColorRGB(0, 0, 0)
    path = pdf.beginPath()
    for r, row in enumerate(matrix):
        top = y + size - (r + 4 + 1) * unit
        c = 0
        while c < len(row):  # one rectangle per run of dark modules
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                path.rect(x + (start + 4) * unit, top, (c - start) * unit, unit)
            else:
                c += 1
    pdf.drawPath(path, stroke=0, fill=1)
    pdf.restoreState()
