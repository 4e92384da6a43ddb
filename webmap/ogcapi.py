"""OGC API – Features Part 1 (Core) at ``/ogcapi``: parse, call :mod:`geodata.services.features`,
serialise as GeoJSON/JSON or HTML.

=====================================================  ======================================
GET /ogcapi/                                           landing page
GET /ogcapi/conformance                                conformance classes
GET /ogcapi/api                                        OpenAPI 3.0 document (service-desc)
GET /ogcapi/collections                                the four collections
GET /ogcapi/collections/{id}                           one collection with its extent
GET /ogcapi/collections/{id}/items                     features: ``bbox``, ``limit``, ``offset``,
                                                       ``datetime`` (hazards), queryables
GET /ogcapi/collections/{id}/items/{featureId}         one feature
=====================================================  ======================================

The format is ``f=json``/``f=html`` or else the ``Accept`` header (JSON by
default; 406 when Accept admits neither).  As the standard requires, an
unknown query parameter or an invalid value is a 400; an unknown collection
or feature is a 404.  Errors
use the app's JSON error body.  Who is asking (session cookie or
``Authorization: Bearer``) decides what is visible (see the service module).
"""

from datetime import datetime, timezone

from flask import Blueprint, current_app, g, render_template, request, url_for

from geodata import domains
from geodata.errors import BadRequestError, GridmapError
from geodata.services import features
from webmap.api import single_arg, today
from webmap.auth import current_actor
from webmap.db import get_session

bp = Blueprint("ogcapi", __name__, url_prefix="/ogcapi")

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
_PAGING = ("bbox", "limit", "offset")


def _viewer():
    user = g.get("user")
    if user is None:
        return features.Viewer()
    grid_ids = current_actor(get_session()).grid_ids
    return features.Viewer(role=user.role,
                           grid_ids=None if grid_ids is None else frozenset(grid_ids))


def _check_params(*allowed):
    """400 for an unknown or repeated query parameter (/req/core/query-param-unknown)."""
    allowed = ("f",) + allowed
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown query parameter {unknown[0]!r}; allowed: "
                              f"{', '.join(allowed)}", code="unknown_parameter",
                              details={"parameter": unknown[0], "allowed": list(allowed)})
    for name in request.args:
        single_arg(name)


def _format():
    """``json`` or ``html``: the ``f`` parameter, else the Accept header (JSON without one).

    An Accept header that none of the formats satisfies is 406 ``not_acceptable``.
    """
    f = single_arg("f")
    if f is not None:
        if f not in ("json", "html"):
            raise BadRequestError("f must be json or html", code="invalid_f",
                                  details={"parameter": "f"})
        return f
    if not request.accept_mimetypes:
        return "json"
    best = request.accept_mimetypes.best_match([GEOJSON, JSON, HTML])
    if best is None:
        # Answering JSON anyway would hand a client something it said it cannot read.
        offered = [GEOJSON, JSON, HTML]
        raise GridmapError(f"no format here matches Accept {request.headers['Accept'][:100]!r}; "
                           f"offered: {', '.join(offered)} (or f=json, f=html)",
                           code="not_acceptable", http_status=406,
                           details={"offered": offered})
    return "html" if best == HTML else "json"


def _link(href, rel, type_, title=None):
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


def _self_links(endpoint, fmt, json_type=JSON, **values):
    """``self`` and ``alternate`` links of the current resource in both formats."""
    json_url = url_for(endpoint, _external=True, f="json", **values)
    html_url = url_for(endpoint, _external=True, f="html", **values)
    return [_link(json_url, "self" if fmt == "json" else "alternate", json_type, "JSON"),
            _link(html_url, "self" if fmt == "html" else "alternate", HTML, "HTML")]


def _respond(fmt, payload, json_type=JSON, page="", title=""):
    if fmt == "html":
        return render_template("ogcapi.html", page=page, title=title, data=payload)
    response = current_app.json.response(payload)
    response.mimetype = json_type
    return response


@bp.get("/", strict_slashes=False)
def landing():
    """The landing page: links to the API definition, conformance and collections."""
    _check_params()
    fmt = _format()
    payload = {
        "title": "gridmap OGC API – Features",
        "description": "Parks, grids, enterprises and hazards of gridmap (CRS84).",
        "links": _self_links(".landing", fmt) + [
            _link(url_for(".openapi", _external=True), "service-desc", OPENAPI,
                  "OpenAPI 3.0 definition"),
            _link(url_for(".conformance", _external=True), "conformance", JSON,
                  "Conformance classes"),
            _link(url_for(".collections", _external=True), "data", JSON, "Collections")],
    }
    return _respond(fmt, payload, page="landing", title=payload["title"])


