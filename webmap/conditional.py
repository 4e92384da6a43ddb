"""Conditional requests on every versioned route: ``ETag``, ``If-None-Match`` and ``If-Match``.

The rules are :mod:`geodata.versions`' (``If-Match`` lists and ``W/``
accepted; ``*`` is 428 ``version_required``; anything else 412
``invalid_if_match``).  Reads answer 304 with the ETag when
``If-None-Match`` names it, by the weak comparison RFC 9110 section 13.1.2
prescribes (``W/"…"`` and ``*`` match too).

A versioned read's ETag is ``"<version>.<digest>"`` (:func:`answer`): the
version its writes check in ``If-Match``, and a digest of the answer's
body.  The version alone is not enough: only gridmap's services bump it,
while the answer also shows data other writers change without it (QGIS or
raw SQL editing a grid's geometry or name, an enterprise's name, a hazard's
point; an import; a restore) and data that changes with the day (overdue
flags).  Whatever changed what the answer shows changed the digest, so a
client holding the old ETag gets the new answer, never a stale 304.  A
write's answer that is no representation of the read (a grid edit's
outcome) carries the bare ``"<version>"``: still a valid ``If-Match``.
"""

import hashlib

from flask import current_app, request

from geodata import versions
from geodata.errors import ValidationError


def if_match():
    """The raw ``If-Match`` header (None when absent), for the services to parse."""
    return request.headers.get("If-Match")


def expected_version(data, field="version"):
    """Return ``(expected, from If-Match?)`` of a write (:func:`geodata.versions.expected_version`).

    The body member ``field`` must be an integer (422 ``invalid_type``).
    """
    version = data.get(field)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValidationError(f"{field} must be an integer", code="invalid_type",
                              details={"field": field})
    return versions.expected_version(if_match(), version)


#: Hex digits of the body digest in a versioned read's ETag (64 bits: a stale 304 needs a
#: collision between two answers of the same row and version).
DIGEST_HEX = 16


def etag(version, body=None):
    """The strong ETag of a version: ``"3"``; with the answer's ``body`` bytes ``"3.<digest>"``."""
    if body is None:
        return f'"{version}"'
    return f'"{version}.{hashlib.sha256(body).hexdigest()[:DIGEST_HEX]}"'


def with_etag(response, version):
    """Set ``response``'s ETag to ``version``'s and return it."""
    response.headers["ETag"] = etag(version)
    return response


def answer(response, version):
    """Tag a versioned read's ``response`` ``"<version>.<digest of its body>"``; 304 if held.

    The answer is built first (the digest covers everything it shows, whoever
    changed it); a 304 then saves its transfer, and keeps its
    ``Cache-Control``.
    """
    tag = etag(version, response.get_data())
    # A write's answer (201, a transition's 200) carries the tag too; only a read is a 304.
    if request.method in ("GET", "HEAD") and request.if_none_match.contains_weak(tag.strip('"')):
        unchanged = current_app.response_class(status=304)
        if "Cache-Control" in response.headers:
            unchanged.headers["Cache-Control"] = response.headers["Cache-Control"]
        response = unchanged
    response.headers["ETag"] = tag
    return response


def not_modified(version):
    """A 304 (with the ETag) when ``If-None-Match`` names ``version``, else None."""
    if request.if_none_match.contains_weak(str(version)):
        return with_etag(current_app.response_class(status=304), version)
    return None
