"""Accounts: password hashing (``hashlib.scrypt``), password policy, API tokens, sessions.

Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` and
compared in constant time.  API tokens are ``gm_`` plus 32 random bytes
(URL-safe base64); only their SHA-256 is stored, so a leaked database does
not leak usable tokens.  A token is shown once, when created.

Login cookies carry the user's ``session_version``
(:func:`user_for_session`); :func:`end_sessions` bumps it, which is how
logout, :func:`set_password`, :func:`set_role`, :func:`set_active` (disable)
and :func:`revoke_tokens` end every session of the account on the server.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from geodata import attributes as attr
from geodata import domains
from geodata.errors import ConflictError, FeatureError, NotFoundError, ValidationError
from geodata.models import ApiToken, Grid, User, UserGrid
from geodata.periods import local_today
from geodata.workflow import ROLES, AuthenticationRequiredError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: Password policy: length in characters (code points).
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
#: Refused whatever their length (compared lower-cased); the user's own name is refused too.
COMMON_PASSWORDS = frozenset({
    "password", "password1", "password12", "password123", "password1234", "passw0rd",
    "p@ssw0rd", "p@ssw0rd123", "1234567890", "0123456789", "12345678910", "123456789a",
    "a123456789", "a1234567890", "qq123456789", "1q2w3e4r5t", "1qaz2wsx3edc", "qwertyuiop",
    "qwerty1234", "qwerty123456", "asdfghjkl1", "zxcvbnm123", "abc1234567", "abcd123456",
    "iloveyou123", "woaini1314", "woaini1314520", "admin12345", "admin123456",
    "administrator", "welcome123", "changeme123", "letmein123", "gridmap123", "gridmap2025",
    "gridmap2026"})
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")


def hash_password(password):
    """Return the scrypt hash string of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password, stored):
    """True when ``password`` matches the ``stored`` hash string (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(digest) // 2)
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token):
    """Return the stored form (SHA-256 hex) of an API token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_role(role):
    if role not in ROLES:
        raise ValidationError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}",
                              code="unknown_role", details={"field": "role", "allowed": ROLES})
    return role


