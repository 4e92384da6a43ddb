"""Log in and out, who is asking, and what they may do.

* Browsers log in with a form (``/login``) and get a signed session cookie
  that expires after ``GRIDMAP_SESSION_HOURS`` (HttpOnly, SameSite=Lax;
  Secure with ``GRIDMAP_SECURE_COOKIES``).  The cookie holds the user id
  and their ``session_version``; logout bumps that version on the server
  (as do a new password, a role change, ``users disable`` and ``users
  revoke-token``), so a cookie copied before logout is refused afterwards.
  Logging out therefore ends the account's sessions in every browser.
* Scripts send ``Authorization: Bearer <token>`` (``gridmap users token``).
* Form posts carry a CSRF token (flask-wtf ``CSRFProtect``; a missing or
  wrong one gives 400 ``csrf_failed``).  The JSON API is exempt from the
  form token but only accepts ``application/json`` bodies, which a
  cross-site form cannot send; the session cookie is SameSite=Lax too.
* ``POST /login`` is rate-limited per client address
  (``GRIDMAP_LOGIN_RATE_LIMIT``) → 429 with ``Retry-After``.  The counters
  live in ``GRIDMAP_RATELIMIT_STORAGE_URI``: in memory (per process) by
  default, or in Redis, shared by every worker process.
* No credentials → 401 ``authentication_required``; a role that may not
  act → 403 ``forbidden``.
* A client that sends requests on behalf of one account later (the field
  app's offline queue) names that account in ``X-Gridmap-User`` (the user
  name, percent-encoded).  If the cookie now belongs to someone else (the
  phone was handed over and another user logged in), the request is 401
  ``account_changed`` and nothing is done: queued writes are never recorded
  as the next user's, nor their answers kept as the first user's.
"""

import math
import re
import time
from urllib.parse import unquote, urlsplit

from flask import (current_app, g, redirect, render_template, request, session, url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect

from geodata.errors import GridmapError
from geodata.services.ledger import Actor
from geodata.services.users import (allowed_grid_ids, authenticate, end_sessions, get_user,
                                    user_for_session, user_for_token)
from geodata.workflow import AuthenticationRequiredError, require
from webmap.db import commit_or_rollback, get_session, write_session
from webmap.errors import _response

csrf = CSRFProtect()


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with no signer built for a request that sends no cookie.

    Flask builds the cookie's signer (an itsdangerous serializer and its
    keys) before it looks for the cookie, on every request; API clients send
    a Bearer token and no cookie, so each of their requests paid for it.
    The session is the same empty one Flask gives; a request with the cookie
    is read exactly as Flask reads it.
    """

    def open_session(self, app, request):
        """Flask's ``open_session``, returning a new empty session at once when no cookie came."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app):
    """Set up sessions, CSRF, the login rate limit and the login/logout routes on ``app``."""
    app.session_interface = CookieSessions()
    # create_app sets the session lifetime, SameSite=Lax and LOGIN_RATE_LIMIT.
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"]
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", int(lifetime.total_seconds()))
    csrf.init_app(app)
    # One limiter per app, so test apps do not share counters.  If Redis goes away, each
    # process keeps limiting in memory (and returns to Redis when it is back) rather than
    # answering every login with a 500 or letting it through unlimited.
    limiter = Limiter(get_remote_address, app=app, default_limits=[], headers_enabled=True,
                      storage_uri=app.config["GRIDMAP"].ratelimit_storage_uri,
                      in_memory_fallback_enabled=True)
    app.extensions["gridmap.limiter"] = limiter
    # Only the login is limited: every other request skips the limiter's own per-request
    # work (finding the view's limits), Flask-Limiter's documented request filter.
    limiter.request_filter(lambda: request.endpoint != "login")
    limited_login = limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"],
                                  methods=["POST"])(login)
    app.add_url_rule("/login", "login", limited_login, methods=["GET", "POST"])
    app.add_url_rule("/logout", "logout", logout, methods=["POST"])
    app.before_request(_load_user)
    app.before_request(_check_account)

    @app.errorhandler(CSRFError)
    def _csrf_failed(exc):
        return _response(400, "csrf_failed", exc.description or "CSRF token missing or wrong")

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc):
        reset = getattr(limiter.current_limit, "reset_at", None)
        retry = max(1, math.ceil(reset - time.time())) if reset else 60
        return _response(429, "rate_limited", f"too many requests ({exc.description}); retry "
                         f"in {retry} s", {"retry_after": retry}, {"Retry-After": str(retry)})

    @app.context_processor
    def _user():
        return {"current_user": g.get("user")}


