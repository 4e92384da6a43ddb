"""Bad input as classes, enumerated from the routes themselves, on both backends.

Each test walks what the service declares (the JSON members of every write
operation in the OpenAPI document, every rule of ``app.url_map``, every
timestamp column of ``Base.metadata``), so a new route, member or column is
covered without anyone listing it here:

* hostile JSON values (integers beyond 64 bits and beyond any float, lone
  surrogates, NUL, bidi, 10 000 characters, arrays and objects for scalars,
  ``true`` for numbers, impossible dates, a member given twice) in every
  member of every write body answer a 4xx JSON error that names the member,
  and change nothing stored;
* query strings: a repeated parameter is 400, an undeclared one 422 on
  ``/api``, integers are plain ASCII, and ``<int:>`` path parts too;
* timestamps read back as the same UTC instant, written the same way, on
  SpatiaLite and PostGIS;
* imported files: arrays, objects and true/false where a cell holds text, a
  number or a date are refused with the feature and field named.
"""

import json
import math
import re
import uuid

import pytest
import sqlalchemy as sa

from geodata import domains
from geodata.creditcode import make_credit_code
from geodata.geometry import parse_json
from geodata.errors import FeatureError
from geodata.models import Base
from geodata.models.base import UTCDateTime
from geodata.periods import local_today
from tests.conftest import metric_box, metric_point, stored_snapshot
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.ledger_helpers import lonlat
from webmap.api import openapi_document

#: Raw JSON text put in place of one member's value.  Lone surrogates, NaN and
#: integers of thousands of digits cannot come from json.dumps, so the values are text.
HOSTILE = {
    "int 2^63": str(2**63),
    "int 10^400": "1" + "0" * 400,
    "int 5000 digits": "9" * 5000,
    "float 1e309": "1e309",
    "NaN": "NaN",
    "-0": "-0",
    "true": "true",
    "empty array": "[]",
    "array": '["T-001"]',
    "object": '{"a": 1}',
    "lone surrogate": '"\\ud800"',
    "NUL": '"a\\u0000b"',
    "bidi override": '"\\u202eevil"',
    "10 000 characters": json.dumps("长" * 10_000),
    "number as text": '"1e3"',
    "blank-padded number": '" 1"',
    "date 0000-01-01": '"0000-01-01"',
    "date 2026-02-30": '"2026-02-30"',
    "date 10000-01-01": '"10000-01-01"',
    "datetime +14:00 at year 1": '"0001-01-01T00:00:00+14:00"',
}


