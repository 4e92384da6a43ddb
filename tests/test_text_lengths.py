"""One length rule for every text and code member, walked from the OpenAPI document.

geodata/domains.py counts a length in code points, as sent (blanks included:
what ``maxLength`` counts) and as stored (trimmed, NFC or for codes NFKC: what
the column holds).  Every string member of every JSON write that has a
``maxLength`` gets boundary values of the kinds that count differently
(decomposed ``e`` + U+0301, Hangul jamo, full-width forms, characters outside
the BMP, surrounding blanks, and U+0958, which NFC makes two characters) at and
one past the cap, on both backends.  The document and the service must agree:
a value the member's schema refuses is 422 naming the member and changes
nothing; a value it accepts is not refused for its text, and when stored it
reads back exactly as normalised.  The one value a schema cannot describe,
text that NFC makes longer than the cap, is refused ``text_too_long``.
"""

import collections
import json
import unicodedata
import uuid

import pytest
import sqlalchemy as sa
from jsonschema import Draft4Validator

from geodata import domains
from geodata.creditcode import make_credit_code
from geodata.models import Base
from tests.conftest import stored_snapshot
from tests.test_bad_input import ALTERNATIVES, _bodies
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_photos import form, phone_jpeg
from webmap.api import openapi_document

#: Codes that say the value itself broke its member's domain.
DOMAIN_CODES = {"text_too_long", "invalid_text", "invalid_value", "invalid_type",
                "missing_field"}


def _length_members():
    """``[(path, member, schema)]``: each string member with a maxLength of each JSON write."""
    out = []
    for path, operations in openapi_document()["paths"].items():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, schema in (body or {}).get("schema", {}).get("properties", {}).items():
                nested = schema.get("properties", {}) if schema.get("type") == "object" else {}
                leaves = [(name, schema)] + [(f"{name}.{k}", v) for k, v in nested.items()]
                for member, leaf in leaves:
                    if leaf.get("type") == "string" and "maxLength" in leaf:
                        out.append((path, member, leaf))
    return out


def _values(cap, schema):
    """Boundary values ``{label: value}`` for a member of ``maxLength`` ``cap``."""
    out = {}
    for label, unit in (("decomposed e+U+0301", "e\u0301"), ("hangul jamo", "\u1100\u1161"),
                        ("full-width", "\uff21"), ("outside the BMP", "\U0001f600"),
                        ("blank-padded", " x")):
        out[f"{label} at the cap"] = (unit * cap)[:cap]
        out[f"{label} one over"] = (unit * (cap + 1))[:cap + 1]
    out["NFC doubles it, at the cap"] = "\u0958" * cap
    out["NFC doubles it, half the cap"] = "\u0958" * (cap // 2)
    if schema.get("minLength") == 18:  # a credit code, looked up as imports store it
        firm = make_credit_code("411621", 1)
        out["full-width credit code"] = "".join(chr(ord(c) + 0xfee0) for c in firm)
        out["lower-case credit code"] = firm.lower()
    if "ledger" in schema.get("description", "") or cap == domains.LEDGER_CODE_MAX:
        out["full-width ledger number"] = "\uff39\uff28\uff12\uff10\uff12\uff15\uff0d" + (
            "\uff10" * 5 + "\uff17")
        out["blank-padded ledger number"] = " yh2025-0008 "
        out["ledger number with a blank, one over"] = " YH2025-000009"
    return out


def _stored(value, schema):
    """The value as the service stores it: NFC text, or an NFKC upper-case code."""
    if "NFC" in schema.get("description", ""):
        return unicodedata.normalize("NFC", value.strip(domains.BLANKS))
    return unicodedata.normalize("NFKC", value).strip().upper()


def _strings(engine):
    """Every text value stored in any table, counted."""
    found = collections.Counter()
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (sa.String, sa.Text))]
            for row in conn.execute(sa.select(*columns)) if columns else ():
                found.update(v for v in row if isinstance(v, str))
    return found


