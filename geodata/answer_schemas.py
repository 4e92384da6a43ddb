"""JSON Schemas (OpenAPI 3.0) of the ledger's JSON answers: hazards, requests, visits.

Each one, a page of them and their history.

One definition of what :func:`geodata.services.ledger.hazard_dicts`,
:func:`geodata.services.requests.request_dicts` and
:func:`geodata.services.visits.visit_dicts` give, read by the OpenAPI
document (webmap/api.py) so Schemathesis' ``response_schema_conformance``
checks every answer, and by tests/test_openapi_conformance.py, which
validates real answers against them.  Objects are closed
(``additionalProperties: false``): a member added to a serialiser and not
here fails those tests instead of going undocumented.
"""

from geodata import domains
from geodata.models.supervision import SUPERVISION_OUTCOMES
from geodata.services.visits import KIND_NAMES
from geodata.vocabulary import (ESCALATION_LEVELS, HAZARD_LEVELS, HAZARD_STATUSES,
                                REQUEST_SOURCES, REQUEST_STATUSES, SATISFACTION_LEVELS)

_TEXT = {"type": "string"}
_DAY = {"type": "string", "format": "date"}
# Stored moments are written by isoformat(); the offset is the backend's, so no format.
_MOMENT = {"type": "string"}
_ID = domains.id_schema()
_VERSION = domains.integer_schema(0, domains.INT32_MAX)


def _nullable(schema):
    # OpenAPI 3.0.3: an enum lists null too, or nullable does not admit it.
    extra = {"enum": [*schema["enum"], None]} if "enum" in schema else {}
    return {**schema, "nullable": True, **extra}


def closed(properties, optional=()):
    """An object of exactly ``properties``, all required but ``optional``."""
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": [name for name in properties if name not in optional]}


def _enum(values):
    return {"type": "string", "enum": list(values)}


_GRID = _nullable(closed({"code": _TEXT, "name": _TEXT}))
_ENTERPRISE = closed({"name": _TEXT, "credit_code": _TEXT})
_LON = {"type": "number", "minimum": -180, "maximum": 180}
_LAT = {"type": "number", "minimum": -90, "maximum": 90}

HAZARD = closed({
    "id": _ID, "code": _TEXT, "park": _TEXT, "lon": _LON, "lat": _LAT,
    "category": _TEXT, "level": _enum(HAZARD_LEVELS), "description": _TEXT,
    "found_date": _DAY, "deadline": _nullable(_DAY),
    "status": _enum(HAZARD_STATUSES), "status_name": _TEXT, "overdue": {"type": "boolean"},
    "escalation": _enum(ESCALATION_LEVELS), "closed_at": _nullable(_MOMENT),
    "grid": _GRID, "enterprise": _nullable(_ENTERPRISE), "version": _VERSION,
    # the workflow steps the caller's role may take next (answers to a token)
    "allowed_transitions": {"type": "array", "items": _enum(HAZARD_STATUSES)},
}, optional=("allowed_transitions",))

REQUEST = closed({
    "id": _ID, "code": _TEXT, "park": _TEXT, "enterprise": _ENTERPRISE, "grid": _GRID,
    "category": _TEXT, "description": _TEXT, "received_date": _DAY,
    "source": _enum(REQUEST_SOURCES), "source_name": _TEXT,
    "visit": _nullable({"type": "string", "format": "uuid"}),
    "department": _nullable(_TEXT), "responsible": _nullable(_TEXT),
    "deadline": _nullable(_DAY), "status": _enum(REQUEST_STATUSES), "status_name": _TEXT,
    "overdue": {"type": "boolean"}, "resolution": _TEXT, "resolved_at": _nullable(_MOMENT),
    "satisfaction": _nullable(_enum(SATISFACTION_LEVELS)),
    "satisfaction_name": _nullable(_TEXT), "version": _VERSION,
    "allowed_transitions": {"type": "array", "items": _enum(REQUEST_STATUSES)},
}, optional=("allowed_transitions",))

VISIT = closed({
    "id": _ID, "client_id": {"type": "string", "format": "uuid"}, "park": _TEXT,
    "kind": _enum(KIND_NAMES), "kind_name": _TEXT, "occurred_at": _MOMENT,
    "recorded_at": _MOMENT, "local_date": _DAY,
    "week": {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"},
    "lon": _LON, "lat": _LAT, "accuracy_m": _nullable({"type": "number", "minimum": 0}),
    "actor": _TEXT, "grid": _GRID, "enterprise": _nullable(_ENTERPRISE),
    "hazard": _nullable(closed({"id": _ID, "code": _TEXT})),
    "note": _TEXT, "findings": _TEXT, "photos": {"type": "array", "items": _ID}})


_HAZARD_EVENT = closed({
    "at": _MOMENT, "actor": _TEXT, "from": _nullable(_enum(HAZARD_STATUSES)),
    "to": _enum(HAZARD_STATUSES), "action": _nullable(_TEXT), "escalation": _nullable(_TEXT),
    "note": _TEXT})
HAZARD_HISTORY = closed({
    "hazard": _ID, "events": {"type": "array", "items": _HAZARD_EVENT},
    "supervisions": {"type": "array", "items": closed({
        "supervisor": _TEXT, "checked_at": _MOMENT, "outcome": _enum(SUPERVISION_OUTCOMES),
        "note": _TEXT, "photo_id": _nullable(_ID)})}})
#: :func:`geodata.services.requests.event_dicts` under the request's id.
REQUEST_HISTORY = closed({"request": _ID, "events": {"type": "array", "items": closed({
    "at": _MOMENT, "actor": _TEXT, "from": _nullable(_enum(REQUEST_STATUSES)),
    "to": _enum(REQUEST_STATUSES), "action": _TEXT, "note": _TEXT,
    "satisfaction": _nullable(_enum(SATISFACTION_LEVELS))})}})
VISIT_HISTORY = closed({"visit": _ID, "events": {"type": "array", "items": closed({
    "at": _MOMENT, "actor": _TEXT, "action": _TEXT, "note": _TEXT})}})


def page_of(name, item):
    """The answer of a paged list: ``{total, limit, offset, <name>: [item, ...]}``."""
    count = domains.integer_schema(0, domains.INT64_MAX)
    return closed({"total": count, "limit": count, "offset": count,
                   name: {"type": "array", "items": item}})


def schemas():
    """``{name: schema}`` for the OpenAPI document's ``components/schemas``."""
    return {"Hazard": HAZARD, "Request": REQUEST, "Visit": VISIT,
            "HazardPage": page_of("hazards", {"$ref": "#/components/schemas/Hazard"}),
            "RequestPage": page_of("requests", {"$ref": "#/components/schemas/Request"}),
            "VisitPage": page_of("visits", {"$ref": "#/components/schemas/Visit"}),
            "HazardHistory": HAZARD_HISTORY, "RequestHistory": REQUEST_HISTORY,
            "VisitHistory": VISIT_HISTORY}
