"""Pages: the park list and the health check."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template

from geodata.services.parks import list_parks
from webmap.db import get_session

bp = Blueprint("views", __name__)


@bp.get("/")
def index():
    """List the parks."""
    return render_template("index.html", parks=list_parks(get_session()))


@bp.get("/healthz")
def healthz():
    """Answer 200 when the database answers, else 503 (via the error table)."""
    get_session().execute(sa.text("SELECT 1"))
    return jsonify({"status": "ok"})
