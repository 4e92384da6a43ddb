"""Settings from ``GRIDMAP_*`` environment variables, validated once at startup.

=========================  ==================================================
``GRIDMAP_DATABASE_URL``   SQLAlchemy URL; default: SpatiaLite file
                           ``instance/gridmap.sqlite`` under the working dir.
``GRIDMAP_SECRET_KEY``     Flask session key (random per process if unset).
``GRIDMAP_MAX_UPLOAD_MB``  Upload cap in MB (default 10).
``GRIDMAP_MAX_FEATURES``   Features per import (default 200 000).
``GRIDMAP_MAX_VERTICES``   Vertices per geometry (default 20 000).
``GRIDMAP_MAX_FILE_MB``    Size of one imported file in MB, a zip's members
                           uncompressed (default 100).
``GRIDMAP_TILES``          XYZ tile URL for the base map, or ``none``.
``GRIDMAP_SESSION_HOURS``  Login session lifetime in hours (default 8).
``GRIDMAP_LOGIN_RATE_LIMIT`` Login attempts per client (default
                           ``10 per minute``; flask-limiter syntax).
``SPATIALITE_LIBRARY_PATH`` Where ``mod_spatialite`` lives (default: search).
=========================  ==================================================
"""

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from geodata.errors import ConfigError

DEFAULT_SQLITE_PATH = Path("instance") / "gridmap.sqlite"


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
    max_file_mb: float = 100.0
    tiles: str = "none"
    sqlite_busy_timeout_s: float = 5.0
    session_hours: float = 8.0
    login_rate_limit: str = "10 per minute"

    def read_limits(self):
        """The caps every file reader takes (:func:`geodata.io_.read_layer`)."""
        return {"max_features": self.max_features, "max_vertices": self.max_vertices,
                "max_file_mb": self.max_file_mb}

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
        for name in ("max_upload_mb", "max_features", "max_vertices", "max_file_mb",
                     "session_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GRIDMAP_{name.upper()} must be positive",
                                  details={"setting": f"GRIDMAP_{name.upper()}"})
