"""The read-only JSON API (``/api/...``): parse the query, call :mod:`geodata`, serialise.

Query parameters are checked strictly against an allow-list per route:
an unknown parameter, a bbox that is not four finite numbers, a limit out of
range or an unknown status or level is refused with the JSON error body
(400 when the value cannot be parsed at all, 422 when it parses but is not
allowed).  Unknown parks and grids are 404s.
"""

import functools
import math
import re
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.routing import IntegerConverter, ValidationError as NoMatch

from geodata import answer_schemas, creditcode, domains
from geodata.config import Settings
from geodata.errors import BadRequestError, NotFoundError, ValidationError
from geodata.hidden import hidden_units_page
from geodata.models import HAZARD_LEVELS, HAZARD_STATUSES
from geodata.periods import local_today
from geodata.services import mapdata, tiles
from geodata.services.features import ANTIMERIDIAN
from geodata.services.ledger import CATEGORIES
from geodata.services.parks import get_park, list_parks
from geodata.services.users import allowed_grid_ids
from webmap import conditional
from webmap.db import get_session

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_ZOOM = 22
DEFAULT_HAZARD_LIMIT = 1000


class PlainIntConverter(IntegerConverter):
    r"""``<int:...>`` in every route: ASCII digits only, no leading zero, at most 4300 digits.

    Werkzeug's own converter matches ``\d+``, so ``/api/hazards/١`` (an
    Arabic-Indic one) was hazard 1, ``/api/hazards/01`` a second URL of it,
    and ``int()`` of more than 4300 digits raised inside the URL matcher: a
    500.  Such paths now match no route (404).
    """

    regex = r"(?:0|[1-9][0-9]*)"

    def to_python(self, value):
        """The int, or no match when Python will not convert that many digits."""
        number = domains.plain_number(value)
        if number is None:
            raise NoMatch()
        return number


def today():
    """The reference date for "overdue" (``app.config["TODAY"]`` in tests, else today)."""
    return current_app.config.get("TODAY") or local_today()


@functools.lru_cache(maxsize=None)
def declared_parameters():
    """``{(OpenAPI path, METHOD): query parameter names}`` of every documented operation."""
    return {(path, method.upper()): frozenset(p["name"] for p in op.get("parameters", ())
                                              if p["in"] == "query")
            for path, operations in openapi_document()["paths"].items()
            for method, op in operations.items()}


#: Bodies whose fields Werkzeug reads into ``request.form`` and ``request.files``.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.before_app_request
def check_query():
    """Refuse a repeated query parameter or form field anywhere, and under ``/api`` an
    undeclared parameter.

    One rule for every route, so a new route cannot forget it: a parameter
    given twice is 400 ``repeated_parameter`` and a form field given twice
    422 ``invalid_value`` (which of the two would a cache, a proxy or the
    route read?  ``username=admin&username=viewer`` logged in as the first),
    a multipart body without its boundary is 400 ``invalid_multipart``, and
    an ``/api`` route takes only
    the query parameters its operation declares in :func:`openapi_document`
    (422 ``unknown_parameter`` naming the allowed ones), so the document and
    the routes cannot drift apart.
    """
    for name in request.args:
        single_arg(name)
    if request.mimetype == "multipart/form-data" and not request.mimetype_params.get("boundary"):
        # Werkzeug reads such a body as no fields at all: "send the photo" hid the reason.
        raise BadRequestError("a multipart/form-data body needs the boundary parameter in its "
                              "Content-Type", code="invalid_multipart",
                              details={"header": "Content-Type"})
    if request.mimetype in FORM_TYPES:
        for name in set(request.form) | set(request.files):
            count = len(request.form.getlist(name)) + len(request.files.getlist(name))
            if count > 1:
                # 422 as the photo forms answered it first (tests/test_ledger_parity.py)
                raise ValidationError(f"send the form field {name[:80]!r} once, not {count} "
                                      "times", code="invalid_value",
                                      details={"field": name[:80]})
    rule = request.url_rule
    if rule is None or not rule.rule.startswith("/api/"):
        return
    method = "GET" if request.method == "HEAD" else request.method
    allowed = declared_parameters().get((_document_path(rule.rule), method), frozenset())
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise ValidationError(f"unknown query parameter {unknown[0][:80]!r}; allowed: "
                              f"{', '.join(sorted(allowed)) or 'none'}",
                              code="unknown_parameter",
                              details={"parameter": unknown[0][:80], "allowed": sorted(allowed)})


@functools.lru_cache(maxsize=None)
def _document_path(rule):
    # The OpenAPI path of a URL rule (``<int:hazard_id>`` → ``{hazard_id}``); rules are few.
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


@functools.lru_cache(maxsize=None)
def declared_bodies():
    """``{(OpenAPI path, METHOD): schema}`` of every documented JSON request body."""
    return {(path, method.upper()): schema
            for path, operations in openapi_document()["paths"].items()
            for method, op in operations.items()
            for schema in [op.get("requestBody", {}).get("content", {})
                           .get("application/json", {}).get("schema")] if schema}


def check_members(data):
    """Refuse a member of this request's JSON body whose shape is not the one documented.

    One rule for every JSON write, read from :func:`openapi_document`: a
    member declared an object, an array or an integer must be one (422
    ``invalid_type``), an integer within its documented range and an array
    within its documented length (422 ``invalid_value``), at any depth.
    Routes read members with ``data.get(...)``, and a falsy value of another
    type passed for absent there: ``"supervision": []`` recorded a step
    without its record, ``"neighbours": false`` reshaped with no neighbour,
    and a version outside its range was answered 409 ``stale_version``.
    ``null`` stays "absent"; text, numbers and geometries keep their own
    readers (:mod:`geodata.domains`, :func:`geodata.geometry.geometry_member`).
    """
    rule = request.url_rule
    schema = declared_bodies().get((_document_path(rule.rule), request.method))
    if schema is not None:
        for name, member in schema.get("properties", {}).items():
            _check_member(data.get(name), member, name)


