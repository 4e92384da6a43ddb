"""Request shapes as classes, enumerated from the routes and the OpenAPI document (both backends).

* Every JSON member the document declares an object, an array or an integer
  is refused as anything else, and outside its documented range or length,
  with 422 naming it, before any other check (a version out of range was a
  409 ``stale_version``; ``"supervision": []`` and ``"neighbours": false``
  were read as absent and the write done).
* Every POST of ``app.url_map`` holds a body of unknown length (``chunked``)
  to the upload cap: 413, where the first bytes up to the cap were read as
  the whole body.
* Every photo upload takes ``photo`` as a file and ``tag`` as text; a part
  of the other kind is 422, not dropped (the photo was stored untagged).
* Every form POST refuses a field given twice (the login read the first
  ``username``) and a multipart body without its boundary (read as empty).

Each refusal is the JSON error body and changes nothing stored.
"""

import io
import json
import uuid

from tests.conftest import stored_snapshot
from tests.ledger_helpers import image_bytes
from tests.test_bad_input import ALTERNATIVES, _bodies, _with
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_http_surface import _posts, _rules, _samples, _url
from webmap.api import _document_path, declared_bodies


def _odd(schema):
    """Raw JSON values outside a member's declared shape (none for text, numbers, geometry)."""
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema["minimum"], schema["maximum"]
        return ["1.0", "1e0", "-0.0", '"1"', "true", "[1]", "{}", str(low - 1), str(high + 1),
                str(2**63), str(2**64)]
    if kind == "array":
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        too_few = [json.dumps(["T-001"] * (low - 1))] if low else []
        too_many = [json.dumps(["T-001"] * (high + 1))] if high else []
        return ["false", "0", '""', "{}", '"T-001"', *too_few, *too_many]
    if kind == "object" and "coordinates" not in schema.get("required", ()):
        return ["[]", "false", "0", '""', '"x"', "true"]
    return []


def _members(schema, prefix=""):
    """``(member path, schema)`` of every declared member, nested objects' members too
    (a geometry's are geometry_member's: tests/test_geometry_surfaces.py)."""
    for name, member in schema.get("properties", {}).items():
        yield prefix + name, member
        if "coordinates" in member.get("required", ()):
            continue
        yield from _members(member, f"{prefix}{name}.")
        extra = member.get("additionalProperties")
        if isinstance(extra, dict):
            yield f"{prefix}{name}.T-001", extra


def _error(response, where):
    assert response.is_json, where
    error = response.json["error"]
    assert set(error) == {"code", "message", "details"} and error["message"], (where, error)
    return error


def test_every_declared_member_shape_is_refused_first(api, engine):  # noqa: F811
    bodies, ids = _bodies(api)
    before = stored_snapshot(engine)
    checked = set()
    for (path, _method), schema in declared_bodies().items():
        role, full = bodies[path]
        for member, declared in _members(schema):
            top = member.split(".")[0]
            body = {k: v for k, v in full.items()
                    if k not in (ALTERNATIVES.get(top) or set(ALTERNATIVES) - {top})}
            for raw in _odd(declared):
                if "client_id" in body:  # else each would be a replay of the first
                    body["client_id"] = str(uuid.uuid4())
                response = api.call("POST", path.format(**ids), role,
                                    _with(body, member, raw).encode())
                where = f"{path} {member} = {raw[:40]}"
                assert response.status_code == 422, (where, response.status_code)
                error = _error(response, where)
                assert error["code"] in ("invalid_type", "invalid_value"), (where, error)
                assert error["details"]["field"] == member, (where, error)
                checked.add(member)
    # the cases the audit found: versions, an object, an array, nested integers
    assert {"version", "expected_version", "supervision", "supervision.photo_id", "neighbours",
            "codes", "expected_versions.T-001", "parts", "hazard_id"} <= checked
    assert stored_snapshot(engine) == before


