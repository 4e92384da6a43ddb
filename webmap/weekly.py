"""Pages of the weekly routine (周汇报) and the staff assessment (考核).

``/parks/<code>/weekly/<week>`` shows the same report as ``gridmap
weekly-report`` (the same template, ``geodata/templates/weekly_body.html``,
with the server-drawn map as a ``data:`` image) and links its ``.xlsx``,
``.html`` and ``.pdf`` files; ``/parks/<code>/weekly`` is this week's.  A grid
member's report (page and files) covers their grids only.
``/parks/<code>/assessment?from=&to=`` is the assessment table.  Every
page needs a login; the assessment (people's scores) is for supervisors,
planners and admins.  Templates autoescape, and
the CSP forbids scripts, so stored text is inert.
"""

import io
import re
from datetime import timedelta

from flask import Blueprint, render_template, request, send_file

from geodata.periods import iso_week, local_today, week_bounds
from geodata.services import weekly
from geodata.services.assessment import assessment, parse_period
from geodata.services.parks import get_park
from geodata.weekly_export import (TEMPLATES, check_format, percent, render, static_map,
                                   template_context)
from webmap.auth import current_actor, login_page_or_user
from webmap.dashboard import CSP, page_rows
from webmap.db import get_session

# The report's body template lives with geodata (the CLI renders it too).
bp = Blueprint("weekly_pages", __name__, template_folder=str(TEMPLATES))

#: Roles that may see the assessment (people's figures and scores).
ASSESSORS = frozenset({"supervisor", "planner", "admin"})
MEDIA = {".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         ".html": "text/html", ".pdf": "application/pdf"}


@bp.after_request
def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


@bp.get("/parks/<code>/weekly", defaults={"week": None})
@bp.get("/parks/<code>/weekly/<week>")
def weekly_page(code, week):
    """The week's report (default: this week) with its map, lists and download links."""
    user, login = login_page_or_user()
    if login:
        return login
    session = get_session()
    park = get_park(session, code)
    # A page of the grid table and review list: no work per grid of a park of 10^5 grids.
    report = weekly.weekly_report(session, park, week or iso_week(local_today()),
                                  grid_ids=current_actor(session).grid_ids, rows=page_rows())
    monday = week_bounds(report["week"])[0]
    return render_template(
        "weekly.html", **template_context(report, static_map(session, park, report),
                                          page_rows()),
        previous=iso_week(monday - timedelta(days=7)), next=iso_week(monday + timedelta(days=7)))


@bp.get("/parks/<code>/weekly/<week>.<fmt>")
def weekly_file(code, week, fmt):
    """Download the week's report as ``.xlsx``, ``.html`` or ``.pdf``."""
    user, login = login_page_or_user()
    if login:
        return login
    suffix = check_format(f"report.{fmt}")
    session = get_session()
    park = get_park(session, code)
    # The XLSX (a data file) holds every row; the HTML and PDF print a page.
    report = weekly.weekly_report(session, park, week, grid_ids=current_actor(session).grid_ids,
                                  rows=None if suffix == ".xlsx" else page_rows())
    body = render(session, park, report, suffix, page_rows())
    # Only letters, digits, '-' and '_' of the park code reach the header.
    safe = re.sub(r"[^\w-]+", "_", park.code)
    name = f"weekly-{safe}-{report['week']}{suffix}"
    return send_file(io.BytesIO(body), as_attachment=True, download_name=name,
                     mimetype=MEDIA[suffix])


@bp.get("/parks/<code>/assessment")
def assessment_page(code):
    """Per-person assessment over ``from``..``to`` (default: this week up to today)."""
    user, login = login_page_or_user()
    if login:
        return login
    if user.role not in ASSESSORS:
        return render_template("assessment.html", a=None, park=get_park(get_session(), code),
                               forbidden=True), 403
    today = local_today()
    first = request.args.get("from") or week_bounds(iso_week(today))[0].isoformat()
    last = request.args.get("to") or today.isoformat()
    parse_period(first, last, today)
    session = get_session()
    result = assessment(session, get_park(session, code), first, last, today=today)
    return render_template("assessment.html", a=result, percent=percent, forbidden=False)
