"""Map pages: the park map (folium) and the grid page, plus the vendored browser assets.

The park map is a folium map whose layers start empty: ``static/gridmap.js``
fills them from the JSON API (grids by bbox, simplified for the zoom level,
as the map moves) and builds every popup with ``textContent``, so user text
(enterprise names, hazard notes, staff names) never reaches the page as HTML.
Server-side, user text (the park's name and code, the user's name) only
ever goes into Flask's autoescaped templates as a *variable*; the finished
HTML joins folium's figure through :class:`Verbatim`, never as template
source (``folium.Element(text)`` compiles ``text`` as a Jinja template, so
a park named ``{{7*7}}`` showed 49 and ``lipsum.__globals__`` ran code).

Every script and stylesheet is served by this app: Leaflet,
Leaflet.markercluster and Leaflet-Geoman are committed under
``static/vendor/`` (pinned by ``static/package-lock.json``, refreshed with
``scripts/vendor_assets.py``) and ship in the wheel, so neither installing
nor running needs npm or the network; folium's CDN defaults are replaced per
map.  Inline scripts carry the response's CSP nonce.
"""

import functools
import math
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import folium
from flask import (Blueprint, current_app, g, render_template, request,
                   send_from_directory, url_for)
from flask_wtf.csrf import generate_csrf
from folium.plugins import MarkerCluster
from jinja2.utils import htmlsafe_json_dumps

from geodata.services import mapdata, visits
from geodata.services.ledger import CATEGORIES
from geodata.services.parks import get_park, park_boundary
from geodata.services.photos import visible_photos
from geodata.vocabulary import PHOTO_TAG_NAMES
from geodata.workflow import ESCALATION_NAMES, PERMISSIONS, STATE_NAMES
from webmap.api import published_only, today
from webmap.auth import current_actor
from webmap.db import get_session

bp = Blueprint("maps", __name__)

#: Deepest zoom of the map (and of the grid API's simplification levels).
MAX_ZOOM = 20

#: Parks with more grids than this open zoomed in on their centre, not fitted whole.
WHOLE_PARK_GRIDS = 1500

#: Vector-tile grid layers (parks above ``GRIDMAP_MAP_TILE_THRESHOLD`` grids): at most about
#: this many grids per tile (a zoom showing more shows none and asks to zoom in), and data
#: tiles up to this zoom (deeper zooms scale the z16 tiles, whose unit is 0.15 m).
TILE_MAX_GRIDS, TILE_MAX_DATA_ZOOM = 4000, 16


#: Layer names shown in the layer control (static text, never user input).
LAYERS = {
    "park": "园区边界 Park boundary",
    "grids": "网格 Grids (open hazards)",
    "subgrids": "子网格 Sub-grids",
    "enterprises": "企业 Enterprises",
    "hidden": "厂中厂/园中园 Hidden units",
    "hazards": "未销号隐患 Open hazards",
    "coverage": "覆盖问题 Coverage problems",
    "field": "走访巡查 Field work: overdue visits, no patrol today",
}

#: Choropleth classes of open hazards per grid: (lowest count, colour, label).
CLASSES = [(0, "#f7fcf5", "0"), (1, "#fee08b", "1"), (2, "#fdae61", "2–3"),
           (4, "#f46d43", "4–6"), (7, "#a50026", "≥ 7")]


def tile_min_zoom(overview, lat):
    """The lowest map zoom at which a park's vector tiles hold at most ``TILE_MAX_GRIDS``.

    Estimated from the park's mean grid area (m²) and the ground width of a
    512-px data tile (one zoom below the map's) at latitude ``lat``.
    """
    count = overview["grids"] + overview["sub_grids"]
    if count <= TILE_MAX_GRIDS:  # one tile may hold the whole park
        return 3
    cell = overview["area_m2"] / count
    world = 40_075_016.7 * math.cos(math.radians(lat))  # metres around at that latitude
    data_zoom = math.log2(world / math.sqrt(TILE_MAX_GRIDS * cell))
    return int(min(max(math.ceil(data_zoom) + 1, 3), TILE_MAX_DATA_ZOOM))


def csp_nonce():
    """Return the CSP nonce of the current response (created on first use)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


@functools.lru_cache(maxsize=8)
def tile_origin(tiles):
    """The ``scheme://host`` of an XYZ tile URL template, or None for ``none``."""
    if not tiles or tiles.lower() == "none":
        return None
    parts = urlsplit(tiles.replace("{s}", "a"))
    host = parts.netloc
    if "{s}" in tiles:
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return f"{parts.scheme}://{host}"


