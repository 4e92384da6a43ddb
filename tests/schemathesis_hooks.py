"""Schemathesis hooks for gridmap: positive_data_acceptance, narrowed to what a schema can say.

Loaded by tests/test_openapi_conformance.py, and by the ``schemathesis run``
CLI through ``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``.  Some rules span
several values or the stored state (a bbox whose minimum exceeds its maximum,
a tile beyond its zoom's range, a credit code's check character, a point
outside the park, a stale version), which no OpenAPI 3.0 schema can say; a
schema-valid request refused for one of those is allowed by its error code
(:data:`CROSS_FIELD_CODES`).  Any other 400 or 422 to schema-valid data means
the document accepts a value the code refuses: a failure.
"""

import schemathesis
from schemathesis import checks
from schemathesis.core.failures import Failure

#: Error codes (or ``(code, details.field)``) a schema-valid request may still get (422
#: unless said): each breaks a rule over several values, what is stored or today's date.
CROSS_FIELD_CODES = {
    "invalid_bbox",  # minx > maxx or miny > maxy
    "invalid_tile",  # x or y beyond 2^z - 1
    "tile_too_large",  # more grids than one tile may carry
    "invalid_credit_code",  # the GB 32100 check character
    "coordinate_out_of_range",  # a latitude beyond 90 (OpenAPI 3.0 has no tuple items)
    "outside_park", "not_in_any_grid", "outside_service_area",  # where the park is
    "invalid_geometry", "empty_geometry", "outside_parent", "grid_overlap",  # shapes
    "illegal_transition", "unknown_visit", "unknown_hazard", "unknown_enterprise",  # stored
    "unknown_grid",
    "idempotency_key_reused",  # a key sent before with another request (IETF draft: 422)
    "invalid_if_match",  # 412: an entity tag naming no version (tests/test_conditional.py)
    "precondition_failed",  # 412: a stale If-Match
    "unsupported_photo",  # 415: bytes that are no JPEG or PNG
    "occurred_in_future",  # a visit more than a day after now
    # text within maxLength as sent that NFC makes longer than the column (geodata/domains.py)
    "text_too_long",
    # the keys of merge's expected_versions (grid codes): OpenAPI 3.0 has no propertyNames
    ("invalid_text", "code"), ("invalid_value", "code"), ("missing_field", "code"),
    # dates after today (a code shared with malformed dates, which the schema refuses)
    ("invalid_date", "found_date"), ("invalid_date", "received_date"),
    ("invalid_date", "supervision.checked_at"),
}


@schemathesis.check
def narrowed_positive_data_acceptance(ctx, response, case):
    """positive_data_acceptance, allowing only the answers of :data:`CROSS_FIELD_CODES`."""
    try:
        return checks.positive_data_acceptance(ctx, response, case)
    except Failure:
        try:
            error = response.json()["error"]
            code, field = error["code"], (error.get("details") or {}).get("field")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise
        if code not in CROSS_FIELD_CODES and (code, field) not in CROSS_FIELD_CODES:
            raise
        return None
