"""The field app (我的网格): an installable, offline-first mobile web app under ``/m/``.

==========================  ==============================================
GET /m/                     the app shell (a login redirect without a user)
GET /m/session.json         who is logged in, their parks and a CSRF token
GET /m/manifest.webmanifest the web app manifest (icons under /m/static/)
GET /m/sw.js                the service worker, scope ``/m/``
GET /m/static/<file>        the app's script, stylesheet and icons
==========================  ==============================================

The shell holds no data and no inline script: ``static/field/field.js``
reads everything from the JSON API, keeps it in IndexedDB and queues what
the user captures offline (see ``docs/field.md``).  The service worker lives
at ``/m/sw.js`` so its default scope is ``/m/`` (no
``Service-Worker-Allowed`` header is needed); it is served with
``Cache-Control: no-cache`` so a new version is picked up on the next visit.
The pages keep the app's nonce-based Content-Security-Policy; images may
also be ``blob:`` URLs, the previews of photos that wait in the queue.
"""

import hashlib
from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template, url_for
from flask_wtf.csrf import generate_csrf

from geodata.services.ledger import CATEGORIES
from geodata.periods import ZONE
from geodata.services.parks import list_parks
from geodata.services.users import grid_park_ids
from geodata.vocabulary import DEFAULT_REQUEST_CATEGORIES, STATE_NAMES
from webmap.auth import current_user, login_page_or_user
from webmap.db import get_session
from webmap.maps import content_security_policy, csp_nonce

bp = Blueprint("field", __name__, url_prefix="/m", static_folder="static/field",
               static_url_path="/static")

#: The shell's files under ``webmap/``, hashed into the service worker's cache name.
_SHELL_FILES = ("templates/field/shell.html", "templates/field/sw.js", "static/field/field.js",
                "static/field/field.css", "static/field/icon-192.png",
                "static/vendor/leaflet/leaflet.js", "static/vendor/leaflet/leaflet.css")


def shell_version():
    """A short hash of the shell's files (computed once per process)."""
    extensions = current_app.extensions
    if "gridmap.field_version" not in extensions:
        digest = hashlib.sha256()
        for name in _SHELL_FILES:
            digest.update((Path(current_app.root_path) / name).read_bytes())
        extensions["gridmap.field_version"] = digest.hexdigest()[:12]
    return extensions["gridmap.field_version"]


def _csp():
    # img-src gains blob: for queued photos' previews; everything else is the app's policy.
    policy = content_security_policy(csp_nonce(), current_app.config["GRIDMAP"].tiles)
    return policy.replace("img-src 'self' data:", "img-src 'self' data: blob:")


def shell_urls():
    """The files the service worker stores at install (the page first) to start offline."""
    return [url_for("field.shell"), url_for("field.static", filename="field.js"),
            url_for("field.static", filename="field.css"), url_for("field.manifest"),
            url_for("field.static", filename="icon-192.png"),
            url_for("maps.vendor", package="leaflet", filename="leaflet.js"),
            url_for("maps.vendor", package="leaflet", filename="leaflet.css")]


@bp.get("/")
def shell():
    """The app shell; without a session, the login form (which comes back here)."""
    _, redirect = login_page_or_user()
    if redirect is not None:
        return redirect
    # The script learns its own version, to notice when the server runs another (a deploy).
    response = current_app.make_response(render_template("field/shell.html",
                                                         version=shell_version()))
    response.headers["Content-Security-Policy"] = _csp()
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/session.json")
def session_info():
    """The user, the parks they work in (those of their grids, else all) and a CSRF token.

    The app stores this for offline starts; the token goes with photo
    uploads (multipart, so :mod:`webmap.hazards_api` asks a browser session
    for it).  The vocabularies fill the forms.  ``version`` is the shell's: a
    page whose own differs runs an old script and reloads (see ``field.js``).
    ``timezone`` is the zone whose days the ledger counts: the phone dates a
    hazard in it, whatever zone the phone is set to.
    """
    user = current_user()
    session = get_session()
    grid_parks = grid_park_ids(session, user)
    parks = [{"code": p.code, "name": p.name} for p in list_parks(session)
             if not grid_parks or p.id in grid_parks]
    return jsonify({"user": {"name": user.username, "role": user.role,
                             "display_name": user.display_name},
                    "grid_limited": bool(grid_parks), "parks": parks,
                    "categories": list(CATEGORIES), "states": STATE_NAMES,
                    "request_categories": list(DEFAULT_REQUEST_CATEGORIES),
                    "csrf": generate_csrf(), "version": shell_version(),
                    "timezone": ZONE.key})


@bp.get("/manifest.webmanifest")
def manifest():
    """The web app manifest: standalone, scope ``/m/``, PNG icons."""
    icons = [{"src": url_for("field.static", filename=f"icon-{size}.png"),
              "sizes": f"{size}x{size}", "type": "image/png", "purpose": "any"}
             for size in (192, 512)]
    response = jsonify({
        "name": "gridmap 我的网格", "short_name": "我的网格", "lang": "zh-CN",
        "start_url": url_for("field.shell"), "scope": url_for("field.shell"),
        "display": "standalone", "orientation": "portrait",
        "background_color": "#ffffff", "theme_color": "#1f3a93", "icons": icons})
    response.mimetype = "application/manifest+json"
    return response


@bp.get("/sw.js")
def service_worker():
    """The service worker, with the shell's file list and versioned cache name written in."""
    body = render_template("field/sw.js", cache=f"gridmap-field-{shell_version()}",
                           shell=shell_urls())
    response = current_app.response_class(body, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response
