"""One table from exception to HTTP response: ``{"error": {code, message, details}}``.

No stack trace, SQL or DSN reaches a client: unknown exceptions become a
generic 500 and are logged server-side.
"""

from flask import jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from geodata.errors import GridmapError
from geodata.storage import translate_db_error


def _response(status, code, message, details=None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_response(exc):
    """The JSON response of a :class:`~geodata.errors.GridmapError`.

    503s get ``Retry-After``; 401s the ``WWW-Authenticate`` challenge RFC 9110
    requires of every 401 (RFC 6750's ``Bearer``, with ``error="invalid_token"``
    for a token refused; a cookie session logs in at ``/login``).
    """
    headers = {}
    if exc.http_status == 503:
        headers["Retry-After"] = str(exc.details.get("retry_after", 5))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gridmap"' + (
            ', error="invalid_token"' if exc.code == "invalid_token" else "")
    return _response(exc.http_status, exc.code, exc.message, exc.details, headers)


def init_app(app):
    """Register the handlers on ``app``."""
    _domain = app.errorhandler(GridmapError)(error_response)

    @app.errorhandler(SQLAlchemyError)
    def _database(exc):
        error = translate_db_error(exc)
        if error is None:
            app.logger.exception("database error")
            return _response(500, "internal_error", "internal error")
        return _domain(error)

    @app.errorhandler(HTTPException)
    def _http(exc):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code >= 500:
            # An unhandled exception (Flask logged it): the same body as an unknown
            # database error, and nothing of the exception's text.
            return _response(exc.code, "internal_error", "internal error")
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
                406: "not_acceptable", 413: "payload_too_large",
                415: "unsupported_media_type"}.get(
                    exc.code, (exc.name or "error").lower().replace(" ", "_"))
        return _response(exc.code, code, exc.description or exc.name, headers=headers)
