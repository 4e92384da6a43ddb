"""The documented domain of every value gridmap stores or looks up.

Everything that enters (JSON API, services, file importers, CLI options) is
checked here *before* it is written, so that no stored value can make a later
read, export or generated number fail on either backend.  Each function
returns the normalised value or raises
:class:`~geodata.errors.FeatureError` (422) whose ``details`` name the
``field`` and the ``domain`` it broke.

The domains
-----------
Codes (parks, grids, enterprises' credit codes, ledger numbers)
    Normalised with NFKC, trimmed and upper-cased, so ``a-01``, ``A-01 `` and
    ``Ａ-01`` are one code.  Alphabet: ASCII letters ``A-Z``, digits,
    ``-``, ``_`` and ``.``; the first character is a letter or digit.  So no
    space, CR/LF, quote, ``/``, ``<``, NUL, control or bidi character and no
    CJK: codes go into URL paths, file names and ``Content-Disposition``
    headers (which must be Latin-1).  Park codes are at most
    :data:`PARK_CODE_MAX` (32, the column) characters, grid codes
    :data:`GRID_CODE_MAX` (64).  A code may be sent in any character of the
    Basic Multilingual Plane that NFKC and upper case turn into *one* code
    character (``Ａ``, ``ｆ``, ``①``, ``Ⅰ``, ``K`` KELVIN SIGN), so the stored
    code is exactly as long as the code sent; one that turns into several
    (``Ⅻ``, ``ﬁ``, ``ß``) is refused, as the documents' patterns say.
Ledger numbers (台账编号)
    ``<prefix><year>-<seq>`` (``YH`` hazards, ``SQ`` requests): a 4-digit
    year in the date range below and a sequence number of 1 to 6 digits,
    1..:data:`LEDGER_SEQ_MAX`.  Generated numbers
    are the park's highest number of that year plus one, and never go past
    :data:`LEDGER_SEQ_MAX` (409 ``ledger_numbers_exhausted`` instead), so the
    next number always fits the 32-character column.
Text
    NFC, trimmed of the blanks :data:`BLANKS` names (the same in the schemas'
    patterns; no control character is trimmed: it is refused), at most the
    column's length (:data:`TEXT_MAX` per kind).
Lengths (one rule for text and codes)
    A length is a number of Unicode code points, as JSON Schema's
    ``maxLength`` and PostgreSQL's ``varchar(n)`` count them (SQLite does not
    count).  Both the value *as sent* (surrounding blanks included) and the
    value *as stored* (trimmed and NFC- or, for codes, NFKC-normalised) must
    be within the cap, which is the column's size.  So the documents'
    ``maxLength`` refuses exactly the values too long as sent (150 ``e`` +
    U+0301 is 300 characters sent, though 150 stored); the one value a
    schema cannot describe is text that NFC makes longer than it was sent
    (U+0958, or ``ǖ`` + U+0323: 2 sent, 3 stored), refused
    ``text_too_long`` when that passes the cap, as the schemas' descriptions
    say.  Characters outside the BMP count one each, as stored on both
    backends.
    No NUL or other C0/C1 control character, no lone surrogate and no bidi
    override or isolate (PostgreSQL refuses NUL and lone surrogates, so the
    backends would diverge, and bidi controls disguise text).  Only multi-line
    kinds (descriptions, notes, reasons) may hold tab, CR and LF.
Dates and date-times
    :data:`DATE_MIN` (1970-01-01) to :data:`DATE_MAX` (2100-12-31).  A
    date-time must name its offset or is taken as UTC; it is normalised to
    UTC and its UTC date must lie in that range, so every driver (psycopg,
    pysqlite, pandas, openpyxl) reads it back.
Integers
    Whole numbers (``true`` is not one) within signed 64 bits at most, and
    within each column: row ids are 1..:data:`ID_MAX` (the 32-bit
    ``INTEGER`` primary keys of PostgreSQL), page offsets 0..:data:`OFFSET_MAX`,
    employee counts 0..:data:`EMPLOYEES_MAX`.  In a query string or a URL
    path an integer is ASCII digits with an optional ``-``: no blanks, ``+``,
    ``_`` or other scripts' digits, which Python's ``int()`` would accept.
Objects and lists (JSON members such as ``supervision``, ``codes``)
    Absent or ``null`` is a missing member (``missing_field`` where one is
    required); any other JSON type than the one documented is
    ``invalid_type``, whatever its truth (``[]``, ``{}``, ``""``, ``0`` and
    ``false`` are not "absent"); a list with fewer or more entries than
    the member allows is ``invalid_value`` saying how many are needed.
Numbers (coordinates, GPS accuracy)
    Finite (``true``, NaN, infinity and integers beyond any float are not)
    and within the field's range; ``-0`` is stored as ``0``.
"""

