"""Settings from ``GRIDMAP_*`` environment variables, validated once at startup.

=========================  ==================================================
``GRIDMAP_DATABASE_URL``   SQLAlchemy URL; default: SpatiaLite file
                           ``instance/gridmap.sqlite`` under the working dir.
``GRIDMAP_SECRET_KEY``     Flask session key (random per process if unset).
``GRIDMAP_MAX_UPLOAD_MB``  Upload cap in MB (default 10).
``GRIDMAP_MAX_FEATURES``   Features per import (default 200 000).
``GRIDMAP_MAX_VERTICES``   Vertices per geometry (default 20 000).
``GRIDMAP_TILES``          XYZ tile URL for the base map, or ``none``.
``GRIDMAP_SESSION_HOURS``  Login session lifetime in hours (default 8).
``GRIDMAP_LOGIN_RATE_LIMIT`` Login attempts per client (default
                           ``10 per minute``; flask-limiter syntax).
``GRIDMAP_RATELIMIT_STORAGE_URI`` Where rate-limit counters live (default
                           ``memory://``, per process; ``redis://host:6379/0``
                           shares them between worker processes).
``SPATIALITE_LIBRARY_PATH`` Where ``mod_spatialite`` lives (default: search).
=========================  ==================================================
"""

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from geodata.errors import ConfigError

DEFAULT_SQLITE_PATH = Path("instance") / "gridmap.sqlite"

#: Rate-limit storages whose driver gridmap installs (``limits`` knows more, e.g.
#: memcached or MongoDB, but their client libraries are not dependencies).
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix")


def default_database_url():
    """Return ``$GRIDMAP_DATABASE_URL`` or the embedded SpatiaLite file URL."""
    return os.environ.get("GRIDMAP_DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"


@dataclass
class Settings:
    """Validated settings; build with :meth:`from_env`."""

    database_url: str = field(default_factory=default_database_url)
    secret_key: str = field(default_factory=lambda: os.urandom(24).hex())
    max_upload_mb: float = 10.0
    max_features: int = 200_000
    max_vertices: int = 20_000
    tiles: str = "none"
    sqlite_busy_timeout_s: float = 5.0
    session_hours: float = 8.0
    login_rate_limit: str = "10 per minute"
    ratelimit_storage_uri: str = "memory://"

    @classmethod
    def from_env(cls, environ=None, **overrides):
        """Read ``GRIDMAP_<FIELD>`` variables, apply ``overrides`` and validate."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"GRIDMAP_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = f.type
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ConfigError(
                    f"GRIDMAP_{f.name.upper()}={raw!r} is not a valid {kind.__name__}",
                    details={"setting": f"GRIDMAP_{f.name.upper()}"}) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self):
        """Raise :class:`ConfigError` naming the setting when a value cannot work."""
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ConfigError(
                "GRIDMAP_DATABASE_URL must be a sqlite:/// (SpatiaLite) or "
                "postgresql+psycopg:// (PostGIS) URL", details={"setting": "GRIDMAP_DATABASE_URL"})
        for name in ("max_upload_mb", "max_features", "max_vertices", "session_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GRIDMAP_{name.upper()} must be positive",
                                  details={"setting": f"GRIDMAP_{name.upper()}"})
        # The URI may hold a password: the message names only its scheme.
        scheme, sep, rest = self.ratelimit_storage_uri.partition("://")
        if not sep or scheme not in RATELIMIT_SCHEMES or (scheme != "memory" and not rest):
            got = f"scheme {scheme!r}" if sep else "no scheme"
            raise ConfigError(
                "GRIDMAP_RATELIMIT_STORAGE_URI must be memory:// or name a server with "
                f"{', '.join(s + '://' for s in RATELIMIT_SCHEMES[1:])} "
                f"(e.g. redis://127.0.0.1:6379/0); got {got}",
                details={"setting": "GRIDMAP_RATELIMIT_STORAGE_URI"})
