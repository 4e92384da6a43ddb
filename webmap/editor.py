"""The planner's grid editing page (issue 6): ``/parks/<code>/edit``.

A plain Leaflet map (no folium) with Leaflet-Geoman for drawing; every edit
goes to :mod:`webmap.edit_api` and the map is redrawn from the server's
answer.  The page has no inline script: ``static/editor.js`` reads its
settings from a ``<script type="application/json">`` block (data, never
executed), so the CSP of :mod:`webmap.maps` applies unchanged.  Leaflet and
Leaflet-Geoman are served by the map's vendor route (``static/vendor/``).
"""

from flask import Blueprint, current_app, render_template, url_for
from jinja2.utils import htmlsafe_json_dumps

from geodata.services.mapdata import count_active_grids
from geodata.services.parks import get_park, park_boundary
from webmap.auth import login_page_or_user
from webmap.db import get_session
from webmap.edit_api import EDITORS

bp = Blueprint("editor", __name__)


def _view(session, park):
    """``{"center": [lat, lon], "zoom": 17}`` for a park too big to load whole, else None.

    Big: more active grids than ``GRIDMAP_MAP_TILE_THRESHOLD`` (the map page's
    rule) or than one answer may carry (``GRIDMAP_API_PAGE_MAX``).
    """
    settings = current_app.config["GRIDMAP"]
    if count_active_grids(session, park) <= min(settings.map_tile_threshold,
                                                settings.api_page_max):
        return None
    minx, miny, maxx, maxy = park_boundary(park).bounds
    return {"center": [(miny + maxy) / 2, (minx + maxx) / 2], "zoom": 17}


@bp.get("/parks/<code>/edit")
def edit_page(code):
    """The editing page: log in first; planners and admins only (403 otherwise)."""
    user, redirect = login_page_or_user()
    if redirect is not None:
        return redirect
    session = get_session()
    park = get_park(session, code)
    if user.role not in EDITORS:
        return render_template("editor.html", park=park, forbidden=True, config_json="{}"), 403
    config = {
        "park": park.code,
        "state": url_for("edit_api.state", code=park.code),
        "edits": url_for("edit_api.history", code=park.code).rstrip("/"),
        "map": url_for("maps.park_map", code=park.code),
        "user": user.username,
        # A big park opens zoomed in on its centre and loads the grids of its view (the
        # state's bbox), as the map page does: its whole state is tens of MB.
        "view": _view(session, park),
    }
    return render_template("editor.html", park=park, forbidden=False,
                           config_json=htmlsafe_json_dumps(config))