import functools
import math
import re
import unicodedata
from datetime import date, datetime, time, timezone

from geodata.errors import ConflictError, FeatureError

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
#: Row ids: PostgreSQL ``INTEGER`` primary keys.
ID_MAX = 2**31 - 1
#: 32-bit ``INTEGER`` columns (versions, counts).
INT32_MAX = 2**31 - 1
#: Page offsets of every list (the map API has always capped them here).
OFFSET_MAX = 10**9
EMPLOYEES_MAX = 10_000_000

DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(2100, 12, 31)
DATETIME_MIN = datetime.combine(DATE_MIN, time.min, timezone.utc)
DATETIME_MAX = datetime.combine(DATE_MAX, time.max, timezone.utc)

PARK_CODE_MAX = 32
GRID_CODE_MAX = 64
LEDGER_SEQ_MAX = 999_999
#: ``YH2025-000001``: the longest ledger number.
LEDGER_CODE_MAX = 13

#: Longest text per kind: each matches its column (geodata/models).
TEXT_MAX = {
    "name": 200,        # parks, grids, enterprises; photo file names
    "person": 100,      # staff, supervisors, actors, display names, contacts
    "category": 100,    # hazard categories, industries, token names
    "phone": 32,
    "note": 2000,       # descriptions, notes, escalation reasons (Text columns)
    "reason": 500,      # why a grid edit was made
    "search": 100,      # a search query
}
MULTILINE = frozenset({"note", "reason"})

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9._-]*$")
#: Ledger number prefixes: hazards (隐患) and requests (诉求).
LEDGER_PREFIXES = ("YH", "SQ")
_LEDGER = {p: re.compile(rf"^{p}(\d{{4}})-(\d{{1,6}})$") for p in LEDGER_PREFIXES}
# C0 and C1 controls, DEL, lone surrogates, bidi embeddings/overrides/isolates.
_BAD_ANY = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = re.compile(f"[{_BAD_ANY}]")
# Line breaks, refused in single-line kinds; the same text goes into text_schema's pattern,
# where U+2028 and U+2029 are a range: Hypothesis (so Schemathesis) cannot generate from a
# pattern naming either alone, and its coverage phase then sent a value made to be refused
# (one over maxLength) as a valid one.
_LINE_BREAKS = r"\t\n\r\u2028-\u2029"
_FORBIDDEN_LINE = re.compile(f"[{_BAD_ANY}{_LINE_BREAKS}]")
# The blanks trimmed from text and codes, as a pattern class and as str.strip's argument:
# str.strip() alone also trims C0/C1 controls (U+001C-U+001F, U+0085) that the schemas
# refuse, and ECMA-262's \s (which the patterns used) has U+FEFF, which strip() keeps.
# Each non-ASCII one is a range, as for the line breaks above: Hypothesis reads patterns
# with re.ASCII and cannot draw from a class naming a non-ASCII character alone.
_BLANKS = (r" \t\n\r\u00a0-\u00a0\u1680-\u1680\u2000-\u200a\u2028-\u2029\u202f-\u202f"
           r"\u205f-\u205f\u3000-\u3000")
BLANKS = " \t\n\r\u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200b))) + (
    "\u2028\u2029\u202f\u205f\u3000")


def is_forbidden_char(char):
    """True for a character no single-line text holds (control, line break, surrogate, bidi)."""
    return bool(_FORBIDDEN_LINE.match(char))


#: What one file name and one whole path may hold, in bytes (Linux's NAME_MAX, PATH_MAX).
NAME_MAX, PATH_MAX = 255, 4095