def content_security_policy(nonce, tiles=None):
    """The Content-Security-Policy header value.

    Scripts: this origin plus inline scripts carrying ``nonce`` (folium's
    map script).  Styles: this origin plus ``'unsafe-inline'``, because
    folium writes ``<style>`` blocks and Leaflet sets style attributes on its
    panes; styles cannot run script.  Images: this origin, ``data:`` and the
    tile server of ``GRIDMAP_TILES`` if one is configured.
    """
    images = "'self' data:" + (f" {tile_origin(tiles)}" if tile_origin(tiles) else "")
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            "style-src 'self' 'unsafe-inline'; "
            f"img-src {images}; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'")


def init_app(app):
    """Register the blueprint and the CSP/nosniff headers on every response."""
    app.register_blueprint(bp)

    @app.after_request
    def _security_headers(response):
        # Built only when the view set none (a page's own carries its nonce already).
        if "Content-Security-Policy" not in response.headers:
            response.headers["Content-Security-Policy"] = content_security_policy(
                csp_nonce(), app.config["GRIDMAP"].tiles)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


@bp.get("/assets/vendor/<package>/<path:filename>")
def vendor(package, filename):
    """Serve a file of a browser package vendored under ``static/vendor/<package>/``.

    ``send_from_directory`` answers 404 for a path that leaves ``static/vendor/``.
    """
    return send_from_directory(Path(current_app.static_folder) / "vendor",
                               f"{package}/{filename}", max_age=3600)


def _vendor(package, filename):
    return url_for("maps.vendor", package=package, filename=filename)


_INLINE_SCRIPT = re.compile(r"<script(?=[\s>])(?![^>]*\bnonce=)")


def add_nonce(html, nonce):
    """Give every ``<script>`` tag of a rendered page the CSP nonce."""
    return _INLINE_SCRIPT.sub(f'<script nonce="{nonce}"', html)


class Verbatim(folium.Element):
    """Finished HTML added to a folium figure as it is, never parsed as a template.

    Every other branca/folium element compiles its text as a Jinja template
    (without autoescaping); this one's :meth:`render` returns the text
    unchanged, so text rendered by an autoescaped Flask template stays data.
    """

    def __init__(self, html):
        super().__init__()
        self._name = "Verbatim"
        self.html = str(html)

    def render(self, **kwargs):
        """Return the HTML unchanged (no Jinja)."""
        return self.html


def build_map(park, overview, tiles="none", field=False, tiled=False):
    """Build the folium map of a park; return ``(folium.Map, layer variable names)``.

    The boundary (EPSG:4326, holes kept) is drawn from its geometry alone;
    every other layer is an empty group that ``gridmap.js`` fills.  ``field``
    adds the field-work layer (logged-in users only: visits are not public).
    ``tiled`` (grids from vector tiles) turns Leaflet's tile fade-in off.
    """
    boundary = park_boundary(park)
    minx, miny, maxx, maxy = boundary.bounds
    big = overview["grids"] + overview["sub_grids"] > WHOLE_PARK_GRIDS
    m = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], tiles=None,
                   zoom_start=16 if big else 14, control_scale=True, prefer_canvas=True,
                   # Leaflet.markercluster loops for ever on a map without a maxZoom, and
                   # with no tile layer (GRIDMAP_TILES=none) nothing else sets one.
                   maxZoom=MAX_ZOOM, minZoom=3,
                   # Fading tiles in re-composites every tile canvas on each frame for
                   # 200 ms after each tile arrives: the longest main-thread tasks of a
                   # tiled map's pans and zooms (scaling.md, vector tiles).
                   fade_animation=not tiled)
    m.default_js = [("leaflet", _vendor("leaflet", "leaflet.js"))]
    m.default_css = [("leaflet_css", _vendor("leaflet", "leaflet.css"))]
    if tile_origin(tiles):
        folium.TileLayer(tiles=tiles, attr="base map", name="底图 Base map",
                         max_zoom=MAX_ZOOM).add_to(m)
    folium.GeoJson(boundary.__geo_interface__, name=LAYERS["park"], style_function=lambda _: {
        "color": "#1f3a93", "weight": 3, "fill": True, "fillColor": "#1f3a93",
        "fillOpacity": 0.04}, interactive=False).add_to(m)
    groups = {}
    for key in ("grids", "subgrids", "enterprises", "hidden"):
        groups[key] = folium.FeatureGroup(name=LAYERS[key], show=key != "subgrids").add_to(m)
    cluster = MarkerCluster(name=LAYERS["hazards"],
                            options={"maxClusterRadius": 40, "chunkedLoading": True})
    cluster.default_js = [("markercluster", _vendor(
        "leaflet.markercluster", "leaflet.markercluster.js"))]
    cluster.default_css = [
        ("markercluster_css", _vendor("leaflet.markercluster", "MarkerCluster.css")),
        ("markercluster_default_css", _vendor("leaflet.markercluster",
                                              "MarkerCluster.Default.css"))]
    groups["hazards"] = cluster.add_to(m)
    if mapdata.coverage_available():
        groups["coverage"] = folium.FeatureGroup(name=LAYERS["coverage"], show=False).add_to(m)
    if field:
        groups["field"] = folium.FeatureGroup(name=LAYERS["field"], show=False).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    if not big:  # a big park opens at zoom 16 on its centre, not with every grid in view
        m.fit_bounds([[miny, minx], [maxy, maxx]])
    return m, {k: v.get_name() for k, v in groups.items()}


