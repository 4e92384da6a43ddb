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

And two rules for every request:

* A body over ``GRIDMAP_MAX_UPLOAD_MB`` is 413 before any other check, and
  one of unknown length (``Transfer-Encoding: chunked``) is held to it as one
  with a ``Content-Length`` is (:func:`_bound_body`).
* With ``GRIDMAP_PUBLIC_URL`` set, every absolute link an answer carries (the
  OGC API's ``links``, paging ``Link`` headers, the OpenAPI ``servers``) is
  below that address, whatever ``Host`` the request named (:class:`PublicAddress`).
  Without it the request's ``Host`` is the only address known: set it behind a
  proxy that passes any ``Host`` on.  ``X-Forwarded-*`` headers are never read.
  A redirect to this site is always relative (:func:`_relative_location`).
"""

import io
from urllib.parse import urlsplit, urlunsplit

from flask import g, request, session

from geodata.boards import check_base_url
from geodata.errors import ConfigError, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length

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


def _bound_body():
    """Refuse a body over the cap (413) before anything reads or judges it.

    A body with a ``Content-Length`` over ``MAX_CONTENT_LENGTH`` is refused
    here, so no other check (a multipart boundary, a repeated field) answers
    first.  Behind gunicorn (or any server that marks ``wsgi.input_terminated``)
    Werkzeug caps a body without ``Content-Length`` (``chunked``) by stopping
    at the cap: ``request.get_data()`` and the form parser returned the first
    bytes, so an over-cap JSON body padded with blanks was stored as its
    valid prefix, and an over-cap login form lost its CSRF token (400, not
    413).  Such a body is read here once, at most one byte over the cap, and
    handed on with its length, so every reader sees either all of it or a 413.
    """
    environ, limit = request.environ, request.max_content_length
    if limit is None:
        return
    length = get_content_length(environ)
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        return
    if "wsgi.input_terminated" not in environ:
        return  # Werkzeug reads no body at all then
    stream, body = environ["wsgi.input"], bytearray()
    while len(body) <= limit:
        chunk = stream.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(bytes(body))
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _relative_location(response):
    """Make a ``Location`` on this site relative: ``/m/``, not ``http://<Host>/m/``.

    Werkzeug's slash redirects (``/m`` → ``/m/``, a cacheable 308) name the
    request's ``Host`` header: ``Host: evil.example`` sent the browser there,
    and a ``Host`` Werkzeug cannot use gave ``http:///m/``, which a browser
    reads as the host ``m``.  A relative reference is resolved against the
    address the browser asked for, whatever it was.
    """
    location = response.headers.get("Location")
    if not location:
        return
    parts = urlsplit(location)
    if parts.scheme in ("http", "https") and parts.netloc in ("", request.host):
        path = "/" + parts.path.lstrip("/")  # never "//host": that names another site
        response.headers["Location"] = urlunsplit(("", "", path, parts.query, parts.fragment))


class PublicAddress:
    """WSGI middleware: the request's host and scheme are those of the service's public URL.

    Flask builds absolute links (``url_for(..., _external=True)``,
    ``request.base_url``) from the ``Host`` header, which any client sets:
    ``Host: evil.example`` made the OGC API's links and the paging ``Link``
    header point there, for a cache or a client to follow.  A path in the
    URL (``https://example.cn/gridmap``) becomes the links' prefix
    (``SCRIPT_NAME``), for a proxy that serves the app below it.
    """

    def __init__(self, wsgi_app, public_url):
        self.wsgi_app = wsgi_app
        parts = urlsplit(public_url)
        self.scheme, self.host, self.prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")

    def __call__(self, environ, start_response):
        """Answer ``environ`` as a request to the public address."""
        environ["wsgi.url_scheme"], environ["HTTP_HOST"] = self.scheme, self.host
        if self.prefix:
            environ["SCRIPT_NAME"] = self.prefix
        return self.wsgi_app(environ, start_response)


def init_app(app):
    """Register the header hook; call it before any other ``after_request`` so it runs last.

    The body hook is registered first too, so it runs before any other ``before_request``
    hook could read the body (the CSRF check reads the form).

    Raises
    ------
    ConfigError
        ``GRIDMAP_PUBLIC_URL`` is not an ``http(s)://`` address with a host.
    """
    settings = app.config["GRIDMAP"]
    secure = settings.secure_cookies
    app.before_request(_bound_body)
    if settings.public_url:
        try:
            public_url = check_base_url(settings.public_url)
        except ValidationError as exc:
            raise ConfigError(f"GRIDMAP_PUBLIC_URL: {exc.message}",
                              details={"setting": "GRIDMAP_PUBLIC_URL"}) from None
        app.wsgi_app = PublicAddress(app.wsgi_app, public_url)

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
        _relative_location(response)
        return response