def _bodies(api):  # noqa: F811
    """A valid body for every JSON write operation, with its role; ids of stored rows."""
    lon, lat = lonlat("T-004")
    firm = make_credit_code("411621", 1)
    hazard = api.create().json
    request = api.call("POST", "/api/parks/T/requests", "admin", {
        "enterprise": firm, "category": "用地", "description": "用地问题", "source": "phone"}).json
    deadline = str(local_today().replace(year=local_today().year + 1))
    return {
        "/api/parks/{code}/hazards": ("inspector", {
            "lon": lon, "lat": lat, "category": "消防安全", "description": "灭火器过期",
            "level": "general", "found_date": str(local_today()), "code": "YH2025-0900",
            "location": {"type": "Point", "coordinates": [lon, lat]}}),
        "/api/hazards/{hazard_id}/transitions": ("inspector", {
            "to": "rectifying", "note": "限期整改", "deadline": deadline, "version": 1,
            "supervision": {"note": "n", "supervisor": "supervisor", "photo_id": 1,
                            "checked_at": "2026-01-01T08:00:00+08:00"}}),
        "/api/hazards/{hazard_id}/escalations": ("supervisor", {
            "to": "park", "reason": "逾期", "version": 1}),
        "/api/parks/{code}/requests": ("admin", {
            "enterprise": firm, "category": "用地", "description": "d", "source": "phone",
            "received_date": str(local_today()), "visit": "00000000-0000-4000-8000-000000000001"}),
        "/api/requests/{request_id}/transitions": ("supervisor", {
            "to": "assigned", "department": "县人社局", "responsible": "李四",
            "deadline": deadline, "note": "n", "satisfaction": "满意", "version": 1}),
        "/api/parks/{code}/visits": ("inspector", {
            "client_id": "00000000-0000-4000-8000-000000000002", "kind": "recheck",
            "occurred_at": "2026-01-01T08:00:00+08:00", "lon": lon, "lat": lat,
            "location": {"type": "Point", "coordinates": [lon, lat]}, "accuracy_m": 5,
            "enterprise": firm, "hazard_id": hazard["id"], "note": "n", "findings": "f"}),
        "/api/parks/{code}/edits/draw": ("planner", {
            "geometry": json.loads(json.dumps(metric_box(900, 900, 990, 990).__geo_interface__)),
            "name": "新网格", "reason": "r"}),
        "/api/parks/{code}/edits/reshape": ("planner", {
            "code": "T-001", "geometry": json.loads(json.dumps(
                metric_box(0, 500, 500, 1000).__geo_interface__)),
            "neighbours": ["T-002"], "reason": "r", "expected_version": 1}),
        "/api/parks/{code}/edits/split": ("planner", {
            "code": "T-001", "parts": 2, "reason": "r", "expected_version": 1,
            "line": {"type": "LineString", "coordinates": [
                list(metric_point(250, 400).coords[0]), list(metric_point(250, 1100).coords[0])]}}),
        "/api/parks/{code}/edits/merge": ("planner", {
            "codes": ["T-001", "T-002"], "reason": "r", "expected_versions": {"T-001": 1}}),
        "/api/parks/{code}/edits/retire": ("planner", {
            "code": "T-004", "to": "T-003", "reason": "r", "expected_version": 1}),
    }, {"code": "T", "hazard_id": hazard["id"], "request_id": request["id"]}


def _json_writes():
    """``{path: member names}`` of every operation with a JSON request body."""
    out = {}
    for path, operations in openapi_document()["paths"].items():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                out[path] = sorted(body["schema"].get("properties", {}))
    return out


def _with(body, member, raw):
    """The JSON text of ``body`` with ``member`` (``a`` or ``a.b``) set to the raw text ``raw``."""
    marker = "\x00HOSTILE\x00"
    copy = json.loads(json.dumps(body))
    target, *rest = member.split(".")
    if rest:
        copy.setdefault(target, {})[rest[0]] = marker
    else:
        copy[target] = marker
    return json.dumps(copy, ensure_ascii=False).replace(json.dumps(marker), raw)


#: Members that exclude others: a body probing one leaves the others out, and a body
#: probing any other member leaves these out.
ALTERNATIVES = {"line": ("parts",), "location": ("lon", "lat")}


#: Refused in every member: no member's domain holds them.
ALWAYS_REFUSED = {"int 2^63", "int 10^400", "int 5000 digits", "float 1e309", "NaN",
                  "lone surrogate", "NUL", "bidi override", "10 000 characters",
                  "duplicate member"}


def _named(error):
    details = error.get("details") or {}
    return any(details.get(k) not in (None, "") for k in ("field", "parameter", "pointer"))


def _members(body):
    for name, value in body.items():
        yield name
        if name == "supervision":
            yield from (f"{name}.{sub}" for sub in value)


def test_every_json_write_has_a_valid_body_here(api):  # noqa: F811
    bodies, _ = _bodies(api)
    writes = _json_writes()
    assert set(writes) == set(bodies), "give the new write route a valid body in _bodies"
    for path, members in writes.items():
        assert set(members) <= set(bodies[path][1]), (path, set(members) - set(bodies[path][1]))