def _over_cap_body(rule, cap):
    """``(content type, body)`` of ``rule``'s POST, valid up to the cap and longer than it."""
    if rule.endpoint in ("login", "logout"):
        return "application/x-www-form-urlencoded", b"username=admin&password=x&next=/" + (
            b"x" * cap)
    media = _posts().get(_document_path(rule.rule))
    if media == "multipart/form-data":
        part = (b'--zz\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n" + image_bytes() + b"\r\n--zz--\r\n")
        return "multipart/form-data; boundary=zz", part + b" " * cap
    return "application/json", None


def test_every_post_caps_a_body_of_unknown_length(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    bodies, ids = _bodies(api)
    cap = 8192
    api.app.config["MAX_CONTENT_LENGTH"] = cap
    # what gunicorn sends for a chunked body: no Content-Length, the stream ends the body
    chunked = {"headers": {"Transfer-Encoding": "chunked"},
               "environ_overrides": {"wsgi.input_terminated": True}}
    before = stored_snapshot(engine)
    posts = [r for r in _rules(api.app) if "POST" in r.methods]
    assert len(posts) >= 15
    for rule in posts:
        media, body = _over_cap_body(rule, cap)
        if body is None:
            role, valid = bodies[_document_path(rule.rule)]
            # a valid body, padded with blanks past the cap: its first bytes parse alone
            body = json.dumps(valid, ensure_ascii=False).encode() + b" " * cap
        else:
            role = "admin"
        url = _url(rule, {**samples, **ids})
        response = api.call("POST", url, role if rule.endpoint not in ("login", "logout")
                            else None, input_stream=io.BytesIO(body), content_type=media,
                            headers=chunked["headers"],
                            environ_overrides=chunked["environ_overrides"])
        where = f"{rule.rule}: {response.status_code}"
        assert response.status_code == 413, where
        assert _error(response, where)["code"] == "payload_too_large", where
    assert stored_snapshot(engine) == before
    # under the cap, a chunked body is read whole, as one with a Content-Length
    role, valid = bodies["/api/parks/{code}/hazards"]
    valid = {k: v for k, v in valid.items() if k not in ("location", "code")}
    created = api.call("POST", "/api/parks/T/hazards", role,
                       input_stream=io.BytesIO(json.dumps(valid).encode() + b" " * 100),
                       content_type="application/json", **chunked)
    assert created.status_code == 201, created.json


def test_photo_parts_of_the_other_kind_are_refused(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    before = stored_snapshot(engine)
    uploads = [p for p, media in _posts().items() if media == "multipart/form-data"]
    assert len(uploads) == 2
    for path in uploads:
        url = path.format(**samples)
        for form, field in (({"photo": (io.BytesIO(image_bytes()), "a.png"),
                              "tag": (io.BytesIO(b"after"), "tag.txt")}, "tag"),
                            ({"photo": "iVBORw0KGgo="}, "photo")):
            response = api.call("POST", url, "admin", data=form,
                                content_type="multipart/form-data")
            where = f"{path} {field}: {response.status_code}"
            assert response.status_code == 422, where
            error = _error(response, where)
            assert error["code"] == "invalid_type" and error["details"]["field"] == field
    assert stored_snapshot(engine) == before


def test_every_form_post_refuses_a_repeated_field(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    api.app.config["WTF_CSRF_ENABLED"] = False  # the rule itself, not the CSRF token's
    before = stored_snapshot(engine)
    forms = [r for r in _rules(api.app) if "POST" in r.methods and (
        _posts().get(_document_path(r.rule), "multipart/form-data") == "multipart/form-data")]
    assert {r.endpoint for r in forms} >= {"login", "logout", "hazards_api.upload_photo",
                                           "visits_api.upload_photo"}
    for rule in forms:
        url = _url(rule, samples)
        if rule.endpoint in ("login", "logout"):
            # the first names an account that may log in, the second another
            body, media, role = ("username=admin&username=viewer&password=admin-pass-123",
                                 "application/x-www-form-urlencoded", None)
        else:
            body, media, role = ({"photo": (io.BytesIO(image_bytes()), "a.png"),
                                  "username": ["before", "after"]}, "multipart/form-data",
                                 "admin")
            body["tag"] = body.pop("username")
        client = api.client()
        response = api.call("POST", url, role, data=body, content_type=media, client=client)
        where = f"{rule.rule}: {response.status_code}"
        assert response.status_code == 422, where
        error = _error(response, where)
        assert error["code"] == "invalid_value", where
        assert error["details"]["field"] in ("username", "tag"), where
        assert client.get_cookie("session") is None, where  # nobody logged in
    assert stored_snapshot(engine) == before


def test_every_post_refuses_a_multipart_body_without_its_boundary(api, engine):  # noqa: F811
    samples = _samples(api, engine)
    api.app.config["WTF_CSRF_ENABLED"] = False  # the rule itself, not the CSRF token's
    before = stored_snapshot(engine)
    part = (b'--zz\r\nContent-Disposition: form-data; name="photo"; filename="a.png"\r\n\r\n'
            + image_bytes() + b"\r\n--zz--\r\n")
    for rule in _rules(api.app):
        if "POST" not in rule.methods:
            continue
        response = api.call("POST", _url(rule, samples), "admin", data=part,
                            content_type="multipart/form-data")
        where = f"{rule.rule}: {response.status_code}"
        assert response.status_code == 400, where
        error = _error(response, where)
        assert error["code"] == "invalid_multipart", where
        assert error["details"]["header"] == "Content-Type", where
    assert stored_snapshot(engine) == before