def _check_member(value, schema, field):
    kind = schema.get("type")
    if value is None or "coordinates" in schema.get("required", ()):
        return  # absent, or a geometry (geometry_member says what is wrong with it)
    if kind == "integer":
        domains.integer(value, field, minimum=schema.get("minimum", domains.INT64_MIN),
                        maximum=schema.get("maximum", domains.INT64_MAX))
    elif kind == "object":
        domains.members(value, field)
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            member = schema.get("properties", {}).get(name, extra)
            if isinstance(member, dict):
                _check_member(item, member, f"{field}.{name[:80]}")
    elif kind == "array":
        domains.items(value, field, minimum=schema.get("minItems", 0),
                      maximum=schema.get("maxItems"))
        for item in value:
            _check_member(item, schema.get("items", {}), field)


def single_arg(name):
    """The query parameter ``name`` (None when absent); 400 when it is given twice."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadRequestError(f"query parameter {name!r} given {len(values)} times",
                              code="repeated_parameter", details={"parameter": name})
    return values[0] if values else None


def parse_bbox(text):
    """Parse ``minx,miny,maxx,maxy`` (degrees, EPSG:4326).

    Raises
    ------
    BadRequestError
        ``invalid_bbox`` (400): not exactly four comma-separated numbers.
    ValidationError
        ``invalid_bbox`` (422): not finite, out of lon/lat range, or min > max.
    """
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4:
        raise BadRequestError(f"bbox must be 4 comma-separated numbers minx,miny,maxx,maxy; "
                              f"got {len(parts)}", code="invalid_bbox",
                              details={"parameter": "bbox"})
    values = [domains.plain_number(p, float) for p in parts]
    if None in values:
        raise BadRequestError("bbox values must be numbers", code="invalid_bbox",
                              details={"parameter": "bbox"})
    minx, miny, maxx, maxy = values
    if not all(math.isfinite(v) for v in values):
        raise ValidationError("bbox values must be finite", code="invalid_bbox",
                              details={"parameter": "bbox"})
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90
            and -90 <= maxy <= 90):
        raise ValidationError("bbox is out of range (longitude -180..180, latitude -90..90; "
                              "lon/lat order)", code="invalid_bbox", details={"parameter": "bbox"})
    if minx > maxx or miny > maxy:
        raise ValidationError(ANTIMERIDIAN if minx > maxx else
                              "bbox minimum exceeds maximum (minx,miny,maxx,maxy)",
                              code="invalid_bbox", details={"parameter": "bbox"})
    return tuple(values)


def parse_int(name, text, minimum, maximum, default=None):
    """Parse an integer parameter: 400 if not a plain integer, 422 if out of range.

    Plain: ASCII digits with an optional sign (:func:`geodata.domains.plain_number`).
    """
    if text is None:
        return default
    value = domains.plain_number(text)
    if value is None:
        raise BadRequestError(f"{name} must be an integer (ASCII digits)", code=f"invalid_{name}",
                              details={"parameter": name})
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}",
                              code=f"invalid_{name}", details={"parameter": name,
                                                               "minimum": minimum,
                                                               "maximum": maximum})
    return value


def page_max():
    """The most rows or features one list answer carries (``GRIDMAP_API_PAGE_MAX``)."""
    return current_app.config["GRIDMAP"].api_page_max


def page_args(default=None):
    """``(limit, offset)`` of a paged list: ``limit`` 1..the page cap, default the cap.

    Every JSON list of a park's grids, features or rows is paged with these
    two parameters, so no answer grows with the park (docs/scaling.md,
    "Every list is bounded").  ``default`` lowers the default page size only.
    """
    cap = page_max()
    limit = parse_int("limit", single_arg("limit"), 1, cap, default=min(default or cap, cap))
    return limit, parse_int("offset", single_arg("offset"), 0, 10**9, default=0)


def paged(response, matched, limit, offset):
    """Mark ``response`` as one page: ``X-Total-Count`` and a ``Link: <…>; rel="next"``.

    The next page's address is this request's with ``offset`` moved on; a
    FeatureCollection also carries it in its ``links`` (see :func:`page_links`).
    """
    response.headers["X-Total-Count"] = str(matched)
    for link in page_links(matched, limit, offset):
        response.headers["Link"] = f'<{link["href"]}>; rel="next"'
    return response


def page_links(matched, limit, offset):
    """``[{"rel": "next", "href": …}]`` while rows are left after this page, else ``[]``."""
    if offset + limit >= matched:
        return []
    args = {**request.args.to_dict(), "limit": limit, "offset": offset + limit}
    return [{"rel": "next", "type": "application/json",
             "href": f"{request.base_url}?{urlencode(args)}"}]


def _paged_collection(collection, limit, offset):
    """A FeatureCollection page with its ``links`` and the paging headers."""
    collection["links"] = page_links(collection["numberMatched"], limit, offset)
    return paged(_geojson(collection), collection["numberMatched"], limit, offset)


def parse_bool(name, text):
    """Parse ``true``/``false`` (also 1/0); 422 otherwise."""
    if text is None:
        return None
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise ValidationError(f"{name} must be true or false", code=f"invalid_{name}",
                              details={"parameter": name})
    return value


def parse_choices(name, text, allowed):
    """Parse a comma-separated list of allowed values; 422 naming an unknown one."""
    if text is None:
        return ()
    values = tuple(v.strip() for v in text.split(","))
    for v in values:
        if v not in allowed:
            raise ValidationError(f"unknown {name} {v!r}; allowed: {', '.join(allowed)}",
                                  code=f"unknown_{name}",
                                  details={"parameter": name, "allowed": list(allowed)})
    return values


def published_only():
    """Where this user sees only published contacts (see :func:`mapdata.grid_summaries`).

    True for a visitor who is not logged in: unpublished phones (公示
    withheld) are for logged-in users; the grid boards and everything public
    show only what is published.  A grid member sees them in their own grids
    only (the frozenset of their grid ids); other users everywhere (False).
    """
    if g.get("user") is None:
        return True
    grid_ids = allowed_grid_ids(get_session(), g.user)
    return False if grid_ids is None else frozenset(grid_ids)


def _geojson(payload):
    response = jsonify(payload)
    response.mimetype = "application/geo+json"
    return response


@bp.get("/parks")
def parks():
    """All parks as a FeatureCollection (boundaries simplified for zoom 12)."""
    session = get_session()
    parks = list_parks(session)
    overviews = mapdata.park_overviews(session, parks, today())
    return _geojson(mapdata.feature_collection(
        [mapdata.park_feature(session, p, zoom=12, overview=overviews[p.id]) for p in parks]))


@bp.get("/parks/<code>")
def park(code):
    """One park: boundary (``zoom`` simplifies it) and headline counts."""
    session = get_session()
    zoom = parse_int("zoom", single_arg("zoom"), 0, MAX_ZOOM)
    return _geojson(mapdata.park_feature(session, get_park(session, code), zoom=zoom,
                                         today=today()))


@bp.get("/parks/<code>/grids")
def grids(code):
    """Grids of one level, by bbox, coverage-simplified for ``zoom``."""
    session = get_session()
    park_ = get_park(session, code)
    limit, offset = page_args()
    return _paged_collection(mapdata.grid_layer(
        session, park_, level=parse_int("level", single_arg("level"), 1, 9, default=1),
        bbox=parse_bbox(single_arg("bbox")),
        zoom=parse_int("zoom", single_arg("zoom"), 0, MAX_ZOOM),
        limit=limit, offset=offset, today=today(), published_only=published_only()),
        limit, offset)


@bp.get("/parks/<code>/tiles/grids/<int:z>/<int:x>/<int:y>.mvt")
def grid_tile(code, z, x, y):
    """Grids of one level as a Mapbox vector tile, with an ETag; 304 on ``If-None-Match``.

    ``Cache-Control: no-cache``: browsers keep the tile but revalidate it on
    each use, so an edit or a hazard shows at once and an unchanged tile
    costs a 304 (built, not sent: the ETag is its digest, which any writer's
    change moves).  ``private``: tiles follow the API's access rules, so
    shared caches must not keep them.
    """
    session = get_session()
    park_ = get_park(session, code)
    level = parse_int("level", single_arg("level"), 1, 9, default=1)
    tile = tiles.grid_tile(session, park_, z, x, y, today=today(), level=level)
    etag = tiles.tile_etag(tile)
    # The weak comparison (RFC 9110 section 13.1.2): a compressing proxy weakens the tag.
    if request.if_none_match.contains_weak(etag):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(tile,
                                              mimetype="application/vnd.mapbox-vector-tile")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.get("/parks/<code>/grids/<grid_code>")
def grid(code, grid_code):
    """One grid: authoritative geometry and full summary."""
    session = get_session()
    return _geojson(mapdata.grid_feature(session, get_park(session, code), grid_code,
                                         today=today(), published_only=published_only()))


@bp.get("/parks/<code>/summaries")
def summaries(code):
    """Per-grid summaries of the active grids, keyed by grid code, one page in code order."""
    session = get_session()
    park_ = get_park(session, code)
    limit, offset = page_args()
    return paged(jsonify(mapdata.grid_summaries(session, park_, today=today(),
                                                published_only=published_only(),
                                                limit=limit, offset=offset)),
                 mapdata.count_active_grids(session, park_), limit, offset)


@bp.get("/parks/<code>/summaries/<grid_code>")
def summary(code, grid_code):
    """One grid's summary (staff with phones, hidden units, hazard counts)."""
    session = get_session()
    return jsonify(mapdata.grid_summary(session, get_park(session, code), grid_code,
                                        today=today(), published_only=published_only()))