def path_problem(value, *, length=True):
    """Say why the system cannot take ``value`` as a path, or return None.

    ``length=False`` checks the characters alone (a database URL holds a path).

    A NUL byte was ``ValueError: embedded null byte`` from ``open()``, a
    traceback; other control characters (a pasted CR, an escape) and bidi
    controls name a file nobody meant; a lone surrogate is a name that is
    not UTF-8 (``os.fsdecode`` of its bytes), which no message can print;
    an over-long name is ``ENAMETOOLONG`` only once a command is half done.
    """
    if not isinstance(value, str):
        return None
    bad = sorted({c for c in value if is_forbidden_char(c)})
    if bad:
        return (f"the path holds {', '.join(f'U+{ord(c):04X}' for c in bad[:3])}: no NUL, "
                "control, line-break, bidirectional-control or undecodable (non-UTF-8) "
                "character")
    longest = max((len(part.encode()) for part in value.split("/")), default=0)
    if length and (longest > NAME_MAX or len(value.encode()) > PATH_MAX):
        return (f"the path is too long ({len(value.encode())} bytes, its longest name "
                f"{longest}): at most {NAME_MAX} bytes a name and {PATH_MAX} in all")
    return None


def _fail(reason, field, domain, code="invalid_value", **where):
    raise FeatureError(reason, code=code, field=field, domain=domain, **where)


def text(value, field, *, kind="name", required=False, max_length=None, **where):
    """Return ``value`` as clean NFC text of ``kind``, or None when optional and blank.

    Parameters
    ----------
    value : str or None
    field : str
        Named in the error.
    kind : str
        A key of :data:`TEXT_MAX`; kinds in :data:`MULTILINE` may hold tab,
        CR and LF.
    max_length : int, optional
        A tighter cap than the kind's.
    **where
        ``index`` and ``file`` of an imported feature.

    Raises
    ------
    FeatureError
        ``missing_field``, ``invalid_type``, ``invalid_text`` (control, bidi or
        surrogate characters) or ``text_too_long``.
    """
    if value is None or (isinstance(value, str) and not value.strip(BLANKS)):
        if required:
            _fail("is required", field, "text", code="missing_field", **where)
        return None
    if not isinstance(value, str):
        _fail(f"must be text, got {type(value).__name__}", field, "text", code="invalid_type",
              **where)
    limit = min(TEXT_MAX[kind], max_length or TEXT_MAX[kind])
    stored = unicodedata.normalize("NFC", value.strip(BLANKS))
    if (_FORBIDDEN if kind in MULTILINE else _FORBIDDEN_LINE).search(stored):
        _fail("contains control, line-break, bidirectional-override or surrogate characters"
              if kind not in MULTILINE else
              "contains control, bidirectional-override or surrogate characters",
              field, f"{kind} text", code="invalid_text", **where)
    # The module's length rule: as sent (the documents' maxLength) and as stored (the column).
    if max(len(value), len(stored)) > limit:
        how = ("" if len(value) >= len(stored) else
               f" once normalised (NFC; {len(value)} as sent)")
        _fail(f"is {max(len(value), len(stored))} characters{how}; at most {limit} allowed",
              field, f"{kind} text of at most {limit} characters", code="text_too_long",
              **where)
    return stored


