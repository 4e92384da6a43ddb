"""One error hierarchy for gridmap.

Every error carries an HTTP status, a stable machine code and a user-safe
message (never SQL, a DSN or a traceback), like pygeoapi's ``GenericError``.
The web layer maps them to ``{"error": {"code", "message", "details"}}``;
the CLI prints ``message`` on one line and exits 2 (bad input, usage,
configuration or database) — exit 1 is reserved for checks that find problems.
"""


class GridmapError(Exception):
    """Base class: ``http_status``, ``code``, ``message`` and a ``details`` dict."""

    http_status = 400
    code = "bad_request"

    def __init__(self, message, *, code=None, details=None, http_status=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        self.details = details or {}

    def to_dict(self):
        """Return the JSON error body ``{"error": {...}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequestError(GridmapError):
    """Input that cannot be parsed at all (400)."""


class NotFoundError(GridmapError):
    """Unknown park, grid, enterprise or hazard (404)."""

    http_status = 404
    code = "not_found"


class ConflictError(GridmapError):
    """A duplicate, a stale version or dependents in the way (409)."""

    http_status = 409
    code = "conflict"


class PreconditionFailedError(GridmapError):
    """An ``If-Match`` header that no longer matches (412)."""

    http_status = 412
    code = "precondition_failed"


class ValidationError(GridmapError):
    """Well-formed input that is geometrically or domain-invalid (422)."""

    http_status = 422
    code = "invalid_input"


class FeatureError(ValidationError):
    """A problem with one feature of an imported file or request body.

    ``details`` names the file, the 0-based feature index, the field and the
    reason, so a planner can find the row in QGIS.
    """

    def __init__(self, reason, *, code="invalid_feature", file=None, index=None,
                 field=None, **extra):
        where = []
        if file is not None:
            where.append(str(file))
        if index is not None:
            where.append(f"feature {index}")
        if field is not None:
            where.append(f"field '{field}'")
        message = (": ".join([", ".join(where), reason]) if where else reason)
        details = {"file": file, "feature": index, "field": field, "reason": reason}
        details.update(extra)
        super().__init__(message, code=code, details=details)
        self.reason = reason


class PayloadTooLargeError(GridmapError):
    """Upload, feature count or vertex count over the configured cap (413)."""

    http_status = 413
    code = "payload_too_large"


class ConfigError(GridmapError):
    """A setting that cannot work; the message names the setting to fix."""

    http_status = 500
    code = "configuration_error"


class DatabaseUnavailableError(GridmapError):
    """The database cannot be reached or is busy (503, retry later)."""

    http_status = 503
    code = "database_unavailable"


class SchemaMissingError(GridmapError):
    """The database is reachable but has no gridmap schema yet."""

    http_status = 503
    code = "schema_missing"


class SchemaOutdatedError(GridmapError):
    """The database's schema revision is not the one this code was written for (503)."""

    http_status = 503
    code = "schema_outdated"


class DatabaseMissingError(GridmapError):
    """The SpatiaLite file does not exist; only ``init-db`` and ``demo`` create one (503)."""

    http_status = 503
    code = "database_missing"