@bp.get("/parks/<code>/enterprises")
def enterprises(code):
    """Enterprise sites with the hidden flag; ``hidden=true`` keeps only hidden units."""
    session = get_session()
    limit, offset = page_args()
    return _paged_collection(mapdata.enterprise_layer(
        session, get_park(session, code), bbox=parse_bbox(single_arg("bbox")),
        hidden=parse_bool("hidden", single_arg("hidden")), limit=limit, offset=offset),
        limit, offset)


@bp.get("/parks/<code>/hidden-units")
def hidden_units(code):
    """Hidden sub-unit candidates: ``[{name, credit_code, host, grid, reason, ...}]``."""
    session = get_session()
    limit, offset = page_args()
    units, total = hidden_units_page(session, get_park(session, code), limit, offset)
    return paged(jsonify([u.to_dict() for u in units]), total, limit, offset)


@bp.get("/parks/<code>/hazards")
def hazards(code):
    """Hazards filtered by status, level, grid, overdue and bbox, paged by limit/offset."""
    session = get_session()
    park_ = get_park(session, code)
    query = mapdata.HazardQuery(
        status=parse_choices("status", single_arg("status"), HAZARD_STATUSES + ("open",)),
        level=parse_choices("level", single_arg("level"), HAZARD_LEVELS),
        grid=single_arg("grid"), overdue=parse_bool("overdue", single_arg("overdue")),
        bbox=parse_bbox(single_arg("bbox")))
    query.limit, query.offset = page_args(default=DEFAULT_HAZARD_LIMIT)
    if "open" in query.status:
        query.status = tuple(sorted(set(query.status) - {"open"} | set(mapdata.OPEN)))
    return _paged_collection(mapdata.hazard_layer(session, park_, query, today=today()),
                             query.limit, query.offset)


