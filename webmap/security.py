"""Headers every response carries, whatever produced it (pages, API, static files, errors).

* No framing anywhere (clickjacking): ``X-Frame-Options: DENY`` and
  ``frame-ancestors 'none'`` in the Content-Security-Policy, appended to a
  page's own policy when it has none.
* Nothing answered to a logged-in user, and no answer that writes the session
  (a login, a CSRF token), is kept by a browser or a proxy: ``Cache-Control: private,
  no-store``.  Otherwise, on a shared phone or desk, the back button or an
  offline reload after logout showed the last user's ledger, worklist or
  export from the browser's cache.  Two kinds keep their own policy: the
  app's files (:data:`ASSET_ENDPOINTS`, no user data), and answers a route
  marks ``private, no-cache`` (photos, tiles: revalidated on every use, so
  the server checks the login each time).
* With ``GRIDMAP_SECURE_COOKIES`` (behind TLS): ``Strict-Transport-Security``,
  and :func:`webmap.create_app` marks the session cookie ``Secure``.
"""

from flask import g, request, session

#: One year; no ``includeSubDomains``: other hosts of the domain are not ours to pin.
HSTS = "max-age=31536000"

#: Endpoints serving the app's own files (scripts, styles, icons, the field app's manifest
#: and service worker): the same for everyone, so caching them leaks nothing.
ASSET_ENDPOINTS = {"static", "maps.vendor", "field.static", "field.service_worker",
                   "field.manifest"}


def _personal():
    """Whether this answer is for a logged-in user or writes the session (login, CSRF token).

    The session cookie itself is only added after the ``after_request`` hooks,
    so a changed session is read from the session object.
    """
    return g.get("user") is not None or session.modified


def init_app(app):
    """Register the header hook; call it before any other ``after_request`` so it runs last."""
    secure = app.config["GRIDMAP"].secure_cookies

    @app.after_request
    def _frame_and_transport_headers(response):
        policy = response.headers.get("Content-Security-Policy")
        if policy is None:
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        elif "frame-ancestors" not in policy:
            response.headers["Content-Security-Policy"] = (
                policy.rstrip("; ") + "; frame-ancestors 'none'")
        response.headers["X-Frame-Options"] = "DENY"
        if secure:
            response.headers["Strict-Transport-Security"] = HSTS
        cache = response.cache_control
        if (_personal() and request.endpoint not in ASSET_ENDPOINTS
                and not (cache.private and cache.no_cache)):
            response.headers["Cache-Control"] = "private, no-store"
        return response
