"""Unified social credit codes (统一社会信用代码) per GB 32100-2015.

An 18-character code: registration authority (1), organisation type (1),
administrative division (6), organisation code (9, itself with a check
character per GB 11714) and a final check character over the first 17.
The alphabet is 0-9 and the capital letters without I, O, S, V, Z.
"""

import re

from geodata import domains

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_SCIENTIFIC = re.compile(r"[0-9](\.[0-9]*)?E\+?[0-9]+", re.IGNORECASE)
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def json_schema():
    """JSON Schema of a credit code as sent (any case): alphabet, length, division digits.

    Lookups read a code as imports store it (NFKC, upper case), so each
    character may be sent in any form that turns into one of the alphabet
    (``９``, ``ａ``): :func:`geodata.domains.widen_pattern`.  The check
    character cannot be said in a schema: a wrong one is refused by
    :func:`credit_code_problem` alone.
    """
    char = domains.widen_pattern(f"[0-9{ALPHABET[10:]}]")
    return {"type": "string", "minLength": 18, "maxLength": 18,
            "pattern": f"^{char}{{2}}{domains.widen_pattern('[0-9]')}{{6}}{char}{{10}}$"}


def check_character(first17):
    """Return the GB 32100-2015 check character for the first 17 characters."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


def org_check_character(first8):
    """Return the GB 11714 check character of the 9-character organisation code."""
    total = sum(_VALUE[c] * w for c, w in zip(first8, _ORG_WEIGHTS))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def credit_code_problem(code):
    """Say why ``code`` is not a valid unified social credit code, or return None.

    Parameters
    ----------
    code : str
        The code as given (surrounding whitespace is not tolerated).

    Returns
    -------
    str or None
        A short English reason, e.g. ``"check character is 'X', expected '3'"``.
    """
    if not isinstance(code, str):
        return "must be a string"
    if len(code) != 18 and _SCIENTIFIC.fullmatch(code):
        # Excel shows an all-digit column as 9.14E+17 and saves it so in CSV: the code is lost.
        return ("is a number in scientific notation, as a spreadsheet shows an 18-digit number: "
                "format the column as text and enter the codes again")
    if len(code) != 18:
        return f"must be 18 characters, got {len(code)}"
    bad = sorted({c for c in code if c not in _VALUE})
    if bad:
        return f"contains characters outside GB 32100 alphabet: {''.join(bad)!r}"
    if not code[2:8].isdigit():
        return "characters 3-8 must be a 6-digit administrative division code"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"check character is {code[17]!r}, expected {expected!r}"
    return None


def make_credit_code(division, serial, registration="9", org_type="1"):
    """Build a valid code for a 6-digit division and an integer serial (used by the demo).

    The organisation code is the serial as 8 decimal digits
    followed by its GB 11714 check character; an org check of
    ``X`` is allowed as in real codes.
    """
    body = []
    n = serial
    for _ in range(8):
        n, r = divmod(n, 10)
        body.append(str(r))
    org8 = "".join(reversed(body))
    first17 = registration + org_type + division + org8 + org_check_character(org8)
    return first17 + check_character(first17)