@bp.get("/parks/<code>/search")
def search(code):
    """Grids (code or name) and enterprises (name) matching ``q``, with their bbox."""
    q = domains.text(single_arg("q"), "q", kind="search") or ""
    session = get_session()
    return jsonify(mapdata.search(session, get_park(session, code), q))


@bp.get("/parks/<code>/coverage")
def coverage(code):
    """Coverage problems as GeoJSON, once the coverage engine is installed (else 404).

    The ETag is the park's coverage stamp, renewed by the database on every
    change of its grids or boundary: ``If-None-Match`` with it is a 304
    without the check.
    """
    session = get_session()
    limit, offset = page_args()
    park = get_park(session, code)
    if not mapdata.coverage_available():
        raise NotFoundError("the coverage engine is not installed in this version",
                            code="not_available")
    known = mapdata.coverage_version(session, park)
    unchanged = None if known is None else conditional.not_modified(known)
    if unchanged is not None:
        return unchanged
    stamp, layer = mapdata.coverage_layer(session, park)
    problems = layer["features"]
    layer.update(features=problems[offset:offset + limit], numberMatched=len(problems),
                 numberReturned=len(problems[offset:offset + limit]))
    response = _paged_collection(layer, limit, offset)
    return response if stamp is None else conditional.with_etag(response, stamp)


def _param(name, description, schema, where="query", required=False):
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema}


# Every value below is declared with its domain from geodata/domains.py (lengths,
# alphabets, ranges, date years), so the document refuses what the routes refuse.
_TEXT = domains.text_schema
_INT = domains.id_schema()
_PARK = _param("code", "Park code", domains.code_schema("park"), "path")
_GRID = _param("grid_code", "Grid code", domains.code_schema("grid"), "path")
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)"
_LAT = r"-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)"
_BBOX = _param("bbox", "minx,miny,maxx,maxy in degrees (EPSG:4326), min <= max",
               {"type": "string", "pattern": f"^{_LON},{_LAT},{_LON},{_LAT}$"})
_OFFSET = _param("offset", "Rows to skip (the Link rel=next header and a FeatureCollection's "
                 "links give the next page; X-Total-Count the total)",
                 domains.integer_schema(0, domains.OFFSET_MAX))
_ZOOM = _param("zoom", "Web-map zoom: simplify for it (omit for authoritative geometry)",
               domains.integer_schema(0, MAX_ZOOM))
_LEVEL = _param("level", "Grid level (1 grids, 2 sub-grids)", domains.integer_schema(1, 9))
_BOOL = {"type": "boolean"}
_CREDIT_CODE = creditcode.json_schema()


def _page(cap=None, default=None):
    """``limit`` (1..``cap``, default the API page cap) and ``offset`` parameters."""
    paged_ = cap is None  # the API page cap: such lists carry X-Total-Count and Link
    cap = cap or (page_max() if current_app else Settings().api_page_max)
    limit = _param("limit", f"Page size: 1 to {cap}, default {min(default or cap, cap)}",
                   domains.integer_schema(1, cap))
    limit["x-paged"] = paged_
    return [limit, _OFFSET]


def _choices(names, *, many=False):
    """A value of ``names`` (the keys a route's parser takes), or with ``many`` a list of them."""
    names = sorted(names)
    if not many:
        return {"type": "string", "enum": names}
    one = "|".join(re.escape(n) for n in names)
    return {"type": "string", "pattern": f"^({one})(,({one}))*$"}


#: The geometry of a FeatureCollection or Feature answer.
_FEATURE = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
    "type": {"type": "string", "enum": ["Feature"]},
    "geometry": {"type": "object", "nullable": True},
    "properties": {"type": "object"}}}


def _get(summary, params, kind="geojson"):
    content = "application/geo+json" if kind in ("geojson", "feature") else "application/json"
    schema = {"geojson": {"$ref": "#/components/schemas/FeatureCollection"},
              "feature": _FEATURE, "object": {"type": "object"},
              "array": {"type": "array"}}[kind]
    return {"get": {"summary": summary, "parameters": params, "responses": {
        "200": {"description": "OK", "content": {content: {"schema": schema}}}}}}


def _json_op(summary, params, body, *, method="post", ok="200", secured=True, answer=None):
    """One operation with a JSON body (or none), answering JSON or the error body.

    ``answer``: the name of the answer's schema in geodata/answer_schemas.py.
    """
    schema = {"$ref": f"#/components/schemas/{answer}"} if answer else {"type": "object"}
    operation = {"summary": summary, "parameters": params, "responses": {ok: {
        "description": "OK", "content": {"application/json": {"schema": schema}}}}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": body}}}
    if secured:
        operation["security"] = [{"bearer": []}]
    return {method: operation}


def _versioned_get(summary, params, answer=None):
    """A GET of one versioned thing: ETag ``"<version>.<digest>"``, 304 on ``If-None-Match``."""
    operation = _json_op(summary, params + [_IF_NONE_MATCH], None, method="get", answer=answer)
    # Marks the ETag as led by the row's version, the one its writes take in If-Match.
    operation["get"]["x-etag"] = "version"
    return operation


def _upload_op(summary, params):
    """A multipart photo upload: ``photo`` (JPEG or PNG) and an optional ``tag``."""
    operation = _json_op(summary, params, None, ok="201")
    operation["post"]["requestBody"] = {"required": True, "content": {"multipart/form-data": {
        "schema": _object({"photo": {"type": "string", "format": "binary"},
                           "tag": {"type": "string", "enum": ["before", "after", "visit"],
                                   "description": "整改前/整改后/走访; default before"}},
                          ["photo"])}}}
    return operation


def _image_op(summary):
    """A GET answering an image (or 304 for a matching ``If-None-Match``) or the error body."""
    return {"get": {
        "summary": summary, "security": [{"bearer": []}],
        "parameters": [_param("photo_id", "Photo id", _INT, "path"), _IF_NONE_MATCH],
        "responses": {"200": {"description": "The image", "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/jpeg", "image/png")}}}}}


