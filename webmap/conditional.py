"""Conditional requests on every versioned route: ``ETag``, ``If-None-Match`` and ``If-Match``.

The rules are :mod:`geodata.versions`' (strong ETags ``"<version>"``;
``If-Match`` lists and ``W/`` accepted; ``*`` is 428 ``version_required``;
anything else 412 ``invalid_if_match``).  Reads answer 304 with the ETag
when ``If-None-Match`` names the version, by the weak comparison RFC 9110
section 13.1.2 prescribes (``W/"3"`` and ``*`` match too).
"""

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


def etag(version):
    """The strong ETag of a version: ``"3"``."""
    return f'"{version}"'


def with_etag(response, version):
    """Set ``response``'s ETag to ``version``'s and return it."""
    response.headers["ETag"] = etag(version)
    return response


def not_modified(version):
    """A 304 (with the ETag) when ``If-None-Match`` names ``version``, else None."""
    if request.if_none_match.contains_weak(str(version)):
        return with_etag(current_app.response_class(status=304), version)
    return None
