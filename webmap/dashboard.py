"""Server-rendered ledger pages: the park dashboard, the ledger table and its exports.

Every page needs a logged-in user (any role); without one it redirects to
the login form.  Templates are autoescaped, so hazard text is inert.
"""

import io
import re

from flask import Blueprint, current_app, render_template, request, send_file

from geodata import domains
from geodata.errors import ValidationError
from geodata.ledger_export import COLUMNS, ledger_rows, to_csv, to_xlsx
from geodata.periods import local_today
from geodata.services import ledger, weekly
from geodata.services.parks import get_park
from geodata.services.photos import visible_photos
from geodata.vocabulary import PHOTO_TAG_NAMES
from geodata.workflow import ESCALATION_NAMES, STATE_NAMES
from webmap.api import parse_bool, parse_int
from webmap.auth import current_actor, login_page_or_user
from webmap.db import get_session

bp = Blueprint("ledger_pages", __name__)

#: No inline scripts and nothing from elsewhere: hazard text can never run.
CSP = ("default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@bp.after_request
def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


#: Rows per page of the ledger tables (the exports hold every row), and the most rows of
#: grids any page shows (config ``PAGE_ROWS``): a city's park holds 10^5 grids.
PAGE_ROWS = 200


def page_rows():
    """Rows per page of this app (config ``PAGE_ROWS``, default :data:`PAGE_ROWS`)."""
    return current_app.config["PAGE_ROWS"]


def table_page():
    """The ``page`` asked for (1 first; 400/422 otherwise) and its ``(offset, limit)`` window."""
    rows = page_rows()
    page = parse_int("page", request.args.get("page"), 1, domains.OFFSET_MAX // rows,
                     default=1)
    return page, ((page - 1) * rows, rows)


def pages(total):
    """How many pages of :func:`page_rows` rows ``total`` rows fill (at least one)."""
    return max(1, -(-total // page_rows()))


def _filters():
    status = request.args.get("status") or None
    # The filter form sends an empty value for "any"; otherwise the API's one reading.
    overdue = parse_bool("overdue", request.args.get("overdue") or None)
    return {"status": status, "overdue": overdue,
            # ``number``, not ``code``: the park's code is the path's.
            "code": request.args.get("number", "").strip() or None}


@bp.get("/parks/<code>/dashboard")
def dashboard(code):
    """Hazard counts, closure, overdue, the three 100% rates; requests and visit coverage."""
    user, redirect = login_page_or_user()
    if redirect:
        return redirect
    session = get_session()
    park = get_park(session, code)
    page, (offset, limit) = table_page()
    figures = {**ledger.dashboard(session, park), **weekly.service_figures(session, park)}
    # A city's park holds 10^5 grids: the page lists the grids with hazards, most overdue
    # then most open first, a page at a time, and the grids least covered by visits.
    busy = sorted(((code, g) for code, g in figures["by_grid"].items() if g["total"]),
                  key=lambda item: (-item[1]["overdue"], -item[1]["open"], -item[1]["total"],
                                    item[0]))
    cov = figures["visit_coverage"]
    least = sorted(((code, c) for code, c in cov["by_grid"].items() if c["expected"]),
                   key=lambda item: (item[1]["rate"], -item[1]["expected"], item[0]))
    return render_template("dashboard.html", d=figures, states=STATE_NAMES,
                           escalations=ESCALATION_NAMES, cov=cov,
                           grid_rows=busy[offset:offset + limit], grids_busy=len(busy),
                           page=page, pages=pages(len(busy)), park=park,
                           coverage_rows=least[:limit], coverage_grids=len(least))


@bp.get("/parks/<code>/ledger")
def ledger_page(code):
    """The ledger as an HTML table with status/overdue filters, export links and thumbnails.

    Each hazard's photos the user may see (:func:`geodata.services.photos.visible_photos`)
    show as thumbnails linking to the full photo; the page needs no script.
    """
    user, redirect = login_page_or_user()
    if redirect:
        return redirect
    session = get_session()
    park = get_park(session, code)
    filters = _filters()
    page, window = table_page()
    actor = current_actor(session)
    rows, total = ledger_rows(session, park=park, grid_ids=actor.grid_ids, window=window,
                              **filters)
    # The export and page links repeat the known filters only: url_for reads _external,
    # _scheme and _anchor from its keywords, and a second ``code`` raised a TypeError (a 500).
    export_args = {k: request.args[k] for k in ("status", "overdue", "number")
                   if request.args.get(k)}
    photos = visible_photos(session, [r["id"] for r in rows], actor)
    return render_template("ledger.html", park=park, rows=rows, total=total, page=page,
                           pages=pages(total), columns=COLUMNS, states=STATE_NAMES,
                           filters=filters, export_args=export_args, photos=photos,
                           tag_names=PHOTO_TAG_NAMES)


@bp.get("/parks/<code>/ledger.<fmt>")
def ledger_file(code, fmt):
    """Download the ledger as ``.csv`` or ``.xlsx`` (隐患台账)."""
    redirect = export_allowed(fmt)
    if redirect:
        return redirect
    session = get_session()
    park = get_park(session, code)
    rows, _ = ledger_rows(session, park=park, grid_ids=current_actor(session).grid_ids,
                          **_filters())
    return send_export(to_csv(rows) if fmt == "csv" else to_xlsx(rows), fmt, "hazard-ledger",
                       park)


def export_allowed(fmt):
    """The login page's redirect for an anonymous visitor; 422 for a format other than csv/xlsx.

    None when the logged-in user may download the export in ``fmt``.
    """
    _, redirect = login_page_or_user()
    if redirect:
        return redirect
    if fmt not in ("csv", "xlsx"):
        raise ValidationError("the ledger exports as .csv or .xlsx", code="unsupported_format")
    return None


def send_export(body, fmt, name, park):
    """The download response for an exported ledger (``.csv`` or ``.xlsx``) of ``park``."""
    # The park code is stored text: only letters, digits, '-' and '_' of it reach the
    # header, and send_file quotes the name (RFC 6266, filename* for non-ASCII).
    code = re.sub(r"[^\w-]+", "_", park.code)
    # "text/csv" alone: send_file adds "; charset=utf-8" to a text type itself (a second one).
    response = send_file(io.BytesIO(body), as_attachment=True,
                         download_name=f"{name}-{code}-{local_today().isoformat()}.{fmt}",
                         mimetype="text/csv" if fmt == "csv" else XLSX)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