def _object(properties, required=()):
    # Unknown members are refused (422 unknown_property), as the document says.  OpenAPI
    # 3.0 (JSON Schema draft 4) wants ``required`` left out rather than empty.
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


#: The version read, on every versioned write: a list of entity tags, as
#: :func:`geodata.versions.parse_if_match` reads it (anything else is 400).
_TAG = r'(W/)?"[^"\x00-\x20\x7f]*"[ \t]*'
_ETAGS = f"^[ \\t,]*({_TAG}(,[ \\t,]*{_TAG})*)?[ \\t,]*$"
_IF_MATCH = _param("If-Match", 'The ETag read, e.g. "3" (a list matches any member; * is 428; '
                   "a stale one 412); or the body's version",
                   {"type": "string", "pattern": _ETAGS}, "header")
_IF_NONE_MATCH = _param("If-None-Match", "The ETag already held: 304 while it is current",
                        {"type": "string"}, "header")
_IDEMPOTENCY_KEY = _param("Idempotency-Key", "1-64 of A-Za-z0-9_-: a retry is answered, not "
                          "redone", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                          "header")
_ACCOUNT = _param("X-Gridmap-User", "The account (URL-quoted user name) the request is sent "
                  "for: 401 account_changed when another one is logged in", {"type": "string"},
                  "header")
#: A position: lon, lat (3D is refused, unsupported_dimension).  OpenAPI 3.0 has one
#: ``items`` schema per array, so a latitude beyond 90 is left to the route (422).
_LONLAT = {"type": "array", "minItems": 2, "maxItems": 2,
           "items": {"type": "number", "minimum": -180, "maximum": 180}}
#: A closed ring needs four positions, a line two (geodata/geometry.py refuses fewer).
_LINE = {"type": "array", "items": _LONLAT, "minItems": 2}
_POLYGON = {"type": "array", "minItems": 1,
            "items": {"type": "array", "items": _LONLAT, "minItems": 4}}


def _geometry(*types):
    """A GeoJSON geometry of one of ``types``, its coordinates nested as the type says.

    Validity (rings closed and simple, inside the park, no overlap) is checked by the
    route (422): the document cannot say it.
    """
    nesting = {"LineString": _LINE, "Polygon": _POLYGON,
               "MultiPolygon": {"type": "array", "items": _POLYGON, "minItems": 1}}
    return {"oneOf": [_object({"type": {"type": "string", "enum": [kind]},
                               "coordinates": nesting[kind]}, ["type", "coordinates"])
                      for kind in types]}


#: A point as ``location`` (GeoJSON) or ``lon`` and ``lat``, never both.
_POINT_MEMBERS = {"lon": {"type": "number", "minimum": -180, "maximum": 180},
                  "lat": {"type": "number", "minimum": -90, "maximum": 90},
                  "location": _object({"type": {"type": "string", "enum": ["Point"]},
                                       "coordinates": _LONLAT}, ["type", "coordinates"])}
_ONE_POINT = {"oneOf": [{"required": ["location"], "not": {"anyOf": [
    {"required": ["lon"]}, {"required": ["lat"]}]}}, {"required": ["lon", "lat"],
                                                      "not": {"required": ["location"]}}]}