def code(value, field, *, kind="grid", required=True, max_length=None, **where):
    """Return a normalised code (NFKC, trimmed, upper case) in the code alphabet.

    ``kind`` is ``"park"`` (at most :data:`PARK_CODE_MAX` characters),
    ``"grid"`` (:data:`GRID_CODE_MAX`) or ``"credit"``: a credit code is only
    normalised here, since :func:`geodata.creditcode.credit_code_problem`
    says what is wrong with one (e.g. Excel's ``9.14E+17``) better than the
    code alphabet would.  ``max_length`` is a tighter cap (ledger numbers).
    The value sent must match :func:`code_schema`'s pattern and length.

    Raises
    ------
    FeatureError
        ``missing_field``, ``invalid_text`` or ``invalid_value`` naming the alphabet.
    """
    raw = text(value, field, kind="name", required=required, **where)
    if raw is None:
        return None
    normal = unicodedata.normalize("NFKC", raw).strip().upper()
    if kind == "credit":
        return normal
    limit = min(PARK_CODE_MAX if kind == "park" else GRID_CODE_MAX, max_length or INT32_MAX)
    domain = (f"{kind} code: 1-{limit} of A-Z 0-9 . _ -, starting with a letter or digit")
    # As sent, the schema's own test: each character one code character (so the stored code
    # is as long as the one sent), within the cap with its blanks (the module's length rule).
    if len(value) > limit or not re.fullmatch(_code_pattern(), value) or not _CODE.match(normal):
        sent = f" ({len(value)} characters as sent)" if len(value) > limit else ""
        _fail(f"{normal[:80]!r}{sent} is not a {kind} code (1-{limit} characters: letters A-Z, "
              "digits, '.', '_' and '-', starting with a letter or digit)", field, domain,
              **where)
    return normal


def is_code(value, kind="grid"):
    """True when ``value`` could name a stored park or grid (for lookups: False is a 404)."""
    try:
        code(value, "code", kind=kind)
    except FeatureError:
        return False
    return True


def ledger_code(value, field="code", *, prefix="YH", **where):
    """Return a normalised ledger number ``<prefix><year>-<seq>``, or None when blank.

    Raises
    ------
    FeatureError
        ``invalid_value`` for any other shape, a year outside the date range
        or a sequence number outside 1..:data:`LEDGER_SEQ_MAX`.
    """
    raw = code(value, field, required=False, max_length=LEDGER_CODE_MAX, **where)
    if raw is None:
        return None
    match = _LEDGER[prefix].match(raw)
    domain = (f"ledger number {prefix}<year {DATE_MIN.year}-{DATE_MAX.year}>-<1 to 6 digits, "
              f"1..{LEDGER_SEQ_MAX}>")
    if not match or not DATE_MIN.year <= int(match.group(1)) <= DATE_MAX.year or not (
            1 <= int(match.group(2)) <= LEDGER_SEQ_MAX):
        _fail(f"{raw!r} is not a ledger number ({domain}, e.g. {prefix}2025-0001)", field,
              domain, **where)
    return raw


def ledger_sequence(code_, year, prefix="YH"):
    """Return the sequence number of ``code_`` if it is a ledger number of ``year``, else None."""
    match = _LEDGER[prefix].match(code_ or "")
    if match and int(match.group(1)) == year:
        return int(match.group(2))
    return None


def ledger_number(prefix, year, seq, park_code):
    """Format the generated ledger number ``<prefix><year>-<seq>`` (at least 4 digits).

    Generated numbers are the park's highest of the year plus one, for
    hazards and requests alike; this is where they stop.

    Raises
    ------
    ConflictError
        409 ``ledger_numbers_exhausted`` when ``seq`` is past :data:`LEDGER_SEQ_MAX`.
    """
    if seq > LEDGER_SEQ_MAX:
        raise ConflictError(
            f"ledger numbers of {year} are used up in park {park_code} ({prefix}{year}-"
            f"{LEDGER_SEQ_MAX} is taken); give the ledger number explicitly",
            code="ledger_numbers_exhausted", details={"field": "code", "year": year})
    return f"{prefix}{year}-{seq:04d}"