@bp.get("/conformance")
def conformance():
    """The conformance classes this API implements."""
    _check_params()
    fmt = _format()
    return _respond(fmt, {"links": _self_links(".conformance", fmt), "conformsTo": CONFORMANCE},
                    page="conformance", title="Conformance")


def _collection(session, collection, viewer):
    items_json = url_for(".items", collection_id=collection.id, _external=True, f="json")
    items_html = url_for(".items", collection_id=collection.id, _external=True, f="html")
    return {
        "id": collection.id, "title": collection.title, "description": collection.description,
        "itemType": "feature", "crs": [features.CRS84],
        "extent": features.extent(session, collection, viewer),
        "links": [
            _link(url_for(".collection", collection_id=collection.id, _external=True, f="json"),
                  "self", JSON, collection.title),
            _link(items_json, "items", GEOJSON, f"{collection.title} (GeoJSON)"),
            _link(items_html, "items", HTML, f"{collection.title} (HTML)")],
    }


@bp.get("/collections")
def collections():
    """Every collection with its extent and items links."""
    _check_params()
    fmt = _format()
    session, viewer = get_session(), _viewer()
    payload = {"links": _self_links(".collections", fmt),
               "collections": [_collection(session, c, viewer)
                               for c in features.COLLECTIONS.values()]}
    return _respond(fmt, payload, page="collections", title="Collections")


@bp.get("/collections/<collection_id>")
def collection(collection_id):
    """One collection."""
    _check_params()
    fmt = _format()
    payload = _collection(get_session(), features.get_collection(collection_id), _viewer())
    payload["links"][:1] = _self_links(".collection", fmt, collection_id=collection_id)
    return _respond(fmt, payload, page="collection", title=payload["title"])


def _page_url(collection_id, fmt, offset):
    args = {k: v for k, v in request.args.items() if k not in ("f", "offset")}
    if offset:
        args["offset"] = offset
    return url_for(".items", collection_id=collection_id, _external=True, f=fmt, **args)


