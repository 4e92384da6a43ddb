"""Conditional requests as a class, on every versioned route the OpenAPI document declares.

Every write that declares an ``If-Match`` header and every read that
declares ``If-None-Match`` is walked, so a new versioned route is covered
without anyone listing it here (it only needs a valid body in
:data:`BODIES`, which the first test demands):

* ``If-Match``: ``*`` is 428 ``version_required``; a stale version 412
  ``precondition_failed``; an entity tag this service never issued
  (``"abc"``, ``"01"``, empty) 412 ``invalid_if_match``, a value that is no
  entity tag (unquoted, ``*`` in a list) 400 ``invalid_if_match``; a
  body version contradicting the header 422 ``conflicting_versions``.  None
  of them changes anything stored.  A list holding the current version
  (weak or strong) is obeyed, and the answer carries the new ETag.
* ``If-None-Match``: every versioned read answers a strong ETag and 304 (no
  body, the same ETag) for it, its weak form, ``*`` and a list holding it.
"""

import re

import pytest

from geodata.versions import parse_if_match
from tests.conftest import stored_snapshot, table_counts
from tests.ledger_helpers import at_once, future
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from webmap.api import openapi_document


def _operations(header):
    """``{(METHOD, path)}`` of every operation declaring the request header ``header``."""
    return {(method.upper(), path)
            for path, operations in openapi_document()["paths"].items()
            for method, op in operations.items()
            if any(p["in"] == "header" and p["name"] == header for p in op.get("parameters", ()))}


def _versioned_reads():
    """Paths of the GETs whose ETag is the row's version (``x-etag: version``)."""
    return {path for path, operations in openapi_document()["paths"].items()
            if operations.get("get", {}).get("x-etag") == "version"}


#: A body each versioned write accepts on the fixture's park (without its version), and the
#: role sending it.
BODIES = {
    "/api/hazards/{hazard_id}/transitions": (
        "inspector", lambda: {"to": "rectifying", "deadline": future().isoformat()}),
    "/api/hazards/{hazard_id}/escalations": (
        "supervisor", lambda: {"to": "park", "reason": "逾期未改"}),
    "/api/requests/{request_id}/transitions": (
        "supervisor", lambda: {"to": "assigned", "department": "县人社局", "responsible": "李四",
                               "deadline": future().isoformat()}),
    "/api/parks/{code}/edits/split": ("planner", lambda: {"code": "T-001", "parts": 2,
                                                          "reason": "拆分"}),
    "/api/parks/{code}/edits/merge": ("planner", lambda: {"codes": ["T-001", "T-002"],
                                                          "reason": "合并"}),
    "/api/parks/{code}/edits/retire": ("planner", lambda: {"code": "T-004", "to": "T-003",
                                                           "reason": "撤销"}),
    "/api/parks/{code}/edits/reshape": ("planner", lambda: {
        "code": "T-001", "neighbours": ["T-003"], "reason": "调整", "geometry": _reshaped()}),
    "/api/parks/{code}/edits/draw": ("planner", None),  # needs uncovered ground: refusals only
}


def _reshaped():
    from tests.conftest import metric_box

    return metric_box(0, 400, 500, 1000).__geo_interface__


def _ids(api):  # noqa: F811
    from geodata.creditcode import make_credit_code

    hazard = api.create().json
    request = api.call("POST", "/api/parks/T/requests", "admin", {
        "enterprise": make_credit_code("411621", 1), "category": "用地",
        "description": "用地问题", "source": "phone"}).json
    return {"code": "T", "hazard_id": hazard["id"], "request_id": request["id"]}


def _read_path(path):
    """The versioned read whose ETag a write's If-Match names: the write's parent resource."""
    return path.rsplit("/", 1)[0]


def _version(api, url):  # noqa: F811
    response = api.call("GET", url, "admin")
    assert response.status_code == 200, (url, response.json)
    etag = response.headers.get("ETag")
    # The version, then the digest of the answer (webmap.conditional.answer).
    assert etag and re.fullmatch(r'"(0|[1-9][0-9]*)\.[0-9a-f]{16}"', etag), (url, etag)
    return int(etag.strip('"').split(".")[0])


def test_every_versioned_write_is_listed_and_reads_from_a_versioned_resource():
    writes = {path for _, path in _operations("If-Match")}
    assert writes == set(BODIES), "give the new versioned write a body in BODIES"
    reads = _versioned_reads()
    assert reads <= {path for method, path in _operations("If-None-Match") if method == "GET"}
    for path in writes:
        assert _read_path(path) in reads, f"{path}: its resource must declare If-None-Match"


REFUSED = [
    ("*", 428, "version_required"),
    ("{stale}", 412, "precondition_failed"),
    ('W/"{stale_n}", "{stale_m}"', 412, "precondition_failed"),
    ("{current_n}", 400, "invalid_if_match"),  # unquoted: no entity tag at all
    ('"abc"', 412, "invalid_if_match"),
    ('"0{current_n}"', 412, "invalid_if_match"),
    ('""', 412, "invalid_if_match"),
    ("", 412, "invalid_if_match"),
    ('*, "{current_n}"', 400, "invalid_if_match"),
    ('"{current_n}" "{current_n}"', 400, "invalid_if_match"),
    ('"{current_n}"; drop table hazards', 400, "invalid_if_match"),
    ('"99999999999999999999999"', 412, "invalid_if_match"),
]