def integer(value, field, *, minimum=INT64_MIN, maximum=INT64_MAX, **where):
    """Return ``value`` if it is a whole number in ``minimum..maximum`` (within 64 bits).

    Raises
    ------
    FeatureError
        ``invalid_type`` for a non-integer (``true`` included), ``invalid_value``
        out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"must be a whole number, got {value!r:.40}", field, "integer",
              code="invalid_type", **where)
    minimum, maximum = max(minimum, INT64_MIN), min(maximum, INT64_MAX)
    if not minimum <= value <= maximum:
        # 2^70 has 22 digits; 10^400 has no float (nor, past 4300 digits, a str()).
        shown = str(value) if abs(value) <= 10**12 else (
            f"{value:.6g}" if abs(value) < 10**300 else
            f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits")
        _fail(f"must be between {minimum} and {maximum}, got {shown}", field,
              f"integer {minimum}..{maximum}", **where)
    return int(value)


_JSON_TYPES = ((bool, "true/false"), (dict, "an object"), (list, "a list"), (str, "text"),
               ((int, float), "a number"))


def _json_type(value):
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


def members(value, field, *, required=False, **where):
    """Return ``value`` if it is a JSON object, None when absent (``null``).

    Raises
    ------
    FeatureError
        ``missing_field`` when ``required`` and absent, ``invalid_type`` for
        any other JSON type (``[]`` included).
    """
    if value is None:
        if required:
            _fail("is required (an object)", field, "object", code="missing_field", **where)
        return None
    if not isinstance(value, dict):
        _fail(f"must be an object, got {_json_type(value)}", field, "object",
              code="invalid_type", **where)
    return value


def items(value, field, *, minimum=0, maximum=None, what="entries", required=False, **where):
    """Return ``value`` if it is a JSON list of ``minimum``..``maximum`` entries, None if absent.

    ``what`` names the entries in the message (``"grid codes"``).

    Raises
    ------
    FeatureError
        ``missing_field`` when ``required`` and absent, ``invalid_type`` for
        any other JSON type, ``invalid_value`` for too few or too many entries.
    """
    count = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
    if value is None:
        if required:
            _fail(f"is required (a list of {count} {what})", field, "list",
                  code="missing_field", **where)
        return None
    if not isinstance(value, list):
        _fail(f"must be a list of {what}, got {_json_type(value)}", field, "list",
              code="invalid_type", **where)
    if len(value) < minimum or (maximum is not None and len(value) > maximum):
        _fail(f"needs {count} {what}, got {len(value)}", field, f"list of {count} {what}",
              **where)
    return value


def number(value, field, *, minimum=None, maximum=None, code="invalid_value", **where):
    """Return ``value`` as a finite float, within ``minimum..maximum`` when they are given.

    ``code`` is the error code (``invalid_coordinate`` for coordinates, as
    RELIABILITY.md names it).

    Raises
    ------
    FeatureError
        ``code`` for a non-number (``true`` included), NaN, infinity, an
        integer beyond any float (``10**400``) or a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"must be a number, got {value!r:.40}", field, "number", code=code, **where)
    try:
        as_float = float(value)
    except OverflowError:  # an integer of more than 308 digits
        as_float = math.inf
    low = -math.inf if minimum is None else minimum
    high = math.inf if maximum is None else maximum
    if not (math.isfinite(as_float) and low <= as_float <= high):
        shown = f"{as_float:.6g}" if math.isfinite(as_float) else "not finite"
        domain = ("finite number" if minimum is None and maximum is None
                  else f"finite number {low}..{high}")
        _fail(f"must be a {domain}, got {shown}", field, domain, code=code, **where)
    # -0.0 becomes 0.0: SQLite stores an integral REAL as an integer and reads back 0.0,
    # PostgreSQL keeps -0.0, and the two answers would differ.
    return as_float + 0.0


def plain_number(text, kind=int):
    """Return ``kind(text)`` (``int`` or ``float``) for a number written plainly, else None.

    Plainly means ASCII with no surrounding blanks and no ``_``: query
    strings and URL paths are read this way.  ``int()`` and ``float()``
    alone also take ``" 1"``, ``"1_000"`` and ``"١"`` (ARABIC-INDIC DIGIT ONE).
    ``float`` still reads ``nan`` and ``inf``: callers refuse them as not finite.
    """
    if not (isinstance(text, str) and text.isascii() and text == text.strip()
            and "_" not in text):
        return None
    try:
        return kind(text)
    except ValueError:  # not a number, or an int of more than 4300 digits
        return None