@pytest.mark.parametrize("path", sorted(_json_writes()))
def test_hostile_values_in_every_member_are_4xx_naming_it_and_change_nothing(
        api, engine, path):  # noqa: F811
    bodies, ids = _bodies(api)
    role, body = bodies[path]
    url = path.format(**ids)
    before = stored_snapshot(engine)
    full = body
    for member in _members(full):
        left_out = ALTERNATIVES.get(member) or set(ALTERNATIVES) - {member}
        body = {k: v for k, v in full.items() if k not in left_out}
        if "client_id" in body and member != "client_id":  # else each would be a replay
            body["client_id"] = str(uuid.uuid4())
        cases = dict(HOSTILE)
        # the member twice: parsers disagree on which one wins
        cases["duplicate member"] = None
        for case, raw in cases.items():
            twice = f', "{member.split(".")[0]}": 1}}'
            text = (_with(body, member, raw) if raw is not None else
                    json.dumps(body, ensure_ascii=False)[:-1] + twice)
            response = api.call("POST", url, role, text.encode("utf-8", "surrogatepass"))
            where = f"{path} {member} = {case}"
            assert response.status_code < 500, where
            assert response.status_code >= 400 or case not in ALWAYS_REFUSED, where
            if response.status_code < 300:
                before = stored_snapshot(engine)  # accepted: read back below
                continue
            error = response.json["error"]
            assert error["code"] and error["message"], where
            # empty_result: an earlier accepted draw covers that ground now
            if response.status_code in (400, 422) and error["code"] != "empty_result":
                assert _named(error), (where, error)
            assert stored_snapshot(engine) == before, where
    # everything accepted reads back through the API without a server error
    for read in ("/api/hazards", "/api/requests", "/api/visits", "/api/parks/T/edits",
                 "/api/parks/T/grids", "/api/parks/T/hazards", "/parks/T/ledger.csv",
                 "/parks/T/requests.xlsx"):
        assert api.call("GET", read, "admin").status_code == 200, read


def test_a_resent_visit_is_checked_before_it_is_answered(api, engine):  # noqa: F811
    bodies, _ = _bodies(api)
    body = {k: v for k, v in bodies["/api/parks/{code}/visits"][1].items() if k != "location"}
    first = api.call("POST", "/api/parks/T/visits", "inspector", body)
    assert first.status_code == 201, first.json
    before = stored_snapshot(engine)
    for member, raw in (("hazard_id", str(10**400)), ("hazard_id", "true"),
                        ("enterprise", '"a\\u0000b"'), ("enterprise", "[]")):
        response = api.call("POST", "/api/parks/T/visits", "inspector",
                            _with(body, member, raw).encode())
        assert response.status_code == 422, (member, raw, response.json)
        assert response.json["error"]["details"]["field"] == member
    assert stored_snapshot(engine) == before


def test_negative_zero_reads_back_as_zero(api):  # noqa: F811
    """SQLite reads -0.0 back as 0.0 and PostgreSQL keeps it: both answer 0.0."""
    bodies, _ = _bodies(api)
    body = {k: v for k, v in bodies["/api/parks/{code}/visits"][1].items() if k != "location"}
    created = api.call("POST", "/api/parks/T/visits", "inspector", _with(body, "accuracy_m",
                                                                         "-0.0"))
    assert created.status_code == 201, created.json
    read = api.call("GET", f"/api/visits/{created.json['id']}").json
    for answer in (created.json, read):
        assert math.copysign(1, answer["accuracy_m"]) == 1.0 and answer["accuracy_m"] == 0


def _get_rules(app):
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint not in ("static", "field.static",
                                                           "maps.vendor"):
            yield rule


def _fill(rule, **over):
    values = {"code": "T", "grid_code": "T-001", "collection_id": "grids", "feature_id": "1",
              "week": "2026-W01", "fmt": "csv", "credit_code": make_credit_code("411621", 1),
              **over}
    return re.sub(r"<(?:([^:>]+):)?([^>]+)>",
                  lambda m: str(values.get(m.group(2), "1")), rule.rule)


