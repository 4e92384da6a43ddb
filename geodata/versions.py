"""Optimistic locking: the version a writer read, from an ``If-Match`` header or a body member.

Every versioned row (park, grid, hazard, request) answers its version as a
strong ``ETag: "3"``.  A write names the version it read and is refused
when the row moved on: ``If-Match`` → 412 ``precondition_failed``, a body
``version`` → 409 ``stale_version``.  One reading of ``If-Match`` for every
route and the CLI's ``--if-match``:

* ``"3"`` and ``W/"3"``: version 3; so is a read's ETag ``"3.<digest>"``
  (the digest of the answer it came with).  The weak form is accepted because a
  compressing proxy (nginx ``gzip``) weakens the ETags it passes on, and the
  number is the whole of the version either way.
* ``"2", "3"``: a list matches when the row is at any of its versions
  (RFC 9110 section 13.1.1).
* ``*``: "any current representation" asserts only that the row exists,
  which is no lock at all; the API requires a concrete version, so it is
  428 ``version_required`` on every route, as a write with no version is.
* A well-formed entity tag this service never issued (``"abc"``, ``"01"``)
  or an empty value cannot match: 412 ``invalid_if_match``.
* A value that is no list of entity tags at all (``3`` unquoted, ``*`` in a
  list, ``"3"; x``) cannot be read: 400 ``invalid_if_match``, as any
  unparseable input is (and as the OpenAPI document's pattern says).
"""

import re

from geodata.errors import (BadRequestError, ConflictError, PreconditionFailedError,
                            ValidationError)

#: ``If-Match: *``.
ANY = "*"
#: One list member: an optionally weak entity tag and the comma (or end) after it.
_MEMBER = re.compile(r'[ \t]*(?:W/)?"([^"\x00-\x20\x7f]*)"[ \t]*(?:,|$)')
#: An empty list member, which RFC 9110 section 5.6.1 says to skip.
_EMPTY = re.compile(r"[ \t]*,")
#: A version as this service writes it: canonical decimal, far below 2^63; a read's ETag
#: adds its body's digest (``"3.9f86d081884c7d65"``, :func:`webmap.conditional.answer`),
#: which a write does not check: the version is what it locks on.
_VERSION = re.compile(r"(0|[1-9][0-9]{0,17})(?:\.[0-9a-f]{16})?")
_EXAMPLE = 'send the quoted version from the ETag you read, e.g. If-Match: "3"'


def _invalid(header, error=PreconditionFailedError):
    return error(
        f"If-Match {header[:60]!r} names no version of this service; {_EXAMPLE}",
        code="invalid_if_match", details={"if_match": header[:60]})


def parse_if_match(header):
    """Parse an ``If-Match`` value.

    Parameters
    ----------
    header : str, int or None
        The raw header; an int is the CLI's ``--if-match`` version; None when absent.

    Returns
    -------
    None, ANY or frozenset of int
        None when absent, :data:`ANY` for ``*``, else the versions listed.

    Raises
    ------
    PreconditionFailedError
        412 ``invalid_if_match``: entity tags, none of them one this service issued.
    BadRequestError
        400 ``invalid_if_match``: not a list of entity tags at all.
    """
    if header is None:
        return None
    if isinstance(header, int) and not isinstance(header, bool):
        return frozenset({header})
    text = str(header)
    if text.strip() == ANY:
        return ANY
    versions, position = set(), 0
    while position < len(text):
        empty = _EMPTY.match(text, position)
        if empty is not None:
            position = empty.end()
            continue
        match = _MEMBER.match(text, position)
        if match is None or match.end() == position:
            raise _invalid(text, BadRequestError)
        version = _VERSION.fullmatch(match.group(1))
        if version is None:
            raise _invalid(text)
        versions.add(int(version.group(1)))
        position = match.end()
    if not versions:
        raise _invalid(text)
    return frozenset(versions)


def expected_version(header, body_version):
    """The version a write expects: ``(expected, from_header)``.

    ``expected`` is None (no version given), :data:`ANY`, a frozenset of
    versions (from the header), the body's integer, or the 412 (400 when
    unreadable) ``invalid_if_match`` error of a header that is no ETag of ours, which
    :func:`check_version` raises.  A header and a body
    version that contradict each other are refused (422
    ``conflicting_versions``): which one would the client mean?
    """
    try:
        tags = parse_if_match(header)
    except (PreconditionFailedError, BadRequestError) as error:
        # Raised by check_version, once the row is found and the caller may see it:
        # an unknown id is 404 and another grid's row 403 whatever the header says.
        return error, True
    if tags is None:
        return body_version, False
    if body_version is not None and tags is not ANY and body_version not in tags:
        raise ValidationError(f"body version {body_version} is not the If-Match version "
                              f"{header[:60]!r}; send one of them", code="conflicting_versions",
                              details={"field": "version", "if_match": header[:60]})
    return tags, True


def check_version(what, current, expected, from_header, *, required=True, details=None):
    """Refuse a write whose expected version is not ``current``.

    Parameters
    ----------
    what : str
        The row named in messages (``"hazard YH2026-0001"``).
    current : int
        The row's version, read under the write's lock.
    expected : None, ANY, frozenset of int, int, PreconditionFailedError or BadRequestError
        As returned by :func:`expected_version` (or a parsed header).
    from_header : bool
        True when ``expected`` came from ``If-Match`` (412, not 409).
    required : bool
        False where a write without any version is allowed (grid edits).
    details : dict, optional
        Extra members of the error's details (the park, the grid).

    Raises
    ------
    ValidationError
        428 ``version_required``: no version (or ``If-Match: *``) where one is required.
    PreconditionFailedError
        412 ``precondition_failed``: ``If-Match`` names other versions.
    ConflictError
        409 ``stale_version``: the body names another version.
    """
    if isinstance(expected, (PreconditionFailedError, BadRequestError)):
        raise expected
    if expected is ANY or (expected is None and required):
        message = (f"If-Match: * names no version; {_EXAMPLE}" if expected is ANY else
                   f"this write needs the version you read: {_EXAMPLE}, or the body 'version'")
        raise ValidationError(message, code="version_required", http_status=428,
                              details={"field": "version", **(details or {})})
    if expected is None:
        return
    listed = sorted(expected) if isinstance(expected, frozenset) else [expected]
    if current in listed:
        return
    shown = listed[0] if len(listed) == 1 else listed
    error = PreconditionFailedError if from_header else ConflictError
    raise error(f"{what} changed since you read it (version "
                f"{' or '.join(map(str, listed))}, now {current}); reload and try again",
                code="precondition_failed" if from_header else "stale_version",
                details={**(details or {}), "expected": shown, "current": current})
