"""The navigation bar every page shares: which pages a visitor may open, and links to them.

A context processor gives every template ``nav``: the links of the bar, each
shown only to the roles that may use the page it leads to, the park the
page is about (from the URL's ``code``), and who is logged in.  The labels
are fixed text, Chinese first; user text (park names) is only ever a
template variable.
"""

from flask import g, request, url_for

from geodata.vocabulary import ROLES
from webmap.edit_api import EDITORS

#: Chinese names of the roles, shown beside the user name.
ROLE_NAMES = {"viewer": "查看员", "inspector": "检查员", "supervisor": "督导员",
              "planner": "规划员", "admin": "管理员"}

#: The park pages of the bar: (key, Chinese label, English label, endpoint, roles or None).
#: ``None`` means anyone, ``ROLES`` any logged-in user.
PARK_PAGES = [
    ("map", "地图", "Map", "maps.park_map", None),
    ("ledger", "隐患台账", "Ledger", "ledger_pages.ledger_page", ROLES),
    ("requests", "诉求台账", "Requests", "request_pages.requests_page", ROLES),
    ("dashboard", "看板", "Dashboard", "ledger_pages.dashboard", ROLES),
    ("editor", "编辑网格", "Edit grids", "editor.edit_page", EDITORS),
]


def may_open(roles, user):
    """Whether ``user`` (None when anonymous) may open a page open to ``roles``."""
    return roles is None or (user is not None and user.role in roles)


def park_links(code, user):
    """The park pages ``user`` may open, as dicts ``key, zh, en, url``."""
    return [{"key": key, "zh": zh, "en": en, "url": url_for(endpoint, code=code)}
            for key, zh, en, endpoint, roles in PARK_PAGES if may_open(roles, user)]


def nav_context():
    """Template context: ``nav`` (bar links, park, user, login URL) and :func:`park_links`."""
    user = g.get("user")
    code = (request.view_args or {}).get("code") if request else None
    return {"nav": {
        "park": code,
        "links": park_links(code, user) if code else [],
        "active": request.endpoint,
        "user": user,
        "role_name": ROLE_NAMES.get(user.role, user.role) if user is not None else None,
        "login": url_for("login", next=request.full_path.rstrip("?"))
        if request.endpoint != "login" else url_for("login"),
    }, "park_links": park_links}


def init_app(app):
    """Give every template the navigation context."""
    app.context_processor(nav_context)
