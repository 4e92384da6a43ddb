"""Attribute cells of imported files, checked against :mod:`geodata.domains`.

File readers hand over pandas values (NaN, NaT, floats for integer columns);
this module turns blanks into None and numbers into the Python types the
domains expect, then applies the same domain checks as the JSON API.  Every
error names the feature index, the file and the field.
"""

import math
import sys
from datetime import date, datetime

from geodata import domains
from geodata.errors import FeatureError


def _pandas():
    """Return pandas if it is loaded, else None: no pandas value exists before that.

    Commands that never read a file (``gridmap check --park``) then do not
    pay for importing pandas.
    """
    return sys.modules.get("pandas")


def is_blank(value):
    """True for None, NaN, NaT and whitespace-only text: an empty cell."""
    pd = _pandas()
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()) or (pd is not None and value is pd.NaT)


def _scalar(value, what, *, index=None, field=None, file=None):
    """Refuse a GeoJSON array or object, or a true/false, where a cell holds ``what``.

    ``str()`` made ``["a"]`` the name ``"['a']"`` and ``true`` the integer 1.
    """
    # numpy's bool_ (a GeoPackage boolean column) is no Python bool
    truth = isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"
    if truth or isinstance(value, (list, tuple, dict)):
        kind = "true/false" if truth else type(value).__name__
        raise FeatureError(f"must be {what}, got {kind} {str(value)[:40]}", code="invalid_type",
                           index=index, field=field, file=file)


def text(value, *, index=None, field=None, file=None, required=True, kind="name"):
    """Return ``value`` as clean NFC text of ``kind`` (:data:`geodata.domains.TEXT_MAX`).

    None when optional and blank; numbers become their text (``12.0`` → ``"12"``);
    an array, object or true/false is refused.
    """
    _scalar(value, "text", index=index, field=field, file=file)
    if is_blank(value):
        value = None
    elif not isinstance(value, str):
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return domains.text(value, field, kind=kind, required=required, index=index, file=file)


def code(value, *, kind="grid", **where):
    """Return a normalised code (NFKC, trimmed, upper case) in the code alphabet."""
    required = where.pop("required", True)
    if is_blank(value):
        value = None
    elif not isinstance(value, str):
        value = text(value, **where)
    return domains.code(value, where.pop("field", None) or "code", kind=kind,
                        required=required, **where)


def integer(value, *, index=None, field=None, file=None, required=False, minimum=None,
            maximum=domains.INT32_MAX):
    """Return ``value`` as an int (``"12"``, ``12.0`` accepted), None when optional and blank.

    The default range is a 32-bit ``INTEGER`` column's; true/false is not a number.
    """
    _scalar(value, "a whole number", index=index, field=field, file=file)
    if is_blank(value):
        if required:
            raise FeatureError("is required", code="missing_field", index=index, field=field,
                               file=file)
        return None
    try:
        number = int(value) if isinstance(value, int) and not isinstance(value, bool) else (
            float(value))
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError
            number = int(number)
    except (TypeError, ValueError, OverflowError):
        raise FeatureError(f"must be a whole number, got {value!r:.40}", code="invalid_type",
                           index=index, field=field, file=file) from None
    return domains.integer(number, field, minimum=-domains.INT32_MAX - 1 if minimum is None
                           else minimum, maximum=maximum, index=index, file=file)


_TRUE = {"1", "true", "yes", "y", "t", "是"}
_FALSE = {"0", "false", "no", "n", "f", "否"}


def boolean(value, *, index=None, field=None, file=None, default=True):
    """Return ``value`` as a bool (true/false, yes/no, 1/0, 是/否); blank gives ``default``."""
    if is_blank(value):
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
    """Return ``value`` as a date (ISO ``YYYY-MM-DD``) in the date domain, None when blank.

    Text may carry a time (``2026-01-05 00:00:00`` from a spreadsheet), but
    only a real one: ``2026-01-05T25:00`` or ``2026-01-05garbage`` is refused,
    not cut to its first ten characters.
    """
    _scalar(value, "a date", index=index, field=field, file=file)
    if is_blank(value):
        value = None
    elif _pandas() is not None and isinstance(value, _pandas().Timestamp):
        value = value.date()
    elif not isinstance(value, date):
        value = str(value).strip()
        if len(value) > 10:
            try:
                value = datetime.fromisoformat(value).date()
            except ValueError:
                pass  # domains.day names it
    return domains.day(value, field, required=required, index=index, file=file)


def choice(value, allowed, *, index=None, field=None, file=None, default=None):
    """Return ``value`` if it is one of ``allowed`` (blank gives ``default``)."""
    if is_blank(value):
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
        yield i, {c: (None if is_blank(v) else v) for c, v in zip(columns, row)}