def _load_user():
    """Find the user from a Bearer token or the session cookie (before every request).

    ``g.user`` is an :class:`~geodata.services.users.Account` (name, role,
    grids), read on every request, so a revoked token, a disabled account or
    an ended session is refused on the next one.
    """
    g.user, g.auth = None, None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequiredError("use 'Authorization: Bearer <token>'",
                                              code="invalid_token")
        user = user_for_token(get_session(), token.strip())
        if user is None:
            raise AuthenticationRequiredError("unknown, revoked or expired API token",
                                              code="invalid_token")
        g.user, g.auth = user, "token"
        return
    if "uid" in session:
        user = user_for_session(get_session(), session.get("uid"), session.get("sv"))
        if user is not None:
            g.user, g.auth = user, "session"
        else:
            session.clear()


#: The header naming the account a request is sent for (see the module's docstring).
ACCOUNT_HEADER = "X-Gridmap-User"


def _check_account():
    """Refuse a request sent for another account than the one logged in (after ``_load_user``)."""
    expected = request.headers.get(ACCOUNT_HEADER)
    # No route or method matched: the 404 or 405 (with Allow) says more, and nothing runs.
    if expected is None or request.routing_exception is not None:
        return
    user = g.get("user")
    if user is None or user.username != unquote(expected, errors="replace"):
        raise AuthenticationRequiredError(
            "this request was made for another account than the one logged in: log in as "
            "that account to send it", code="account_changed",
            details={"header": ACCOUNT_HEADER})


def current_user(required=True):
    """Return the user of this request, or raise 401 when ``required``."""
    user = g.get("user")
    if user is None and required:
        raise AuthenticationRequiredError("log in or send an API token")
    return user


def current_actor(db_session, action="read"):
    """Return the :class:`~geodata.services.ledger.Actor` for this request, checked for ``action``.

    Raises
    ------
    AuthenticationRequiredError
        401 without credentials.
    PermissionDeniedError
        403 when the role may not take ``action``.
    """
    user = current_user()
    require(user.role, action)
    return Actor(user.username, user.role, allowed_grid_ids(db_session, user))


#: A path on this site.  Browsers read a backslash as a slash ("/" + "\\evil" is "//evil",
#: another host) and drop tabs and newlines, so those and other control characters are out.
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\\\x00-\x1f\x7f]*")


def _safe_next(target):
    if target and _LOCAL_PATH.fullmatch(target) and not urlsplit(target).netloc:
        return target
    return url_for("views.index")


def login():
    """Show the login form (GET) or check the credentials and set the session (POST)."""
    # Not ``== "GET"``: a HEAD was a login attempt with empty credentials (401, rate-counted).
    if request.method != "POST":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    try:
        user = authenticate(get_session(), request.form.get("username", ""),
                            request.form.get("password", ""))
    except GridmapError as exc:
        return render_template("login.html", next=request.form.get("next", ""),
                               error=exc.message), exc.http_status
    session.clear()
    session.permanent = True
    session["uid"], session["sv"] = user.id, user.session_version
    return redirect(_safe_next(request.form.get("next")))


def logout():
    """End the session on the server and in the browser (a CSRF-protected form post)."""
    if g.get("auth") == "session":
        db = write_session()
        # g.user is the request's Account (plain values): the change goes to the User row.
        commit_or_rollback(db, lambda: end_sessions(get_user(db, g.user.username)))
    session.clear()
    return redirect(url_for("login"))


def login_page_or_user():
    """For HTML pages: the user, or a redirect response to the login form."""
    user = g.get("user")
    if user is None:
        return None, redirect(url_for("login", next=request.full_path.rstrip("?")))
    return user, None