def _fresh(api, bodies, path, member):  # noqa: F811
    """``(role, url, body)`` of a write that succeeds as it is, made afresh for one probe."""
    role, body = bodies[path]
    left_out = ALTERNATIVES.get(member) or set(ALTERNATIVES) - {member}
    body = {k: v for k, v in json.loads(json.dumps(body)).items() if k not in left_out}
    if path.endswith("/hazards") and member != "code":
        body.pop("code")  # a ledger number is taken once
    body.pop("visit", None)  # names no stored visit
    if "client_id" in body:
        body["client_id"] = str(uuid.uuid4())
    url = path.replace("{code}", "T")
    if "{hazard_id}" in path:
        hazard = api.create().json
        url = url.replace("{hazard_id}", str(hazard["id"]))
        if member.startswith("supervision."):  # to close it: supervision is read then
            version = hazard["version"]
            for to, fields in (("rectifying", {"deadline": body["deadline"]}),
                               ("supervising", {})):
                version = api.move(hazard["id"], to, version, **fields).json["version"]
            role, body = "supervisor", {"to": "closed", "version": version,
                                        "supervision": {"note": "复查通过"}}
        else:
            body.pop("supervision", None)
    if "{request_id}" in path:
        request = api.call("POST", "/api/parks/T/requests", "admin", {
            k: v for k, v in bodies["/api/parks/{code}/requests"][1].items() if k != "visit"}).json
        url = url.replace("{request_id}", str(request["id"]))
    return role, url, body


def _put(body, member, value):
    target, *sub = member.split(".")
    if sub:
        body.setdefault(target, {})[sub[0]] = value
    else:
        body[target] = value
    return json.dumps(body, ensure_ascii=False).encode()


def test_every_text_member_counts_its_length_as_the_document_says(api, engine):  # noqa: F811
    members = _length_members()
    assert {m for _, m, _ in members} >= {"description", "note", "reason", "name", "department",
                                          "responsible", "supervision.note", "code"}
    bodies, _ = _bodies(api)
    accepted = 0
    for path, member, schema in members:
        cap = schema["maxLength"]
        for label, value in _values(cap, schema).items():
            where = f"{path} {member} = {label}"
            role, url, body = _fresh(api, bodies, path, member)
            before, strings = stored_snapshot(engine), _strings(engine)
            response = api.call("POST", url, role, _put(body, member, value))
            error = (response.get_json(silent=True) or {}).get("error") or {}
            details = error.get("details") or {}
            named = member in (details.get("field"), details.get("pointer", "/")[1:].replace(
                "/", "."))
            stored = _stored(value, schema)
            if not Draft4Validator(schema).is_valid(value) or len(stored) > cap:
                assert response.status_code == 422 and named, (where, response.status_code,
                                                               error)
                if Draft4Validator(schema).is_valid(value):  # what no schema can say
                    assert error["code"] == "text_too_long", (where, error)
                assert stored_snapshot(engine) == before, where
            elif response.status_code >= 400:
                assert not (named and error["code"] in DOMAIN_CODES), (where, error)
                assert stored_snapshot(engine) == before, where
            else:
                accepted += 1
                if not strings[stored]:  # stored, not looked up: it reads back as normalised
                    assert _strings(engine)[stored] > 0, (where, stored[:40])
    assert accepted > 40


@pytest.mark.parametrize("name, status", [
    ("e\u0301" * 98 + ".jpg", 201), ("e\u0301" * 99 + ".jpg", 422),
    (" " + "\U0001f600" * 195 + ".jpg", 201), (" " + "\U0001f600" * 196 + ".jpg", 422),
    ("\u0958" * 150 + ".jpg", 422),
], ids=["decomposed at the cap", "decomposed one over", "blank and astral at the cap",
        "blank and astral one over", "NFC doubles it"])
def test_a_photo_file_name_counts_as_text_does(api, engine, name, status):  # noqa: F811
    """The multipart file name is stored as name text: the same rule, field ``filename``."""
    hazard = api.create().json
    before = stored_snapshot(engine)
    response = api.call("POST", f"/api/hazards/{hazard['id']}/photos", "inspector",
                        **form(phone_jpeg(), filename=name))
    assert response.status_code == status, response.get_json()
    if status == 422:
        assert response.json["error"]["code"] == "text_too_long"
        assert response.json["error"]["details"]["field"] == "filename"
        assert stored_snapshot(engine) == before
    else:
        assert _strings(engine)[unicodedata.normalize("NFC", name.strip())] == 1
