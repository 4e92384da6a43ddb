"""Pages: the park list, and the liveness and readiness checks."""

import os

from flask import Blueprint, current_app, jsonify, render_template

from geodata import schema
from geodata.services.parks import list_parks
from webmap.db import get_session

bp = Blueprint("views", __name__)


@bp.get("/")
def index():
    """List the parks."""
    return render_template("index.html", parks=list_parks(get_session()))


@bp.get("/healthz")
def healthz():
    """Liveness: answer 200 while this process serves requests; the database is not asked.

    A load balancer or orchestrator restarts a process that stops answering
    here; a database outage is for :func:`readyz`, since restarting the web
    tier does not bring a database back.
    """
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when the database answers and its schema is at this code's Alembic head.

    Otherwise 503 through the error table, naming the cause:
    ``database_unavailable`` (cannot connect), ``schema_missing`` or
    ``schema_outdated`` (run ``gridmap init-db``).  ``pid`` is the worker
    process that answered.
    """
    revision = schema.require_current(current_app.extensions["gridmap.engine"])
    return jsonify({"status": "ready", "revision": revision, "pid": os.getpid()})