@pytest.mark.parametrize("path", sorted(BODIES))
def test_if_match_refusals_on_every_versioned_write_change_nothing(api, engine, path):  # noqa: F811
    ids = _ids(api)
    role, body = BODIES[path]
    body = body() if body else {"geometry": _reshaped(), "reason": "新增"}
    url, read = path.format(**ids), _read_path(path).format(**ids)
    current = _version(api, read)
    values = {"current_n": current, "stale": f'"{current + 7}"', "stale_n": current + 7,
              "stale_m": current + 8}
    before = stored_snapshot(engine)
    for header, status, code in REFUSED:
        header = header.format(**values)
        response = api.call("POST", url, role, body, headers={"If-Match": header})
        assert response.status_code == status, (path, header, response.json)
        error = response.json["error"]
        assert error["code"] == code, (path, header, error)
        assert stored_snapshot(engine) == before, (path, header)
    if "version" in _members(path):
        response = api.call("POST", url, role, {**body, "version": current + 1},
                            headers={"If-Match": f'"{current}"'})
        assert (response.status_code, response.json["error"]["code"]) == (
            422, "conflicting_versions"), path
        assert stored_snapshot(engine) == before, path


def _members(path):
    for method_path, operations in openapi_document()["paths"].items():
        if method_path == path:
            body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]
            return set(body["properties"])
    raise AssertionError(path)


@pytest.mark.parametrize("path", sorted(p for p, (_, body) in BODIES.items() if body))
@pytest.mark.parametrize("form", ['"{v}"', 'W/"{v}"', '"{stale}", W/"{v}"'])
def test_if_match_naming_the_current_version_is_obeyed(api, path, form):  # noqa: F811
    ids = _ids(api)
    role, body = BODIES[path]
    url, read = path.format(**ids), _read_path(path).format(**ids)
    current = _version(api, read)
    header = form.format(v=current, stale=current + 7)
    response = api.call("POST", url, role, body(), headers={"If-Match": header})
    assert response.status_code == 200, (path, header, response.json)
    after = _version(api, read)
    assert after > current and response.headers["ETag"].split(".")[0].strip('"') == str(after)
    # the version just replaced is stale now, in any form
    again = api.call("POST", url, role, body(), headers={"If-Match": header})
    assert again.status_code in (412, 404), (path, again.json)


@pytest.mark.parametrize("path", sorted(_versioned_reads()))
def test_every_versioned_read_answers_its_etag_and_304(api, path):  # noqa: F811
    url = path.format(**_ids(api))
    current = _version(api, url)
    tag = api.call("GET", url, "admin").headers["ETag"].strip('"')
    for held in (f'"{tag}"', f'W/"{tag}"', "*", f'"{current + 3}", W/"{tag}"'):
        response = api.call("GET", url, "admin", headers={"If-None-Match": held})
        assert response.status_code == 304, (path, held)
        assert response.headers["ETag"] == f'"{tag}"' and response.data == b""
    # The bare version is no longer the read's tag: what it showed may have changed since.
    for other in (f'"{current}"', f'"{current + 1}"', f'W/"{current + 1}"', '"abc"'):
        response = api.call("GET", url, "admin", headers={"If-None-Match": other})
        assert response.status_code == 200 and response.headers["ETag"] == f'"{tag}"'


@pytest.mark.parametrize("header, parsed", [
    ('"3"', {3}), ('W/"3"', {3}), ('"2", W/"3"', {2, 3}), (', "3",,', {3}), (" * ", "*"),
    (3, {3}), (None, None)])
def test_parse_if_match(header, parsed):
    result = parse_if_match(header)
    assert result == (frozenset(parsed) if isinstance(parsed, set) else parsed)


#: Where each versioned write leaves one row per write (its append-only history).
HISTORY = {"hazards": "hazard_events", "requests": "request_events", "edits": "grid_edits"}


@pytest.mark.parametrize("path", sorted(p for p, (_, body) in BODIES.items() if body))
def test_two_writers_with_the_same_version_at_once_one_wins(api, engine, path):  # noqa: F811
    ids = _ids(api)
    role, body = BODIES[path]
    url, read = path.format(**ids), _read_path(path).format(**ids)
    current = _version(api, read)
    history = next(table for key, table in HISTORY.items() if f"/{key}" in path)
    before = table_counts(engine)[history]
    results = at_once(lambda _i: api.call("POST", url, role, body(), client=api.client(),
                                          headers={"If-Match": f'"{current}"'}))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 412], (path, [r.json for r in results])
    loser = next(r for r in results if r.status_code == 412)
    assert loser.json["error"]["code"] == "precondition_failed"
    winner = next(r for r in results if r.status_code == 200)
    assert winner.headers["ETag"].split(".")[0].strip('"') == str(_version(api, read))
    assert table_counts(engine)[history] == before + 1, path


@pytest.mark.parametrize("header", ["junk", "*", '"3"'])
def test_unknown_or_forbidden_rows_are_404_or_403_whatever_if_match_says(api, header):  # noqa: F811
    ids = _ids(api)
    for path, (role, body) in BODIES.items():
        if "{code}" in path:
            continue  # the park is the edits' row: tests/test_edit_api.py
        missing = path.format(**{**ids, "hazard_id": 999999, "request_id": 999999})
        response = api.call("POST", missing, role, body() if body else {},
                            headers={"If-Match": header})
        assert response.status_code == 404, (path, header, response.json)
    # a grid member outside the hazard's grid (T-004) learns nothing from the header either
    response = api.call("POST", f"/api/hazards/{ids['hazard_id']}/transitions", "member",
                        {"to": "supervising"}, headers={"If-Match": header})
    assert (response.status_code, response.json["error"]["code"]) == (403, "outside_your_grids")