@bp.get("/parks/<code>/map")
def park_map(code):
    """The park map page."""
    session = get_session()
    park = get_park(session, code)
    overview = mapdata.park_overview(session, park, today())
    tiles = current_app.config["GRIDMAP"].tiles
    user = g.get("user")
    # Big parks draw their grids from vector tiles (gridmap-tiles.js), small ones from GeoJSON.
    tiled = (overview["grids"] + overview["sub_grids"]
             > current_app.config["GRIDMAP"].map_tile_threshold)
    m, layers = build_map(park, overview, tiles, field=user is not None, tiled=tiled)
    figure = m.get_root()
    can_log = user is not None and user.role in PERMISSIONS["create"]
    config = {
        "map": m.get_name(), "layers": layers, "park": park.code,
        "tiles": {"url": url_for("api.park", code=park.code) + "/tiles/grids/{z}/{x}/{y}.mvt",
                  "minZoom": tile_min_zoom(overview, m.location[0]),
                  "maxDataZoom": TILE_MAX_DATA_ZOOM} if tiled else None,
        "api": url_for("api.park", code=park.code),
        "gridPage": url_for("maps.grid_page", code=park.code, grid_code="__GRID__"),
        "enterprisePage": url_for("enterprises.page", code=park.code, credit_code="__CODE__"),
        "overview": overview, "classes": [[c[0], c[1]] for c in CLASSES],
        "bbox": list(park_boundary(park).bounds),
        # every list the API answers is one page of at most this many rows (api.page_args)
        "pageMax": current_app.config["GRIDMAP"].api_page_max,
        # the hazard ledger: who is looking, and where to log and move hazards
        "user": {"name": user.username, "role": user.role} if user is not None else None,
        "canLog": can_log,
        "hazardsApi": url_for("hazards_api.create_hazard", code=park.code),
        "hazardApi": url_for("hazards_api.list_hazards") + "/",
        "fieldApi": url_for("visits_api.layer", code=park.code) if user is not None else None,
        "states": STATE_NAMES, "escalations": ESCALATION_NAMES, "photoTags": PHOTO_TAG_NAMES,
        "today": today().isoformat(),
        # photo uploads are multipart: a browser session sends its CSRF token
        "csrf": generate_csrf() if can_log else None,
    }
    figure.header.add_child(Verbatim(render_template(
        "map_head.html", park=park, stylesheet=url_for("static", filename="gridmap.css"))))
    figure.html.add_child(Verbatim(render_template(
        "map_panel.html", park=park, overview=overview, classes=CLASSES, layers=LAYERS,
        user=user, can_log=can_log, categories=CATEGORIES,
        login_url=url_for("login", next=request.path),
        config_json=htmlsafe_json_dumps(config),
        script=url_for("static", filename="gridmap.js"),
        tile_scripts=[_vendor("protomaps-leaflet", "protomaps-leaflet.js"),
                      url_for("static", filename="gridmap-tiles.js")] if tiled else [])))
    html = add_nonce(figure.render(), csp_nonce())
    return current_app.response_class(html, mimetype="text/html")


@bp.get("/parks/<code>/grids/<grid_code>")
def grid_page(code, grid_code):
    """One grid: its staff, enterprises (hidden units marked), hazards and visits.

    This is the page the QR code of the grid's board (公示牌) opens on any
    phone: a visitor who is not logged in sees only the staff whose contact
    is published on the board, as the board itself shows.

    A logged-in user also sees enterprise contacts, the grid's latest visits
    and the thumbnails of the hazards' photos they may see
    (:func:`geodata.services.photos.visible_photos`); anonymous visitors none
    of these, and a grid member only those of their grids.
    """
    session = get_session()
    park = get_park(session, code)
    actor = current_actor(session) if g.get("user") is not None else None
    data = mapdata.grid_page(session, park, grid_code, today(),
                             published_only=published_only())
    photos, field = {}, None
    if actor is not None:
        photos = visible_photos(session, [h["id"] for h in data["hazards"]], actor)
        rows, total = visits.list_visits(session, park=park, grid=data["grid"]["code"],
                                         limit=50, grid_ids=actor.grid_ids)
        field = {"total": total, "visits": visits.visit_dicts(session, rows)}
    return render_template("grid.html", **data, field=field, photos=photos,
                           tag_names=PHOTO_TAG_NAMES)
