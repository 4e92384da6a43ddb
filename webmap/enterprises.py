"""One file per enterprise (一企一档): the page and its JSON, over one service call.

``/parks/<code>/enterprises/<credit code>`` (HTML) and
``/api/parks/<code>/enterprises/<credit code>`` (JSON) show
:func:`geodata.services.enterprise_file.enterprise_file`.  Any logged-in
role may read them; a user limited to some grids sees only enterprises in
those grids (403 otherwise).  An ill-formed credit code is a 422 and an
unknown one a 404, both as the JSON error body.

The page has no inline script: ``static/enterprise.js`` draws the site on a
Leaflet map (vendored, no tiles) from a ``<script type="application/json">``
block, so the CSP of :mod:`webmap.maps` applies unchanged; every other
piece of text goes through the autoescaped template.
"""

from flask import Blueprint, jsonify, render_template, url_for
from jinja2.utils import htmlsafe_json_dumps

from geodata.services.enterprise_file import enterprise_file
from geodata.services.parks import get_park
from geodata.workflow import PermissionDeniedError
from webmap.api import today
from webmap.auth import current_actor, login_page_or_user
from webmap.db import get_session

bp = Blueprint("enterprises", __name__)


def _file(code, credit_code):
    session = get_session()
    return enterprise_file(session, get_park(session, code), credit_code,
                           actor=current_actor(session), today=today())


def map_config(data):
    """What ``enterprise.js`` draws: geometries and ledger codes only, no free text."""
    return {
        "site": data["enterprise"]["site"],
        "grid": (data["grid"] or {}).get("geometry"),
        "host": (data["host"] or {}).get("geometry"),
        "units": [u["geometry"] for u in data["hidden_units"] if u["geometry"]],
        "hazards": [{"lon": h["lon"], "lat": h["lat"], "open": h["status"] != "closed",
                     "overdue": h["overdue"]} for h in data["hazards"]],
    }


@bp.get("/parks/<code>/enterprises/<credit_code>")
def page(code, credit_code):
    """The enterprise's file as a page (log in first)."""
    user, redirect = login_page_or_user()
    if redirect is not None:
        return redirect
    try:
        data = _file(code, credit_code)
    except PermissionDeniedError as exc:
        park = get_park(get_session(), code)
        return render_template("enterprise.html", park=park, forbidden=exc.message,
                               data=None, config_json="{}"), 403
    return render_template("enterprise.html", park=data["park"], forbidden=None, data=data,
                           config_json=htmlsafe_json_dumps(map_config(data)),
                           ledger=url_for("ledger_pages.ledger_page", code=code))


@bp.get("/api/parks/<code>/enterprises/<credit_code>")
def api(code, credit_code):
    """The enterprise's file as JSON (bearer token or session)."""
    return jsonify(_file(code, credit_code))