def _write_paths():
    """The hazard ledger and grid-edit routes (bearer token; see webmap/hazards_api.py)."""
    from geodata.services.hazards import LEVEL_NAMES, STATUS_NAMES
    from geodata.models import ESCALATION_LEVELS

    hazard = _param("hazard_id", "Hazard id", _INT, "path")
    version = {"version": domains.integer_schema(0, domains.INT32_MAX)}
    edit_base = {"reason": _TEXT("reason"),
                 "expected_version": domains.integer_schema(0, domains.INT32_MAX)}
    edit = "/api/parks/{code}/edits"
    grid_code = domains.code_schema("grid")
    ledger_filters = {"park": domains.code_schema("park"),
                      "status": _choices(STATUS_NAMES), "level": _choices(LEVEL_NAMES),
                      "escalation": _choices(ESCALATION_LEVELS),
                      "category": _choices(CATEGORIES), "grid": {"type": "string"},
                      "overdue": _BOOL}
    create = _object({
        **_POINT_MEMBERS, "category": {"type": "string", "enum": list(CATEGORIES)},
        "level": {"type": "string", "enum": list(HAZARD_LEVELS)},
        "description": _TEXT("note"), "found_date": domains.day_schema(),
        "code": domains.ledger_code_schema("YH")}, ["category"])
    create.update(_ONE_POINT)
    return {
        "/api/parks/{code}/hazards": {**_get("Hazards, filtered", [
            _PARK, _param("status", "Comma-separated statuses (open = not closed)",
                          _choices(HAZARD_STATUSES + ("open",), many=True)),
            _param("level", "Comma-separated levels", _choices(HAZARD_LEVELS, many=True)),
            _param("grid", "Grid code (its sub-grids included)", {"type": "string"}),
            _param("overdue", "Open and past the deadline", _BOOL), _BBOX,
            *_page(default=DEFAULT_HAZARD_LIMIT)]),
            **_json_op("Log a hazard at a point", [_PARK, _IDEMPOTENCY_KEY], create,
                       ok="201", answer="Hazard")},
        "/api/hazards": _json_op("The ledger, filtered and paged", [
            _param(n, n, s) for n, s in ledger_filters.items()] + _page(1000, 100), None,
            method="get", answer="HazardPage"),
        "/api/hazards/{hazard_id}": _versioned_get("One hazard", [hazard], "Hazard"),
        "/api/hazards/{hazard_id}/history": _json_op("Its events and supervision records",
                                                     [hazard], None, method="get",
                                                     answer="HazardHistory"),
        "/api/hazards/{hazard_id}/transitions": _json_op("Move it through the workflow", [
            hazard, _IF_MATCH, _IDEMPOTENCY_KEY], _object({
                "to": {"type": "string", "enum": list(HAZARD_STATUSES)},
                "note": _TEXT("note"), "deadline": domains.day_schema(),
                "supervision": _object({
                    "outcome": {"type": "string", "enum": ["passed", "failed"]},
                    "note": _TEXT("note"), "supervisor": _TEXT("person"), "photo_id": _INT,
                    "checked_at": domains.moment_schema()}),
                **version}, ["to", "version"]), answer="Hazard"),
        "/api/hazards/{hazard_id}/escalations": _json_op("Raise its escalation level", [
            hazard, _IF_MATCH, _IDEMPOTENCY_KEY], _object({
                "to": {"type": "string", "enum": list(ESCALATION_LEVELS)},
                "reason": _TEXT("note", required=True), **version},
                ["to", "reason", "version"]), answer="Hazard"),
        "/api/hazards/{hazard_id}/photos": {
            **_json_op("Its photos, with their URLs", [hazard], None, method="get"),
            **_upload_op("Upload a photo (JPEG/PNG; stored re-encoded without metadata)",
                         [hazard, _IDEMPOTENCY_KEY])},
        "/api/photos/{photo_id}": _image_op("One photo (same access as its hazard)"),
        "/api/photos/{photo_id}/thumbnail": _image_op("A photo's thumbnail"),
        "/api/parks/{code}/dashboard": _json_op("The park's ledger figures (by_grid: one "
                                                "page of the grids)", [_PARK, *_page()], None,
                                                method="get"),
        **_visit_paths(),
        edit: _versioned_get("The park's grid edits, newest first, paged", [_PARK, *_page()]),
        f"{edit}/state": _versioned_get("Grids, versions and coverage for the editor (bbox: the "
                                        "view; required above GRIDMAP_API_PAGE_MAX grids)",
                                        [_PARK, _BBOX]),
        f"{edit}/draw": _json_op("Draw a new grid", [_PARK, _IF_MATCH, _IDEMPOTENCY_KEY],
                                 _object({"geometry": _geometry("Polygon", "MultiPolygon"),
                                          "name": _TEXT("name", max_length=100),
                                          "reason": _TEXT("reason")}, ["geometry"])),
        f"{edit}/reshape": _json_op("Reshape a grid", [_PARK, _IF_MATCH, _IDEMPOTENCY_KEY],
                                    _object({"code": grid_code,
                                             "geometry": _geometry("Polygon", "MultiPolygon"),
                                             "neighbours": {"type": "array",
                                                            "items": grid_code},
                                             **edit_base}, ["code", "geometry"])),
        f"{edit}/split": _json_op("Split a grid by a line or into parts", [
            _PARK, _IF_MATCH, _IDEMPOTENCY_KEY], {**_object(
                {"code": grid_code, "line": _geometry("LineString"),
                 "parts": domains.integer_schema(2, 50), **edit_base}, ["code"]),
                "oneOf": [{"required": ["line"]}, {"required": ["parts"]}]}),
        f"{edit}/merge": _json_op("Merge grids", [_PARK, _IF_MATCH, _IDEMPOTENCY_KEY], _object(
            {"codes": {"type": "array", "items": grid_code, "minItems": 2, "maxItems": 100},
             "reason": _TEXT("reason"),
             "expected_versions": {"type": "object", "additionalProperties":
                                   domains.integer_schema(0, domains.INT32_MAX)}},
            ["codes"])),
        f"{edit}/retire": _json_op("Retire a grid", [_PARK, _IF_MATCH, _IDEMPOTENCY_KEY],
                                   _object({"code": grid_code, "to": grid_code, **edit_base},
                                           ["code"])),
    }


def _request_paths():
    """The request ledger routes (bearer token; see webmap/requests_api.py)."""
    from geodata.services.requests import SOURCE_KEYS, STATUS_KEYS
    from geodata.vocabulary import (DEFAULT_REQUEST_CATEGORIES, REQUEST_SOURCES,
                                    REQUEST_STATUSES, SATISFACTION_LEVELS)

    item = _param("request_id", "Request id", _INT, "path")
    new = _object({
        "enterprise": _CREDIT_CODE, "category": {"type": "string",
                                                 "enum": list(DEFAULT_REQUEST_CATEGORIES)},
        "description": _TEXT("note", required=True),
        "source": {"type": "string", "enum": list(REQUEST_SOURCES)},
        "received_date": domains.day_schema(),
        "visit": {"type": "string", "format": "uuid"}},
        ["enterprise", "category", "description", "source"])
    filters = {"park": domains.code_schema("park"), "status": _choices(STATUS_KEYS),
               "category": _choices(DEFAULT_REQUEST_CATEGORIES), "grid": {"type": "string"},
               "enterprise": {"type": "string"}, "source": _choices(SOURCE_KEYS),
               "overdue": _BOOL}
    return {
        "/api/parks/{code}/requests": _json_op("Take an enterprise's request (受理)",
                                               [_PARK, _IDEMPOTENCY_KEY], new, ok="201",
                                               answer="Request"),
        "/api/requests": _json_op("The request ledger, filtered and paged", [
            _param(n, n, s) for n, s in filters.items()] + _page(1000, 100), None,
            method="get", answer="RequestPage"),
        "/api/requests/{request_id}": _versioned_get("One request", [item], "Request"),
        "/api/requests/{request_id}/history": _json_op("Its events", [item], None,
                                                       method="get", answer="RequestHistory"),
        "/api/requests/{request_id}/transitions": _json_op(
            "Move it: 受理 → 交办 → 办理 → 办结 → 回访", [item, _IF_MATCH, _IDEMPOTENCY_KEY],
            _object({
                "to": {"type": "string", "enum": list(REQUEST_STATUSES)},
                "note": _TEXT("note"), "department": _TEXT("name"),
                "responsible": _TEXT("person"), "deadline": domains.day_schema(),
                "satisfaction": {"type": "string", "enum": list(SATISFACTION_LEVELS)},
                "version": domains.integer_schema(0, domains.INT32_MAX)}, ["to", "version"]),
            answer="Request"),
    }


