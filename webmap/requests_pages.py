"""The request ledger page (诉求台账) and its exports, server-rendered like the hazard ledger.

Every page needs a logged-in user (any role); without one it redirects to
the login form.  Templates are autoescaped, so request text is inert, and the
pages send the hazard ledger's Content-Security-Policy (no script at all).
"""

from flask import Blueprint, render_template, request

from geodata.ledger_export import to_csv, to_xlsx
from geodata.request_export import COLUMNS, TITLE, WIDTHS, request_rows
from geodata.services import requests as service
from geodata.services.parks import get_park
from geodata.vocabulary import REQUEST_STATE_NAMES, SOURCE_NAMES
from webmap.api import parse_bool
from webmap.auth import current_actor, login_page_or_user
from webmap.dashboard import CSP, export_allowed, pages, send_export, table_page
from webmap.db import get_session
from webmap.requests_api import today

bp = Blueprint("request_pages", __name__)

#: The page's filters; the export links repeat exactly these.
FILTERS = ("status", "category", "source", "overdue")


@bp.after_request
def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _filters():
    values = {k: request.args.get(k) or None for k in FILTERS}
    values["overdue"] = parse_bool("overdue", values["overdue"])
    return values


@bp.get("/parks/<code>/requests")
def requests_page(code):
    """The request ledger as an HTML table with filters, overdue marks and export links."""
    user, redirect = login_page_or_user()
    if redirect:
        return redirect
    session = get_session()
    park = get_park(session, code)
    filters = _filters()
    page, window = table_page()
    grid_ids = current_actor(session).grid_ids
    rows, total = request_rows(session, park=park, today=today(), grid_ids=grid_ids,
                               window=window, **filters)
    # The overdue count is of every row the filters match, not only this page's.
    late = {True: total, False: 0}.get(filters["overdue"])
    if late is None:
        late = service.list_requests(session, park=park, today=today(), grid_ids=grid_ids,
                                     limit=1, **{**filters, "overdue": True})[1]
    export_args = {k: request.args[k] for k in FILTERS if request.args.get(k)}
    return render_template("requests.html", park=park, rows=rows, total=total, late=late,
                           page=page, pages=pages(total), columns=COLUMNS,
                           states=REQUEST_STATE_NAMES, sources=SOURCE_NAMES,
                           categories=service.categories(session, park), filters=filters,
                           export_args=export_args)


@bp.get("/parks/<code>/requests.<fmt>")
def requests_file(code, fmt):
    """Download the request ledger as ``.csv`` or ``.xlsx`` (诉求台账)."""
    redirect = export_allowed(fmt)
    if redirect:
        return redirect
    session = get_session()
    park = get_park(session, code)
    rows, _ = request_rows(session, park=park, today=today(),
                           grid_ids=current_actor(session).grid_ids, **_filters())
    body = to_csv(rows, COLUMNS) if fmt == "csv" else to_xlsx(rows, TITLE, COLUMNS, WIDTHS)
    return send_export(body, fmt, "request-ledger", park)
