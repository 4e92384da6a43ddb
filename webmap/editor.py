"""The planner's grid editing page (issue 6): ``/parks/<code>/edit``.

A plain Leaflet map (no folium) with Leaflet-Geoman for drawing; every edit
goes to :mod:`webmap.edit_api` and the map is redrawn from the server's
answer.  The page has no inline script: ``static/editor.js`` reads its
settings from a ``<script type="application/json">`` block (data, never
executed), so the CSP of :mod:`webmap.maps` applies unchanged.  Leaflet and
Leaflet-Geoman are served by the map's vendor route (``static/vendor/``).
"""

from flask import Blueprint, render_template, url_for
from jinja2.utils import htmlsafe_json_dumps

from geodata.services.parks import get_park
from webmap.auth import login_page_or_user
from webmap.db import get_session
from webmap.edit_api import EDITORS

bp = Blueprint("editor", __name__)


@bp.get("/parks/<code>/edit")
def edit_page(code):
    """The editing page: log in first; planners and admins only (403 otherwise)."""
    user, redirect = login_page_or_user()
    if redirect is not None:
        return redirect
    park = get_park(get_session(), code)
    if user.role not in EDITORS:
        return render_template("editor.html", park=park, forbidden=True, config_json="{}"), 403
    config = {
        "park": park.code,
        "state": url_for("edit_api.state", code=park.code),
        "edits": url_for("edit_api.history", code=park.code).rstrip("/"),
        "map": url_for("maps.park_map", code=park.code),
        "user": user.username,
    }
    return render_template("editor.html", park=park, forbidden=False,
                           config_json=htmlsafe_json_dumps(config))