@bp.get("/collections/<collection_id>/items")
def items(collection_id):
    """Features of a collection, filtered and paged (``next``/``prev`` links)."""
    collection = features.get_collection(collection_id)
    names = [q.name for q in collection.queryables]
    _check_params(*_PAGING, *(("datetime",) if collection.temporal else ()), *names)
    fmt = _format()
    query = features.ItemQuery(
        bbox=features.parse_bbox(single_arg("bbox")),
        dates=features.parse_datetime(single_arg("datetime")),
        filters=features.parse_filters(collection, {n: request.args[n] for n in names
                                                    if n in request.args}),
        limit=features.parse_limit(single_arg("limit")),
        offset=features.parse_offset(single_arg("offset")))
    found, matched = features.items(get_session(), collection, _viewer(), query, today())
    offset = query.offset
    links = [_link(_page_url(collection_id, "json", offset),
                   "self" if fmt == "json" else "alternate", GEOJSON, "GeoJSON"),
             _link(_page_url(collection_id, "html", offset),
                   "self" if fmt == "html" else "alternate", HTML, "HTML")]
    if offset + len(found) < matched:
        links.append(_link(_page_url(collection_id, fmt, offset + query.limit), "next",
                           GEOJSON if fmt == "json" else HTML, "next page"))
    if offset > 0:
        links.append(_link(_page_url(collection_id, fmt, max(offset - query.limit, 0)), "prev",
                           GEOJSON if fmt == "json" else HTML, "previous page"))
    links.append(_link(url_for(".collection", collection_id=collection_id, _external=True,
                               f="json"), "collection", JSON, collection.title))
    payload = {"type": "FeatureCollection", "features": found, "links": links,
               "numberMatched": matched, "numberReturned": len(found),
               "timeStamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return _respond(fmt, payload, GEOJSON, page="items", title=collection.title)


@bp.get("/collections/<collection_id>/items/<feature_id>")
def item(collection_id, feature_id):
    """One feature (404 if unknown or not visible to the client)."""
    _check_params()
    fmt = _format()
    collection = features.get_collection(collection_id)
    feature = features.item(get_session(), collection, _viewer(), feature_id, today())
    feature["links"] = _self_links(".item", fmt, GEOJSON, collection_id=collection_id,
                                   feature_id=feature_id) + [
        _link(url_for(".collection", collection_id=collection_id, _external=True, f="json"),
              "collection", JSON, collection.title)]
    return _respond(fmt, feature, GEOJSON, page="item", title=f"{collection.title} "
                    f"{feature['id']}")


def _param(name, description, schema, where="query"):
    return {"name": name, "in": where, "required": where == "path",
            "description": description, "schema": schema}


_DAY = (r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-"
        r"(0[1-9]|[12][0-9]|3[01])")
_INSTANT = (rf"{_DAY}([Tt ]([01][0-9]|2[0-3])(:[0-5][0-9]){{2}}(\.[0-9]+)?"
            rf"([Zz]|[+-][0-9]{{2}}:[0-9]{{2}}))?")
#: ``datetime`` as :func:`geodata.services.features.parse_datetime` reads it (a 30 February
#: and an interval's order are left to it: 400).
_DATETIME = {"type": "string", "pattern": rf"^({_INSTANT}|({_INSTANT}|\.\.)?/{_INSTANT}|"
                                          rf"{_INSTANT}/(\.\.)?)$"}


def openapi_document():
    """Return the OpenAPI 3.0 document (a dict) of the ``/ogcapi`` routes."""
    f = _param("f", "Response format (default: Accept header, else json)",
               {"type": "string", "enum": ["json", "html"]})
    cid = _param("collectionId", "Collection id", {"type": "string",
                                                   "enum": list(features.COLLECTIONS)}, "path")

    def get(summary, params, content=JSON):
        return {"get": {"summary": summary, "parameters": [f, *params], "responses": {
            "200": {"description": "OK", "content": {content: {"schema": {"type": "object"}},
                                                     HTML: {"schema": {"type": "string"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"}}}}

    paths = {
        "/": get("Landing page", []),
        "/conformance": get("Conformance classes", []),
        "/collections": get("Feature collections", []),
        "/collections/{collectionId}": get("One collection", [cid]),
    }
    for c in features.COLLECTIONS.values():
        params = [
            _param("bbox", "minx,miny,maxx,maxy in CRS84 degrees (or six with heights)", {
                "type": "array", "items": {"type": "number", "minimum": -180, "maximum": 180},
                "anyOf": [
                    {"minItems": n, "maxItems": n} for n in (4, 6)]})
            | {"style": "form", "explode": False},
            # No maximum: a larger value is served as the maximum, not refused.
            _param("limit", f"Page size (above {features.MAX_LIMIT} served as "
                   f"{features.MAX_LIMIT})", {"type": "integer", "minimum": 1,
                                              "default": features.DEFAULT_LIMIT}),
            _param("offset", "Index of the first feature of the page",
                   {"type": "integer", "minimum": 0, "maximum": features.MAX_OFFSET})]
        if c.temporal:
            params.append(_param("datetime", "found_date: an RFC 3339 date or date-time, or an "
                                 "interval a/b, ../b, a/..", _DATETIME))
        for q in c.queryables:
            # The domains features.parse_filters reads them with (geodata/domains.py).
            if q.enum:
                schema = {"type": q.type, "enum": list(q.enum)}
            elif q.type == "integer":
                schema = domains.integer_schema(0, 999_999_999)
            elif q.type == "string":
                schema = (domains.code_schema("grid") if q.name in features.CODE_QUERYABLES
                          else domains.text_schema("name", required=True))
            else:
                schema = {"type": q.type}
            params.append(_param(q.name, q.description or q.name, schema))
        paths[f"/collections/{c.id}/items"] = get(f"{c.title}: features", params, GEOJSON)
        paths[f"/collections/{c.id}/items/{{featureId}}"] = get(
            f"{c.title}: one feature", [_param("featureId", "Feature id", {"type": "string"},
                                               "path")], GEOJSON)
    return {
        "openapi": "3.0.3",
        "info": {"title": "gridmap OGC API – Features", "version": "1",
                 "description": "OGC API – Features Part 1 (Core) over gridmap. Errors: "
                                "{error: {code, message, details}}."},
        # paths are relative to the landing page, as OGC APIs write them; GDAL looks the
        # items parameters up there to send attribute filters to the server
        "servers": [{"url": url_for(".landing", _external=True).rstrip("/")}],
        "paths": paths,
        "components": {"responses": {"Error": {"description": "Error", "content": {JSON: {
            "schema": {"type": "object", "required": ["error"]}}}}}},
    }


@bp.get("/api")
def openapi():
    """The OpenAPI 3.0 document of ``/ogcapi`` (the landing page's ``service-desc``)."""
    _check_params()
    response = current_app.json.response(openapi_document())
    response.headers["Content-Type"] = OPENAPI
    return response
