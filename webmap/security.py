"""Headers every response carries, whatever produced it (pages, API, static files, errors).

* No framing anywhere (clickjacking): ``X-Frame-Options: DENY`` and
  ``frame-ancestors 'none'`` in the Content-Security-Policy, appended to a
  page's own policy when it has none.
* With ``GRIDMAP_SECURE_COOKIES`` (behind TLS): ``Strict-Transport-Security``,
  and :func:`webmap.create_app` marks the session cookie ``Secure``.
"""

#: One year; no ``includeSubDomains``: other hosts of the domain are not ours to pin.
HSTS = "max-age=31536000"


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
        return response