def check_password(password, username=""):
    """Apply the password policy; return ``password`` unchanged.

    At least :data:`MIN_PASSWORD` and at most :data:`MAX_PASSWORD`
    characters, not only whitespace, not one character repeated, not in
    :data:`COMMON_PASSWORDS` and not the user name (case-insensitive).

    Raises
    ------
    ValidationError
        422 ``weak_password``; ``details["rule"]`` names the rule broken.
    """
    def refuse(rule, message):
        raise ValidationError(message, code="weak_password",
                              details={"field": "password", "rule": rule})

    if not isinstance(password, str):
        refuse("type", "the password must be text")
    if len(password) < MIN_PASSWORD:
        refuse("min_length", f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        refuse("max_length", f"passwords have at most {MAX_PASSWORD} characters")
    if not password.strip():
        refuse("whitespace", "the password is only whitespace")
    if len(set(password)) == 1:
        refuse("repeated", "the password is one character repeated")
    folded = password.strip().lower()
    if folded in COMMON_PASSWORDS:
        refuse("common", "the password is on the list of common passwords; choose another")
    if isinstance(username, str) and username and folded == username.lower():
        refuse("username", "the password must not be the user name")
    return password


def get_user(session, username):
    """Return the user called ``username``.

    Raises
    ------
    NotFoundError
        When there is none.
    """
    user = session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFoundError(f"no user {username!r}", code="unknown_user")
    return user


def add_user(session, username, password, role, *, display_name="", grid_codes=(), park=None):
    """Create an account; ``grid_codes`` (with ``park``) limit a grid member to those grids.

    Raises
    ------
    ValidationError
        Bad name, short password, unknown role or grid.
    ConflictError
        ``duplicate_user`` when the name is taken, in any case (``Viewer`` and ``viewer``).
    """
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise ValidationError("user names are 2-64 letters, digits, '_', '.' or '-'",
                              code="invalid_username", details={"field": "username"})
    check_password(password, username)
    _check_role(role)
    try:
        display_name = attr.text(display_name, field="display_name", required=False,
                                 kind="person") or ""
    except FeatureError as exc:
        raise ValidationError(exc.message, code=exc.code, details=exc.details) from None
    # Names differing only in case would be two accounts that people read as one.
    taken = session.execute(sa.select(User.username).where(
        sa.func.lower(User.username) == username.lower())).scalar()
    if taken is not None:
        raise ConflictError(f"user {taken!r} already exists", code="duplicate_user",
                            details={"field": "username"})
    user = User(username=username, display_name=display_name or username, role=role,
                password_hash=hash_password(password))
    session.add(user)
    set_grids(session, user, grid_codes, park)
    session.flush()
    return user


def set_grids(session, user, grid_codes, park=None):
    """Replace the grids ``user`` is limited to (empty: no limit)."""
    grids = []
    for code in grid_codes or ():
        # Only grids in force: a limit to a retired grid would let the member act nowhere.
        query = sa.select(Grid).where(Grid.code == attr.code(code, field="grid"),
                                      Grid.active_to.is_(None))
        if park is not None:
            query = query.where(Grid.park_id == park.id)
        found = session.execute(query.limit(2)).scalars().all()
        if not found:
            raise ValidationError(f"no grid in force with code {code!r}", code="unknown_grid",
                                  details={"field": "grids"})
        if len(found) > 1:
            raise ValidationError(f"grid {code!r} is in several parks; name the park",
                                  code="park_required", details={"field": "park"})
        grids.append(found[0])
    user.grids = [UserGrid(grid=g) for g in grids]


def set_role(session, username, role):
    """Change a user's role and return the user."""
    user = get_user(session, username)
    user.role = _check_role(role)
    end_sessions(user)
    session.flush()
    return user


def end_sessions(user):
    """End every login session of ``user``: cookies issued before are refused from now on."""
    user.session_version = (user.session_version or 1) + 1


def set_password(session, username, password):
    """Give ``username`` a new password (policy-checked) and end their sessions.

    API tokens are kept: revoke them with :func:`revoke_tokens`.

    Raises
    ------
    NotFoundError
        ``unknown_user``.
    ValidationError
        ``weak_password``.
    """
    user = get_user(session, username)
    user.password_hash = hash_password(check_password(password, user.username))
    end_sessions(user)
    session.flush()
    return user


def set_active(session, username, active):
    """Enable or disable ``username``; disabling ends their sessions.

    A disabled user cannot log in, and their sessions and API tokens are
    refused (:func:`authenticate`, :func:`user_for_session`,
    :func:`user_for_token`).  Enabling does not revive old sessions.
    """
    user = get_user(session, username)
    user.active = bool(active)
    if not active:
        end_sessions(user)
    session.flush()
    return user


def revoke_tokens(session, username, name=None):
    """Revoke ``username``'s API tokens (only those called ``name`` if given) and end sessions.

    Returns the number of tokens revoked.

    Raises
    ------
    NotFoundError
        ``unknown_user``, or ``unknown_token`` when ``name`` matches no live token.
    """
    user = get_user(session, username)
    rows = [t for t in user.tokens if not t.revoked and (name is None or t.name == name)]
    if name is not None and not rows:
        raise NotFoundError(f"{username} has no unrevoked token called {name!r}",
                            code="unknown_token")
    for row in rows:
        row.revoked = True
    end_sessions(user)
    session.flush()
    return len(rows)


def list_users(session):
    """Return every user, by name."""
    return session.execute(sa.select(User).order_by(User.username)).scalars().all()


def create_token(session, username, name="", *, days=None):
    """Create an API token for ``username``; return ``(token, ApiToken)``.

    The token text is returned only here; the database keeps its SHA-256.
    """
    user = get_user(session, username)
    name = domains.text(name, "name", kind="category") or ""
    if days is not None:
        # The expiry must be a storable date-time (geodata.domains).
        days = domains.integer(days, "days", minimum=1,
                               maximum=(domains.DATE_MAX - local_today()).days)
    token = "gm_" + secrets.token_urlsafe(32)
    expires = datetime.now(timezone.utc) + timedelta(days=days) if days else None
    row = ApiToken(user=user, name=name, token_hash=token_hash(token), expires_at=expires)
    session.add(row)
    session.flush()
    return token, row


def authenticate(session, username, password):
    """Return the active user with this name and password.

    An unknown name, a disabled account and a wrong password all run one
    scrypt verification with the configured cost and give the same error,
    so neither the answer nor its timing tells which it was.

    Raises
    ------
    AuthenticationRequiredError
        401 ``invalid_credentials``; the message does not say which part was wrong.
    """
    user = None
    if isinstance(username, str) and len(username) <= 64:
        user = session.execute(
            sa.select(User).where(User.username == username)).scalar_one_or_none()
    # No user: verify against a digest of zeros, which no password yields.
    stored = user.password_hash if user is not None else (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}")
    matches = verify_password(password if isinstance(password, str) else "", stored)
    if matches and user is not None and user.active:
        return user
    raise AuthenticationRequiredError("wrong user name or password", code="invalid_credentials")


@dataclass(frozen=True)
class Account:
    """Who a request comes from: the user's name, role and grids, not the ORM row.

    Read with the credentials on every request (:func:`user_for_token`,
    :func:`user_for_session`), as plain rows: loading the ``User`` entity with
    its token and grids through the ORM cost more CPU than the query itself
    (see docs/scaling.md, "API throughput").  A request that changes the account
    loads its :class:`~geodata.models.User` (:func:`get_user`).
    """

    id: int
    username: str
    display_name: str
    role: str
    #: The ids of the grids the user is limited to (see :func:`allowed_grid_ids`); () for none.
    grid_roots: tuple


_USERS, _LINKS, _TOKENS = User.__table__, UserGrid.__table__, ApiToken.__table__
#: An account's columns and grids: one row per grid (a user without grids gives one row).
#: Statements of the tables, built once: no ORM entity, so no ORM loading steps.
_ACCOUNT = (_USERS.c.id, _USERS.c.username, _USERS.c.display_name, _USERS.c.role,
            _USERS.c.active, _USERS.c.session_version, _LINKS.c.grid_id)
_TOKEN_LOOKUP = sa.select(_TOKENS.c.revoked, _TOKENS.c.expires_at, *_ACCOUNT).select_from(
    _TOKENS.join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .outerjoin(_LINKS, _LINKS.c.user_id == _USERS.c.id)).where(
        _TOKENS.c.token_hash == sa.bindparam("token_hash", type_=sa.String))
_SESSION_LOOKUP = sa.select(*_ACCOUNT).select_from(
    _USERS.outerjoin(_LINKS, _LINKS.c.user_id == _USERS.c.id)).where(
        _USERS.c.id == sa.bindparam("user_id", type_=sa.Integer))


def _account(rows):
    """The :class:`Account` of an account lookup's rows (the first holds the user)."""
    first = rows[0]
    return Account(first.id, first.username, first.display_name, first.role,
                   tuple(r.grid_id for r in rows if r.grid_id is not None))


def user_for_session(session, user_id, session_version):
    """Return the :class:`Account` of the active user ``user_id`` if ``session_version``
    is still theirs, or None.

    ``session_version`` comes from the login cookie; :func:`end_sessions`
    makes older ones stale.
    """
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not isinstance(
            session_version, int):
        return None
    rows = session.execute(_SESSION_LOOKUP, {"user_id": user_id}).all()
    if not rows or not rows[0].active or rows[0].session_version != session_version:
        return None
    return _account(rows)


def user_for_token(session, token):
    """Return the :class:`Account` of the active user owning an unrevoked, unexpired API
    ``token``, or None.
    """
    rows = session.execute(_TOKEN_LOOKUP, {"token_hash": token_hash(token)}).all()
    if not rows or rows[0].revoked or not rows[0].active:
        return None
    expires = rows[0].expires_at  # aware UTC on both backends (UTCDateTime)
    if expires is not None and expires < datetime.now(timezone.utc):
        return None
    return _account(rows)


def allowed_grid_ids(session, user):
    """Return the grid ids a limited user may act in (their grids and sub-grids), or None.

    ``user``: an :class:`Account` or a :class:`~geodata.models.User` (both
    have ``grid_roots``).  None means no limit.  The sub-grids come from one
    recursive query down ``grids.parent_id`` (indexed), so a grid member's
    request reads their own grids' tree, not every grid of the park: it runs
    on each of their API requests, and a city's park holds 10^5 grids.
    """
    roots = list(user.grid_roots)
    if not roots:
        return None
    return grid_tree_ids(session, roots)


def grid_tree_ids(session, roots):
    """The ids of the grids ``roots`` (ids) and of every grid below them, as a set."""
    return set(session.execute(_GRID_TREE, {"roots": list(roots)}).scalars())


def grid_park_ids(session, user):
    """Return the ids of the parks of the grids ``user`` is limited to (empty for none)."""
    if not user.grid_roots:
        return set()
    return set(session.execute(sa.select(Grid.park_id).where(
        Grid.id.in_(user.grid_roots))).scalars())


def _grid_tree():
    # Built once.  UNION (not UNION ALL) drops repeats, so the walk ends on any shape.
    grids = Grid.__table__
    tree = sa.select(grids.c.id).where(
        grids.c.id.in_(sa.bindparam("roots", expanding=True))).cte("tree", recursive=True)
    tree = tree.union(sa.select(grids.c.id).join(tree, grids.c.parent_id == tree.c.id))
    return sa.select(tree.c.id)


_GRID_TREE = _grid_tree()


DEMO_ACCOUNTS = {
    # username: (role, password) -- documented in docs/ledger.md; demo only.
    "viewer": ("viewer", "viewer-demo-2025"),
    "inspector": ("inspector", "inspector-demo-2025"),
    "supervisor": ("supervisor", "supervisor-demo-2025"),
    "planner": ("planner", "planner-demo-2025"),
    "admin": ("admin", "admin-demo-2025"),
}


def create_demo_accounts(session):
    """Create one account per role with the documented demo passwords (skip existing ones).

    Returns the names created.
    """
    made = []
    for username, (role, password) in DEMO_ACCOUNTS.items():
        if not session.execute(sa.select(User.id).where(User.username == username)).first():
            add_user(session, username, password, role, display_name=f"演示{username}")
            made.append(username)
    return made