def test_query_strings_are_single_declared_and_plain(api):  # noqa: F811
    app = api.app
    declared = {(p, m.upper()): {q["name"]: q["schema"] for q in op.get("parameters", ())
                                 if q["in"] == "query"}
                for p, ops in openapi_document()["paths"].items() for m, op in ops.items()}
    checked = 0
    for rule in _get_rules(app):
        url = _fill(rule)
        repeated = api.call("GET", f"{url}?limit=1&limit=2", "admin")
        assert repeated.status_code == 400, url
        assert repeated.json["error"]["code"] == "repeated_parameter", url
        if not rule.rule.startswith("/api/"):
            continue
        unknown = api.call("GET", f"{url}?sort=name;--", "admin")
        assert unknown.status_code == 422 and unknown.json["error"]["code"] == (
            "unknown_parameter"), url
        params = declared.get((re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), "GET"), {})
        for name, schema in params.items():
            if schema.get("type") != "integer":
                continue
            for text in (" 1", "1_0", "\u0661", "1e3", "9" * 5000):
                response = api.call("GET", f"{url}?{name}={text}", "admin")
                assert response.status_code == 400, (url, name, text)
                assert response.json["error"]["details"]["parameter"] == name
                checked += 1
    assert checked > 20


@pytest.mark.parametrize("value", ["\u0661", "9" * 5000, "-1", "1_0"],
                         ids=["arabic-indic", "5000 digits", "negative", "underscore"])
def test_integer_path_parts_are_plain_ascii_digits(api, value):  # noqa: F811
    rules = [r for r in _get_rules(api.app) if "<int:" in r.rule]
    assert rules
    for rule in rules:
        names = re.findall(r"<int:([^>]+)>", rule.rule)
        url = _fill(rule, **{n: value for n in names})
        response = api.call("GET", url, "admin")
        # no route matches (Werkzeug may say 405 when another method's rule would)
        assert response.status_code in (404, 405), url[:200]
        assert response.json["error"]["code"] in ("not_found", "method_not_allowed")


@pytest.mark.parametrize("url", [
    "/api/parks/T/grids?bbox=%201,2,3,4",
    "/api/parks/T/grids?bbox=1_0,2,30,40",
    "/api/parks/T/enterprises?bbox=%D9%A1,2,3,4",
    "/ogcapi/collections/grids/items?bbox=1_0,2,30,40",
])
def test_bbox_numbers_are_plain(api, url):  # noqa: F811
    response = api.call("GET", url, "admin")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_bbox"


def test_every_timestamp_column_reads_back_in_utc():
    timestamps = [c for t in Base.metadata.tables.values() for c in t.columns
                  if isinstance(c.type, (sa.DateTime, UTCDateTime))]
    assert len(timestamps) > 15
    assert all(isinstance(c.type, UTCDateTime) for c in timestamps), [
        f"{c.table.name}.{c.name}" for c in timestamps if not isinstance(c.type, UTCDateTime)]


def test_timestamps_answer_the_same_on_both_backends(api):  # noqa: F811
    created = api.create("T-001").json
    hid = created["id"]
    moved = api.move(hid, "supervising", created["version"])
    assert moved.status_code == 200, moved.json
    closed = api.move(hid, "closed", moved.json["version"], "supervisor", supervision={
        "supervisor": "supervisor", "note": "复查通过", "checked_at": "2026-01-01T08:00:00+08:00"})
    assert closed.status_code == 200, closed.json
    assert closed.json["closed_at"].endswith("+00:00")
    history = api.call("GET", f"/api/hazards/{hid}/history").json
    assert history["supervisions"][0]["checked_at"] == "2026-01-01T00:00:00+00:00"
    assert all(e["at"].endswith("+00:00") for e in history["events"])


def test_answers_quoting_lone_surrogates_are_json(api):  # noqa: F811
    """An answer that quotes refused text must still encode (UTF-8 has no lone surrogate)."""
    with api.app.test_request_context():
        body = api.app.json.response({"message": "got '\ud800'"}).get_data()
    assert json.loads(body) == {"message": "got '\ud800'"}


