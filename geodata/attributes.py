"""Attribute validation shared by every import and API write.

Text is normalised to NFC and refused when it holds control characters
(PostgreSQL rejects NUL, so the backends would otherwise diverge) or
bidirectional overrides, or exceeds :data:`MAX_TEXT`.  Codes are normalised
harder (NFKC, trimmed, upper case) so that ``A-01``, ``A-01 `` and
``Ａ-01`` are the same code.  Every error names the feature index and field.
"""

import re
import unicodedata
from datetime import date

import pandas as pd

from geodata.errors import FeatureError

MAX_TEXT = 200
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _blank(value):
    return value is None or (isinstance(value, float) and pd.isna(value)) or (
        isinstance(value, str) and not value.strip()) or value is pd.NaT


def text(value, *, index=None, field=None, file=None, required=True, max_length=MAX_TEXT):
    """Return ``value`` as clean NFC text, or None when optional and blank."""
    if _blank(value):
        if required:
            raise FeatureError("is required", code="missing_field", index=index, field=field,
                               file=file)
        return None
    if not isinstance(value, str):
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    value = unicodedata.normalize("NFC", value.strip())
    if _FORBIDDEN.search(value):
        raise FeatureError("contains control or bidirectional-override characters",
                           code="invalid_text", index=index, field=field, file=file)
    if len(value) > max_length:
        raise FeatureError(f"is {len(value)} characters; at most {max_length} allowed",
                           code="text_too_long", index=index, field=field, file=file)
    return value


def code(value, **where):
    """Return a normalised code (NFKC, trimmed, upper case)."""
    raw = text(value, **where)
    return None if raw is None else unicodedata.normalize("NFKC", raw).strip().upper()


def integer(value, *, index=None, field=None, file=None, required=False, minimum=None):
    """Return ``value`` as an int (``"12"``, ``12.0`` accepted), None when optional and blank."""
    if _blank(value):
        if required:
            raise FeatureError("is required", code="missing_field", index=index, field=field,
                               file=file)
        return None
    try:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        number = int(number)
    except (TypeError, ValueError):
        raise FeatureError(f"must be a whole number, got {value!r}", code="invalid_type",
                           index=index, field=field, file=file) from None
    if minimum is not None and number < minimum:
        raise FeatureError(f"must be at least {minimum}, got {number}", code="invalid_value",
                           index=index, field=field, file=file)
    return number


_TRUE = {"1", "true", "yes", "y", "t", "是"}
_FALSE = {"0", "false", "no", "n", "f", "否"}


def boolean(value, *, index=None, field=None, file=None, default=True):
    """Return ``value`` as a bool (true/false, yes/no, 1/0, 是/否); blank gives ``default``."""
    if _blank(value):
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise FeatureError(f"must be true or false, got {value!r}", code="invalid_type",
                       index=index, field=field, file=file)


def day(value, *, index=None, field=None, file=None, required=False):
    """Return ``value`` as a date (ISO ``YYYY-MM-DD``), None when optional and blank."""
    if _blank(value):
        if required:
            raise FeatureError("is required", code="missing_field", index=index, field=field,
                               file=file)
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise FeatureError(f"must be a date YYYY-MM-DD, got {value!r}", code="invalid_type",
                           index=index, field=field, file=file) from None


def choice(value, allowed, *, index=None, field=None, file=None, default=None):
    """Return ``value`` if it is one of ``allowed`` (blank gives ``default``)."""
    if _blank(value):
        if default is None:
            raise FeatureError("is required", code="missing_field", index=index, field=field,
                               file=file)
        return default
    value = str(value).strip()
    if value not in allowed:
        raise FeatureError(f"must be one of {', '.join(allowed)}, got {value!r}",
                           code="invalid_value", index=index, field=field, file=file)
    return value


def records(frame):
    """Yield (index, row dict) for a DataFrame, with NaN turned into None."""
    columns = [c for c in frame.columns if c != "geometry"]
    for i, row in enumerate(frame[columns].itertuples(index=False, name=None)):
        yield i, {c: (None if _blank(v) else v) for c, v in zip(columns, row)}
