"""List and object members: one answer per class, walked from the OpenAPI document.

For every member of every JSON write whose schema is an array or an object
(GeoJSON members aside: they answer ``invalid_geojson``, RELIABILITY.md 3),
on both backends: another JSON type, whatever its truth (``[]`` for an
object, ``{}`` for a list, ``""``, ``0``, ``false``, text) is 422
``invalid_type`` naming the member; an empty list where the schema wants
entries is 422 ``invalid_value`` saying how many; a required member left out
is 422 ``missing_field``; an empty list or object the schema allows is not
refused for that member.  Nothing refused changes anything stored.
"""

import json

from tests.conftest import stored_snapshot
from tests.test_bad_input import ALTERNATIVES, _bodies
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from webmap.api import openapi_document

#: Values of each JSON type, keyed by the schema types they belong to.
OTHERS = {"an empty list": ([], "array"), "an empty object": ({}, "object"),
          "empty text": ("", "string"), "zero": (0, "integer"), "false": (False, "boolean"),
          "text": ("T-001", "string"), "a list of one": (["T-001"], "array")}


def _container_members():
    """``[(path, member, schema, required)]`` of every array or object member of a JSON write."""
    out = []
    for path, operations in openapi_document()["paths"].items():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            schema = (body or {}).get("schema", {})
            for name, member in schema.get("properties", {}).items():
                geojson = "coordinates" in member.get("properties", {}) or "oneOf" in member
                if member.get("type") in ("array", "object") and not geojson:
                    out.append((path, name, member, name in schema.get("required", ())))
    return out


def _error(response):
    error = (response.get_json(silent=True) or {}).get("error") or {}
    return error.get("code"), (error.get("details") or {}).get("field"), error.get("message", "")


def test_every_list_and_object_member_answers_its_class(api, engine):  # noqa: F811
    members = _container_members()
    assert {m for _, m, _, _ in members} >= {"supervision", "neighbours", "codes",
                                             "expected_versions"}
    bodies, ids = _bodies(api)
    checked = 0
    for path, member, schema, required in members:
        role, full = bodies[path]
        left_out = ALTERNATIVES.get(member) or set(ALTERNATIVES) - {member}
        body = {k: v for k, v in full.items() if k not in left_out}
        for label, (value, kind) in OTHERS.items():
            # a fresh hazard each time: an accepted step makes the body's version stale
            url = path.format(**{**ids, "hazard_id": api.create().json["id"]})
            before = stored_snapshot(engine)
            response = api.call("POST", url, role, json.dumps({**body, member: value}))
            code, field, message = _error(response)
            where = (path, member, label, response.status_code, code, field)
            if kind != schema["type"]:
                assert (response.status_code, code, field) == (422, "invalid_type", member), where
                checked += 1
            elif kind == "array" and len(value) < schema.get("minItems", 0):
                assert (response.status_code, code, field) == (422, "invalid_value", member), where
                assert f"{schema['minItems']} to" in message or "at least" in message, message
                checked += 1
            else:  # a value of the member's type: not refused for being that value
                assert field != member or code not in ("invalid_type", "missing_field"), where
            if response.status_code >= 400:
                assert stored_snapshot(engine) == before, where
        if required:
            before = stored_snapshot(engine)
            response = api.call("POST", url, role, json.dumps(
                {k: v for k, v in body.items() if k != member}))
            assert _error(response)[:2] == ("missing_field", member), (path, member)
            assert stored_snapshot(engine) == before, (path, member)
    assert checked >= 4 * len(members)


def test_a_supervision_record_without_its_note_says_so(api):  # noqa: F811
    """``{}`` is a record, not an absent one: its missing note is named, not the record."""
    hazard = api.create().json
    version = api.move(hazard["id"], "rectifying", hazard["version"],
                       deadline="2099-01-01").json["version"]
    version = api.move(hazard["id"], "supervising", version).json["version"]
    for supervision, field in (({}, "supervision.note"), (None, "supervision"),
                               ([], "supervision"), ([{"note": "ok"}], "supervision")):
        moved = api.move(hazard["id"], "closed", version, "supervisor", supervision=supervision)
        assert moved.status_code == 422 and _error(moved)[1] == field, (supervision, moved.json)
        assert _error(moved)[0] == ("supervision_required" if supervision is None else
                                    "invalid_type" if isinstance(supervision, list) else
                                    "missing_field")