@pytest.mark.parametrize("text, code, pointer", [
    ('{"a": 1, "a": 2}', "duplicate_key", "/a"),
    ('{"x": [0, {"c": 1, "c": 2}]}', "duplicate_key", "/x/1/c"),
    pytest.param('{"n": ' + "7" * 1001 + "}", "invalid_value", "/n", id="1001 digits"),
    ('{"g": {"coordinates": [NaN, 1]}}', "invalid_coordinate", "/g/coordinates/0"),
    ('{"a/b": {"q": 1, "q": 1}}', "duplicate_key", "/a~1b/q"),
])
def test_parse_json_names_the_refused_value(text, code, pointer):
    with pytest.raises(FeatureError) as info:
        parse_json(text)
    assert info.value.code == code and info.value.details["pointer"] == pointer
    assert info.value.details["field"] == pointer.split("/")[1].replace("~1", "/")


@pytest.mark.parametrize("value", [10**400, 1e309, float("nan"), True, "1", None, [1]],
                         ids=["10^400", "1e309", "nan", "true", "text", "none", "list"])
def test_numbers_are_finite_real_numbers(value):
    with pytest.raises(FeatureError) as info:
        domains.number(value, "accuracy_m", minimum=0, maximum=10)
    assert info.value.details["field"] == "accuracy_m"


@pytest.mark.parametrize("text, kind, expected", [
    ("12", int, 12), ("-3", int, -3), (" 1", int, None), ("1_0", int, None),
    ("\u0661", int, None), pytest.param("9" * 5000, int, None, id="5000 digits"),
    ("1.5", float, 1.5), ("1_0", float, None), ("\uff11", float, None), ("1e3", float, 1000.0),
])
def test_plain_numbers(text, kind, expected):
    assert domains.plain_number(text, kind) == expected


@pytest.mark.parametrize("layer, field, value", [
    (layer, field, value)
    for layer, fields in {
        "enterprises": ("name", "credit_code", "industry", "employees", "contact_name",
                        "contact_phone"),
        "hazards": ("category", "description", "found_date", "deadline", "code"),
    }.items()
    for field in fields
    for value in (["a"], {"a": 1}, True)
] + [("hazards", "found_date", "2026-01-05T25:00:00"),
     ("hazards", "deadline", "2027-01-05garbage")])
def test_imported_cells_of_the_wrong_kind_are_refused(runner, engine, tmp_path, layer, field,
                                                      value):
    from tests.ledger_helpers import build_park

    build_park(engine, users=False)
    rows = {
        "enterprises": (metric_box(300, 300, 350, 350), {
            "name": "丙公司", "credit_code": make_credit_code("411621", 7), "industry": "纺织",
            "employees": 5, "contact_name": "李", "contact_phone": "13800000000"}),
        "hazards": (metric_point(250, 250), {
            "category": "消防安全", "description": "d", "found_date": "2026-01-02",
            "deadline": "2027-01-01", "code": "YH2026-0500"}),
    }
    geometry, props = rows[layer]
    path = tmp_path / f"{layer}.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {**props, field: value},
        "geometry": geometry.__geo_interface__}]}))
    before = stored_snapshot(engine)
    result = runner("import", layer, path, "--park", "T")
    assert result.exit_code == 2, result.output
    assert "feature 0" in result.output and f"field '{field}'" in result.output, result.output
    assert stored_snapshot(engine) == before


def test_a_geopackage_boolean_column_is_not_a_name(runner, engine, tmp_path):
    import geopandas as gpd

    from tests.ledger_helpers import build_park

    build_park(engine, users=False)
    path = tmp_path / "enterprises.gpkg"
    gpd.GeoDataFrame([{"name": True, "credit_code": make_credit_code("411621", 7)}],
                     geometry=[metric_box(300, 300, 350, 350)], crs=4326).to_file(path)
    before = stored_snapshot(engine)
    result = runner("import", "enterprises", path, "--park", "T")
    assert result.exit_code == 2, result.output
    assert "field 'name'" in result.output and "true/false" in result.output, result.output
    assert stored_snapshot(engine) == before