def _visit_paths():
    """The field-work routes (webmap/visits_api.py); writes accept ``Idempotency-Key``."""
    from geodata.services.visits import _KINDS, ACCURACY_MAX_M

    visit = _param("visit_id", "Visit id", _INT, "path")
    photo = {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": _object({"photo": {"type": "string", "format": "binary"},
                           "tag": {"type": "string", "enum": ["before", "after", "visit"],
                                   "description": "整改前/整改后/走访; default visit"}},
                          ["photo"])}}}}
    # The hazard's photos (GET and the upload with its tag) are in _write_paths: an entry
    # here replaced them, and the list of a hazard's photos went undocumented.
    photos = {
        "/api/visits/{visit_id}/photos": _json_op("Add a JPEG/PNG photo",
                                                  [visit, _IDEMPOTENCY_KEY], None, ok="201"),
    }
    for path in photos.values():
        path["post"].update(photo)
    new = _object({
        "client_id": {"type": "string", "format": "uuid"},
        "kind": _choices(_KINDS), "occurred_at": domains.moment_schema(),
        **_POINT_MEMBERS, "accuracy_m": {"type": "number", "minimum": 0,
                                         "maximum": ACCURACY_MAX_M},
        "enterprise": _CREDIT_CODE, "hazard_id": _INT,
        "note": _TEXT("note"), "findings": _TEXT("note")},
        ["client_id", "kind", "occurred_at"])
    new.update(_ONE_POINT)
    # A re-check names the hazard it re-checks; other kinds name none.
    recheck = {"type": "string", "enum": sorted(k for k, v in _KINDS.items() if v == "recheck")}
    new["anyOf"] = [{"properties": {"kind": recheck}, "required": ["hazard_id"]},
                    {"properties": {"kind": {"not": recheck}}, "not": {"required": ["hazard_id"]}}]
    create = _json_op("Log a patrol, visit or re-check (200: this client_id was logged "
                      "already)", [_PARK, _IDEMPOTENCY_KEY], new, ok="201", answer="Visit")
    create["post"]["responses"]["200"] = create["post"]["responses"]["201"]
    week = "(197[1-9]|19[89][0-9]|20[0-9][0-9])-W(0[1-9]|[1-4][0-9]|5[0-2])"
    return {
        "/api/parks/{code}/visits": create,
        "/api/visits": _json_op("Visits, filtered and paged", [
            _param("park", "Park code", domains.code_schema("park")),
            _param("grid", "Grid code", {"type": "string"}),
            _param("enterprise", "Credit code", _TEXT("name")),
            _param("kind", "patrol, visit or recheck", _choices(_KINDS)),
            _param("from", "occurred_at from (ISO date-time)", domains.moment_schema()),
            _param("to", "occurred_at before (ISO date-time)", domains.moment_schema()),
            *_page(1000, 100)], None, method="get", answer="VisitPage"),
        "/api/visits/{visit_id}": _json_op("One visit", [visit], None, method="get",
                                           answer="Visit"),
        "/api/visits/{visit_id}/history": _json_op("Its events", [visit], None, method="get",
                                                   answer="VisitHistory"),
        **photos,
        "/api/me/worklist": _json_op("My work list and offline bundle", [
            _param("park", "Park code", domains.code_schema("park"), required=True)], None,
            method="get"),
        "/api/parks/{code}/visits/due": _json_op("Visits and re-checks due, coverage", [
            _PARK, _param("week", "ISO week, e.g. 2026-W48",
                          {"type": "string", "pattern": f"^{week}$"})], None, method="get"),
        "/api/parks/{code}/visits/layer": {"get": {
            **_get("Overdue enterprises, grids not patrolled today, by bbox and paged",
                   [_PARK, _BBOX, *_page()])["get"], "security": [{"bearer": []}]}},
    }


#: Answers every /api operation may give: a repeated parameter (400), a bad token or
#: X-Gridmap-User (401), an undeclared parameter or bad value (422), the database down or
#: busy (503 with Retry-After); 404 where a park, grid or row is looked up.
COMMON_ERRORS = ("400", "401", "404", "422", "503")
#: Added where a role is checked (bearer-secured operations).
SECURED_ERRORS = ("403",)
#: Added to every operation with a request body: too large, wrong media type.
BODY_ERRORS = ("413", "415")
#: Added to versioned writes (If-Match or the body's version): stale, precondition.
VERSIONED_ERRORS = ("409", "412", "428")


def _header(description, schema=None, required=True):
    return {"description": description, "required": required,
            "schema": schema or {"type": "string"}}


def _complete(paths):
    """Add what every operation shares: headers, error answers, paging and version headers.

    One place for them, so no route's document forgets the 401 of a bad token, the 503 of
    a busy database, the ETag of a versioned answer or the paging headers of a list.
    """
    for operations in paths.values():
        for method, op in operations.items():
            names = {p["name"] for p in op["parameters"]}
            paged_ = any(p.get("x-paged") for p in op["parameters"])
            op["parameters"].append(_ACCOUNT)
            codes = list(COMMON_ERRORS)
            if "security" in op:
                codes += SECURED_ERRORS
            if "requestBody" in op:
                codes += BODY_ERRORS
            if "If-Match" in names:
                codes += VERSIONED_ERRORS
            responses = op["responses"]
            for code in codes:
                name = {"503": "Unavailable", "401": "Unauthorized"}.get(code, "Error")
                responses.setdefault(code, {"$ref": f"#/components/responses/{name}"})
            ok = [r for c, r in responses.items() if c in ("200", "201")]
            for answer in ok:
                headers = answer.setdefault("headers", {})
                if paged_:
                    headers["X-Total-Count"] = _header("Rows matched, all pages",
                                                       {"type": "integer", "minimum": 0})
                    headers["Link"] = _header('<next page>; rel="next" while rows are left',
                                              required=False)
                if op.get("x-etag") or "If-Match" in names or "Idempotency-Key" in names:
                    headers["ETag"] = _header("The version, on a read with the answer's digest "
                                              "(strong ETag, a valid If-Match)", required=False)
                if "201" in responses and answer is responses["201"]:
                    headers["Location"] = _header("The new thing's address")
            if "If-None-Match" in names:
                # A row's ETag is its version and the answer's digest; a tile's or photo's a
                # digest.
                etag = _header("The current ETag", {"type": "string", "pattern": _ETAGS}
                               if op.get("x-etag") else None)
                responses["304"] = {"description": "Not modified (If-None-Match holds the "
                                                   "current ETag)", "headers": {"ETag": etag}}
            if "Idempotency-Key" in names:
                for answer in ok:
                    answer["headers"]["Idempotent-Replayed"] = _header(
                        "true: the stored answer of an earlier request with this key",
                        {"type": "string", "enum": ["true"]}, required=False)
    return paths


