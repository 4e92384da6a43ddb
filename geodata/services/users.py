"""Accounts: password hashing (``hashlib.scrypt``), API tokens, roles and grid limits.

Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` and
compared in constant time.  API tokens are ``gm_`` plus 32 random bytes
(URL-safe base64); only their SHA-256 is stored, so a leaked database does
not leak usable tokens.  A token is shown once, when created.
"""

import hashlib
import hmac
import re
import secrets
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from geodata import attributes as attr
from geodata import domains
from geodata.errors import ConflictError, FeatureError, NotFoundError, ValidationError
from geodata.models import ApiToken, Grid, User, UserGrid
from geodata.workflow import ROLES, AuthenticationRequiredError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
# Verified against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = None


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
        ``duplicate_user`` when the name is taken.
    """
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise ValidationError("user names are 2-64 letters, digits, '_', '.' or '-'",
                              code="invalid_username", details={"field": "username"})
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(f"passwords need at least {MIN_PASSWORD} characters",
                              code="weak_password", details={"field": "password"})
    _check_role(role)
    try:
        display_name = attr.text(display_name, field="display_name", required=False,
                                 kind="person") or ""
    except FeatureError as exc:
        raise ValidationError(exc.message, code=exc.code, details=exc.details) from None
    if session.execute(sa.select(User.id).where(User.username == username)).first():
        raise ConflictError(f"user {username!r} already exists", code="duplicate_user")
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
        query = sa.select(Grid).where(Grid.code == attr.code(code, field="grid"))
        if park is not None:
            query = query.where(Grid.park_id == park.id)
        grid = session.execute(query).scalars().first()
        if grid is None:
            raise ValidationError(f"unknown grid {code!r}", code="unknown_grid",
                                  details={"field": "grids"})
        grids.append(grid)
    user.grids = [UserGrid(grid=g) for g in grids]


def set_role(session, username, role):
    """Change a user's role and return the user."""
    user = get_user(session, username)
    user.role = _check_role(role)
    session.flush()
    return user


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
                               maximum=(domains.DATE_MAX - date.today()).days)
    token = "gm_" + secrets.token_urlsafe(32)
    expires = datetime.now(timezone.utc) + timedelta(days=days) if days else None
    row = ApiToken(user=user, name=name, token_hash=token_hash(token), expires_at=expires)
    session.add(row)
    session.flush()
    return token, row


def authenticate(session, username, password):
    """Return the active user with this name and password.

    Raises
    ------
    AuthenticationRequiredError
        401 ``invalid_credentials``; the message does not say which part was wrong.
    """
    global _DUMMY_HASH
    user = None
    if isinstance(username, str) and len(username) <= 64:
        user = session.execute(
            sa.select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password("not a password")
        verify_password(str(password), _DUMMY_HASH)
    elif user.active and verify_password(str(password), user.password_hash):
        return user
    raise AuthenticationRequiredError("wrong user name or password", code="invalid_credentials")


def user_for_token(session, token):
    """Return the active user owning an unrevoked, unexpired API ``token``, or None."""
    row = session.execute(sa.select(ApiToken).where(
        ApiToken.token_hash == token_hash(token))).scalar_one_or_none()
    if row is None or row.revoked or not row.user.active:
        return None
    if row.expires_at is not None:
        expires = row.expires_at
        if expires.tzinfo is None:  # SQLite returns naive UTC
            expires = expires.replace(tzinfo=timezone.utc)
        if expires < datetime.now(timezone.utc):
            return None
    return row.user


def allowed_grid_ids(session, user):
    """Return the grid ids a limited user may act in (their grids and sub-grids), or None.

    None means no limit.
    """
    roots = [g.grid_id for g in user.grids]
    if not roots:
        return None
    park_ids = session.execute(sa.select(Grid.park_id).where(Grid.id.in_(roots))).scalars()
    children = {}
    for gid, parent in session.execute(sa.select(Grid.id, Grid.parent_id).where(
            Grid.park_id.in_(set(park_ids)))):
        children.setdefault(parent, []).append(gid)
    allowed, stack = set(), list(roots)
    while stack:
        gid = stack.pop()
        if gid not in allowed:
            allowed.add(gid)
            stack.extend(children.get(gid, ()))
    return allowed


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
