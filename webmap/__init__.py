"""The gridmap web service: an application factory over the ``geodata`` services.

Configuration comes from defaults, then ``GRIDMAP_*`` environment variables,
then ``test_config``.  Nothing touches the database at import time; if the
database is down, the app still starts: ``/healthz`` answers 200 and ``/readyz`` 503.
"""

import re
from datetime import timedelta

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from geodata.config import Settings
from webmap import (api, auth, dashboard, db, edit_api, editor, enterprises, errors, faults,
                    field, hazards_api, maps, nav, ogcapi, photos_api, requests_api,
                    requests_pages, security, views, visits_api, weekly)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


class JSONProvider(DefaultJSONProvider):
    r"""Flask's JSON, with non-ASCII text kept as UTF-8 but lone surrogates escaped.

    Nothing stored holds a lone surrogate (:mod:`geodata.domains`), but an
    error message may quote the refused value (``"\ud800"``), and UTF-8 has
    no encoding for it: the answer failed as a 500.  ``\ud800`` is the JSON
    escape a client reads back as the same string.
    """

    ensure_ascii = False

    def dumps(self, obj, **kwargs):
        """Serialise ``obj`` like Flask, escaping lone surrogates (only ever inside strings)."""
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", super().dumps(obj, **kwargs))


def create_app(test_config=None):
    """Build the Flask app.

    Parameters
    ----------
    test_config : dict, optional
        Overrides, e.g. ``{"DATABASE_URL": "sqlite:///..."}``.
    """
    test_config = dict(test_config or {})
    overrides = {k.lower(): test_config.pop(k) for k in list(test_config)
                 if k.lower() in Settings.__dataclass_fields__}
    settings = Settings.from_env(**overrides)
    app = Flask(__name__, instance_relative_config=True)
    # Before any blueprint: its rules take the converter when they are registered.
    app.url_map.converters["int"] = api.PlainIntConverter
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=int(settings.max_upload_mb * 2**20),
        JSON_AS_ASCII=False,
        GRIDMAP=settings,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        LOGIN_RATE_LIMIT=settings.login_rate_limit,
        PAGE_ROWS=dashboard.PAGE_ROWS,
    )
    app.config.update(test_config)
    app.json = JSONProvider(app)
    # First registered, so its after_request hook runs after every other one.
    security.init_app(app)
    db.init_app(app)
    errors.init_app(app)
    app.register_blueprint(views.bp)
    auth.init_app(app)
    app.register_blueprint(hazards_api.bp)
    app.register_blueprint(requests_api.bp)
    app.register_blueprint(requests_pages.bp)
    app.register_blueprint(visits_api.bp)
    app.register_blueprint(photos_api.bp)
    app.register_blueprint(edit_api.bp)
    app.register_blueprint(editor.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(weekly.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ogcapi.bp)
    app.register_blueprint(enterprises.bp)
    maps.init_app(app)
    nav.init_app(app)
    app.register_blueprint(field.bp)
    # Last registered, so its hook runs first and sees the view's own answer.
    faults.init_app(app)
    return app