def openapi_document():
    """Return the OpenAPI 3.0 document (a dict) describing every ``/api`` route."""
    paths = {
        "/api/parks": _get("All parks with headline counts", []),
        "/api/parks/{code}": _get("One park: boundary and counts", [_PARK, _ZOOM], "feature"),
        "/api/parks/{code}/grids": _get("Grids of one level by bbox, simplified for zoom", [
            _PARK, _LEVEL, _BBOX, _ZOOM, *_page()]),
        "/api/parks/{code}/grids/{grid_code}": _get(
            "One grid, authoritative geometry and summary", [_PARK, _GRID], "feature"),
        "/api/parks/{code}/summaries": _get("Per-grid summaries, one page in code order",
                                            [_PARK, *_page()], "object"),
        "/api/parks/{code}/summaries/{grid_code}": _get("One grid's summary", [_PARK, _GRID],
                                                        "object"),
        "/api/parks/{code}/enterprises": _get("Enterprise sites with the hidden flag", [
            _PARK, _BBOX, _param("hidden", "Only hidden units (true) or only others (false)",
                                 _BOOL), *_page()]),
        "/api/parks/{code}/hidden-units": _get("Hidden sub-unit candidates", [_PARK, *_page()],
                                               "array"),
        "/api/parks/{code}/enterprises/{credit_code}": _json_op(
            "One file per enterprise (一企一档): site, grid and staff, hidden units or host, "
            "hazards, requests and visits with history, satisfaction (webmap/enterprises.py)",
            [_PARK, _param("credit_code", "Unified social credit code (GB 32100-2015)",
                           _CREDIT_CODE, "path")], None, method="get"),
        "/api/parks/{code}/search": _get("Grids and enterprises matching q", [
            _PARK, _param("q", "Grid code or name, or enterprise name", _TEXT("search"))],
            "array"),
        **_write_paths(),
        **_request_paths(),
    }
    if mapdata.coverage_available():
        checked = _get("Coverage problems (ETag: the park's coverage stamp, renewed by every "
                       "change of its grids or boundary; 304 on If-None-Match)",
                       [_PARK, *_page(), _IF_NONE_MATCH])
        checked["get"]["responses"]["200"]["headers"] = {"ETag": _header("The coverage stamp")}
        paths["/api/parks/{code}/coverage"] = checked
    tile = [_param(n, f"Tile {n} (x and y below 2^z)", domains.integer_schema(
        0, MAX_ZOOM if n == "z" else 2**MAX_ZOOM - 1), "path", True) for n in ("z", "x", "y")]
    paths["/api/parks/{code}/tiles/grids/{z}/{x}/{y}.mvt"] = {"get": {
        "summary": "Grids as a Mapbox vector tile (ETag; 304 on If-None-Match)",
        "parameters": [_PARK, *tile, _LEVEL, _IF_NONE_MATCH],
        "responses": {
            "200": {"description": "MVT", "content": {"application/vnd.mapbox-vector-tile": {
                "schema": {"type": "string", "format": "binary"}}},
                "headers": {"ETag": _header("The tile's version")}}}}}
    paths["/api/openapi.json"] = {"get": {"summary": "This document", "parameters": [],
                                          "responses": {"200": {"description": "OK", "content": {
                                              "application/json": {"schema": {
                                                  "type": "object"}}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "gridmap API", "version": "1",
                 "description": "Parks, grids, enterprises and hazards as GeoJSON "
                                "(EPSG:4326); the hazard ledger and grid edits with an API "
                                "token (Authorization: Bearer). Value domains: "
                                "geodata/domains.py. Errors: {error: {code, message, "
                                "details}}."},
        "paths": _complete(paths),
        "components": {
            "schemas": {
                "FeatureCollection": {"type": "object", "required": ["type", "features"],
                                      "properties": {"type": {"type": "string",
                                                              "enum": ["FeatureCollection"]},
                                                     "features": {"type": "array",
                                                                  "items": _FEATURE}}},
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message", "details"],
                              "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"},
                                             "details": {"type": "object"}}}}},
                **answer_schemas.schemas(),
            },
            "responses": {
                "Error": {"description": "Error", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                "Unauthorized": {"description": "No credentials, or a token refused",
                                 "headers": {"WWW-Authenticate": _header(
                                     'Bearer realm="gridmap", with error="invalid_token" '
                                     "when a token was refused")},
                                 "content": {"application/json": {"schema": {
                                     "$ref": "#/components/schemas/Error"}}}},
                "Unavailable": {"description": "The database is down or busy: retry later",
                                "headers": {"Retry-After": _header(
                                    "Seconds to wait", {"type": "integer", "minimum": 0})},
                                "content": {"application/json": {"schema": {
                                    "$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.0 document of this API."""
    return jsonify(openapi_document())