def is_id(value):
    """True when ``value`` could be a stored row id (1..:data:`ID_MAX`); else a lookup is a 404."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


# Only the extended forms the schemas below name: Python's fromisoformat also reads the basic
# form (20260101, so a JSON number too, once str() made it text) and week dates (2026-W01-1),
# which no client of the schema sends and a typo can turn into a valid but wrong day.
_DAY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_MOMENT_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                          r"(Z|[+-]\d{2}:?\d{2})?)?")


def day(value, field, *, required=False, **where):
    """Return ``value`` (a date or ``YYYY-MM-DD`` text) as a date within the date range.

    Raises
    ------
    FeatureError
        ``missing_field``, ``invalid_date`` (not a date) or ``invalid_value``
        (outside :data:`DATE_MIN`..:data:`DATE_MAX`).
    """
    if value is None:
        if required:
            _fail("is required", field, "date", code="missing_field", **where)
        return None
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        try:
            if not (isinstance(value, str) and _DAY_TEXT.fullmatch(value.strip())):
                raise ValueError
            value = date.fromisoformat(value.strip())
        except ValueError:
            _fail(f"must be a date YYYY-MM-DD, got {str(value)[:40]!r}", field, "date",
                  code="invalid_date", **where)
    if not DATE_MIN <= value <= DATE_MAX:
        _fail(f"{value.isoformat()} is outside {DATE_MIN}..{DATE_MAX}", field,
              f"date {DATE_MIN}..{DATE_MAX}", **where)
    return value


def moment(value, field, **where):
    """Return ``value`` (ISO 8601 extended text or a datetime) as an aware UTC datetime in range.

    A value without an offset is taken as UTC.

    Raises
    ------
    FeatureError
        ``invalid_date`` (not an ISO date-time) or ``invalid_value`` (its UTC
        date outside :data:`DATE_MIN`..:data:`DATE_MAX`).
    """
    if not isinstance(value, datetime):
        try:
            if not (isinstance(value, str) and _MOMENT_TEXT.fullmatch(value.strip())):
                raise ValueError
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            _fail(f"must be an ISO 8601 date-time, got {str(value)[:40]!r}", field, "date-time",
                  code="invalid_date", **where)
    domain = f"date-time {DATETIME_MIN.isoformat()}..{DATETIME_MAX.isoformat()}"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    # Compare before converting: astimezone() of 0001-01-01T00:00+14:00 overflows.
    if not DATETIME_MIN <= value <= DATETIME_MAX:
        _fail(f"{value.isoformat()} is outside {DATE_MIN}..{DATE_MAX} (UTC)", field, domain,
              **where)
    return value.astimezone(timezone.utc)


# The same domains as JSON Schema, for the OpenAPI document (webmap/api.py), so the
# document refuses exactly what the functions above refuse and cannot drift from them.
# Lone surrogates are left out of the patterns: no JSON Schema engine's regex takes them,
# and a JSON text carrying one is refused before any schema is read.
_BAD_SCHEMA = _BAD_ANY.replace(r"\ud800-\udfff", "")


def text_schema(kind="name", *, required=False, max_length=None):
    """JSON Schema of :func:`text` of ``kind``: no forbidden character, at most the cap.

    ``required``: not blank either (a blank optional text is stored as none).
    """
    bad = _BAD_SCHEMA if kind in MULTILINE else _BAD_SCHEMA + _LINE_BREAKS
    limit = min(TEXT_MAX[kind], max_length or TEXT_MAX[kind])
    # The length is maxLength's alone: generators read a counted pattern as a second cap.
    # Surrounding blanks are trimmed (and a blank optional text is none), so they may be sent.
    first = f"[^{bad}{_BLANKS}]" if required else ""
    pattern = f"^[{_BLANKS}]*{first}([^{bad}]*[^{bad}{_BLANKS}])?[{_BLANKS}]*$"
    return {"type": "string", "pattern": pattern, "maxLength": limit,
            "description": f"At most {limit} Unicode code points as sent, blanks included, "
                           "and as stored (trimmed, NFC): text that NFC makes longer than "
                           f"{limit} is refused (text_too_long)"}


def _char_class(points):
    r"""A pattern class of the BMP code points ``points``, as ``\uXXXX-\uXXXX`` ranges.

    A single character is a range too (see :data:`_BLANKS`).
    """
    runs, points = [], sorted(points)
    for point in points:
        if runs and runs[-1][1] == point - 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    return "[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in runs) + "]"


@functools.lru_cache(maxsize=None)
def _same_as():
    """``{code character: the BMP code points NFKC and upper case turn into it alone}``."""
    table = {c: [] for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"}
    for point in range(0x10000):
        if not 0xD800 <= point <= 0xDFFF:
            table.get(unicodedata.normalize("NFKC", chr(point)).upper(), []).append(point)
    return table


def widen_pattern(ascii_pattern):
    """``ascii_pattern`` with each code character or class widened to its forms as sent.

    ``ascii_pattern`` names upper-case code characters (``A-Z 0-9 . _ -``),
    alone or in ``[...]`` classes; each becomes the class of every BMP
    character that NFKC and upper case turn into one of them (``Ａ``, ``ａ``,
    ``①``), which is what :func:`code` and the credit-code lookup accept.
    """
    def widen(match):
        if match.group(0).startswith("{"):  # a quantifier
            return match.group(0)
        chars = match.group(0).strip("[]")
        chars = re.sub(r"(.)-(.)", lambda r: "".join(map(chr, range(ord(r.group(1)),
                                                                    ord(r.group(2)) + 1))),
                       chars)
        return _char_class([p for c in chars for p in _same_as()[c]])
    return re.sub(r"\{\d*(,\d*)?\}|\[[^\]]*\]|[A-Z0-9._-]", widen, ascii_pattern)


@functools.lru_cache(maxsize=None)
def _code_pattern():
    """The pattern of a code as sent: the alphabet widened, blanks around it."""
    return f"^[{_BLANKS}]*{widen_pattern('[A-Z0-9]')}{widen_pattern('[A-Z0-9._-]')}*[{_BLANKS}]*$"


def code_schema(kind="grid"):
    """JSON Schema of :func:`code` of ``kind`` (``park`` or ``grid``), as sent."""
    limit = PARK_CODE_MAX if kind == "park" else GRID_CODE_MAX
    return {"type": "string", "pattern": _code_pattern(), "minLength": 1, "maxLength": limit,
            "description": f"At most {limit} characters as sent, blanks included; each "
                           "A-Z a-z 0-9 . _ - or a form NFKC turns into one of them (Ａ)"}


def ledger_code_schema(prefix="YH"):
    """JSON Schema of :func:`ledger_code` with ``prefix`` (the year in the date range)."""
    number = widen_pattern(f"{prefix}(19[7-9][0-9]|20[0-9][0-9]|2100)-"
                           "(0{0,5}[1-9]|0{0,4}[1-9][0-9]|0{0,3}[1-9][0-9]{2}|"
                           "0{0,2}[1-9][0-9]{3}|0?[1-9][0-9]{4}|[1-9][0-9]{5})")
    return {"type": "string", "maxLength": LEDGER_CODE_MAX,
            "pattern": f"^[{_BLANKS}]*{number}[{_BLANKS}]*$"}


def integer_schema(minimum=INT64_MIN, maximum=INT64_MAX):
    """JSON Schema of :func:`integer` in ``minimum..maximum``."""
    return {"type": "integer", "minimum": max(minimum, INT64_MIN),
            "maximum": min(maximum, INT64_MAX)}


def id_schema():
    """JSON Schema of a row id (1..:data:`ID_MAX`)."""
    return integer_schema(1, ID_MAX)


_YEARS = "(19[7-9][0-9]|20[0-9][0-9]|2100)"
_MONTH_DAY = "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"


def day_schema():
    """JSON Schema of :func:`day`: ``YYYY-MM-DD`` from :data:`DATE_MIN` to :data:`DATE_MAX`."""
    return {"type": "string", "format": "date", "pattern": f"^{_YEARS}{_MONTH_DAY}$"}


def moment_schema():
    """JSON Schema of :func:`moment`: an RFC 3339 date-time in the years of the date range.

    The years 1970 and 2100 are left out, so that no offset moves the UTC
    date out of :data:`DATE_MIN`..:data:`DATE_MAX`.
    """
    return {"type": "string", "format": "date-time",
            "pattern": f"^(197[1-9]|19[89][0-9]|20[0-9][0-9]){_MONTH_DAY}T([01][0-9]|2[0-3])"
                       r"(:[0-5][0-9]){2}(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"}
