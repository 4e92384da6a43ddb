"""Settings from ``GRIDMAP_*`` environment variables, validated once at startup.

=========================  ==================================================
``GRIDMAP_DATA_DIR``       Folder for the embedded database and hazard photos
                           (default: the per-user data folder from
                           platformdirs, ``~/.local/share/gridmap`` on Linux).
``GRIDMAP_DATABASE_URL``   SQLAlchemy URL; default: SpatiaLite file
                           ``gridmap.sqlite`` in the data folder.
``GRIDMAP_SECRET_KEY``     Flask session key (random per process if unset).
``GRIDMAP_MAX_UPLOAD_MB``  Upload cap in MB (default 10).
``GRIDMAP_MAX_FEATURES``   Features per import (default 200 000).
``GRIDMAP_MAX_VERTICES``   Vertices per geometry (default 20 000).
``GRIDMAP_MAX_FILE_MB``    Size of one imported file in MB, a zip's members
                           uncompressed (default 100).
``GRIDMAP_TILES``          XYZ tile URL for the base map, or ``none``.
``GRIDMAP_MAP_TILE_THRESHOLD`` Parks with more active grids (all levels) than
                           this draw their grids from vector tiles on the
                           map page (default 2 000; see docs/map.md).
``GRIDMAP_API_PAGE_MAX``   Most rows or features one answer of a park's
                           map lists (``/api/parks/<code>/grids`` ...) may
                           carry: their default and largest ``limit``
                           (default 5 000; see docs/scaling.md, "Every list
                           is bounded").  The ledger lists (``/api/hazards``,
                           ``/api/requests``, ``/api/visits``) page by 100, at
                           most 1 000, whatever this is.
``GRIDMAP_SESSION_HOURS``  Login session lifetime in hours (default 8).
``GRIDMAP_SQLITE_BUSY_TIMEOUT_S`` Seconds a SpatiaLite connection waits for
                           the write lock (default 5).
``GRIDMAP_LOGIN_RATE_LIMIT`` Login attempts per client (default
                           ``10 per minute``; flask-limiter syntax).
``GRIDMAP_SECURE_COOKIES`` ``true`` behind TLS (HTTPS): the session
                           cookie gets ``Secure`` and every response sends
                           ``Strict-Transport-Security`` (default ``false``;
                           accepts true/false, 1/0, yes/no, on/off).
``GRIDMAP_RATELIMIT_STORAGE_URI`` Where rate-limit counters live (default
                           ``memory://``, per process; ``redis://host:6379/0``
                           shares them between worker processes).
``GRIDMAP_PUBLIC_URL``     The service's public address as phones reach it
                           (e.g. ``https://gridmap.example.cn``): the QR codes
                           of grid boards point below it (``gridmap boards
                           --base-url`` overrides it), as do the absolute links
                           the web service answers, whatever ``Host`` a request
                           names (:class:`webmap.security.PublicAddress`).
``GRIDMAP_FAULTS_ENABLED`` ``true`` arms the test-only fault switch below
                           outside tests (default ``false``).
``GRIDMAP_FAULT_DROP_RESPONSE_RATE`` Share (0..1) of ``POST /api/...``
                           answers dropped after commit (502, no body);
                           test-only, see :mod:`webmap.faults` (default 0).
``GRIDMAP_FAULT_SEED``     Seed of the fault switch's draws (default 0).
``SPATIALITE_LIBRARY_PATH`` Where ``mod_spatialite`` lives (default: search).
=========================  ==================================================

Data never goes to the current folder or into the installed package: a
command run from any folder finds the same database and photos.
"""

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import platformdirs

from geodata.domains import path_problem, plain_number
from geodata.errors import ConfigError

DATABASE_FILE = "gridmap.sqlite"
PHOTO_FOLDER = "photos"

#: Rate-limit storages whose driver gridmap installs (``limits`` knows more, e.g.
#: memcached or MongoDB, but their client libraries are not dependencies).
RATELIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+unix")


def default_data_dir():
    """Return the per-user data folder (``~/.local/share/gridmap`` on Linux)."""
    return platformdirs.user_data_dir("gridmap", appauthor=False)


def _setting_value(raw, kind):
    """``raw`` (an environment variable's text) as ``kind``, or ValueError.

    Numbers are read as the API and the shell read them
    (:func:`geodata.domains.plain_number`): a ``nan`` or ``inf`` limit passed
    the range checks of :meth:`Settings.validate` and failed later with a
    traceback.
    """
    if kind is bool:
        return _boolean(raw)
    if kind in (int, float):
        number = plain_number(raw, kind)
        if number is None or not math.isfinite(number):
            raise ValueError(raw)
        return number
    return kind(raw)


def _boolean(raw):
    """Parse an environment flag; ``ValueError`` for anything but the usual spellings."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass
class Settings:
    """Validated settings; build with :meth:`from_env`."""

    data_dir: str = field(default_factory=default_data_dir)
    database_url: str = ""  # empty: the SpatiaLite file in data_dir
    secret_key: str = field(default_factory=lambda: os.urandom(24).hex())
    max_upload_mb: float = 10.0
    max_features: int = 200_000
    max_vertices: int = 20_000
    max_file_mb: float = 100.0
    tiles: str = "none"
    map_tile_threshold: int = 2_000
    api_page_max: int = 5_000
    sqlite_busy_timeout_s: float = 5.0
    session_hours: float = 8.0
    login_rate_limit: str = "10 per minute"
    secure_cookies: bool = False
    ratelimit_storage_uri: str = "memory://"
    public_url: str = ""
    faults_enabled: bool = False
    fault_drop_response_rate: float = 0.0
    fault_seed: int = 0

    def __post_init__(self):
        # A relative GRIDMAP_DATA_DIR is taken once, against the folder it was given in.
        self.data_dir = str(Path(self.data_dir).expanduser().absolute())
        if not self.database_url:
            self.database_url = f"sqlite:///{Path(self.data_dir) / DATABASE_FILE}"

    @property
    def photo_dir(self):
        """Where hazard photos are stored: ``<data_dir>/photos``."""
        return Path(self.data_dir) / PHOTO_FOLDER

    def read_limits(self):
        """The caps every file reader takes (:func:`geodata.formats.read_layer`)."""
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
                values[f.name] = _setting_value(raw, kind)
            except ValueError:
                plain = " (a plain finite number)" if kind in (int, float) else ""
                raise ConfigError(
                    f"GRIDMAP_{f.name.upper()}={raw[:40]!r} is not a valid {kind.__name__}{plain}",
                    details={"setting": f"GRIDMAP_{f.name.upper()}"}) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self):
        """Raise :class:`ConfigError` naming the setting when a value cannot work."""
        # The folder first: the default URL is made from it.
        for setting, value, length in (("DATA_DIR", self.data_dir, True),
                                       ("DATABASE_URL", self.database_url, False)):
            # A NUL or an undecodable byte was a ValueError or UnicodeEncodeError traceback.
            problem = path_problem(value, length=length)
            if problem:
                raise ConfigError(f"GRIDMAP_{setting}: {problem}",
                                  details={"setting": f"GRIDMAP_{setting}"})
        if not self.database_url.startswith(("sqlite", "postgresql")):
            raise ConfigError(
                "GRIDMAP_DATABASE_URL must be a sqlite:/// (SpatiaLite) or "
                "postgresql+psycopg:// (PostGIS) URL", details={"setting": "GRIDMAP_DATABASE_URL"})
        for name in ("max_upload_mb", "max_features", "max_vertices", "max_file_mb",
                     "session_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"GRIDMAP_{name.upper()} must be positive",
                                  details={"setting": f"GRIDMAP_{name.upper()}"})
        if self.api_page_max < 1:
            raise ConfigError("GRIDMAP_API_PAGE_MAX must be 1 or more (rows per answer)",
                              details={"setting": "GRIDMAP_API_PAGE_MAX"})
        if self.map_tile_threshold < 0:
            raise ConfigError("GRIDMAP_MAP_TILE_THRESHOLD must be 0 or more (grids; 0 draws "
                              "every park from vector tiles)",
                              details={"setting": "GRIDMAP_MAP_TILE_THRESHOLD"})
        if not 0 <= self.fault_drop_response_rate <= 1:
            raise ConfigError("GRIDMAP_FAULT_DROP_RESPONSE_RATE must be between 0 and 1",
                              details={"setting": "GRIDMAP_FAULT_DROP_RESPONSE_RATE"})
        # The URI may hold a password: the message names only its scheme.
        scheme, sep, rest = self.ratelimit_storage_uri.partition("://")
        if not sep or scheme not in RATELIMIT_SCHEMES or (scheme != "memory" and not rest):
            got = f"scheme {scheme!r}" if sep else "no scheme"
            raise ConfigError(
                "GRIDMAP_RATELIMIT_STORAGE_URI must be memory:// or name a server with "
                f"{', '.join(s + '://' for s in RATELIMIT_SCHEMES[1:])} "
                f"(e.g. redis://127.0.0.1:6379/0); got {got}",
                details={"setting": "GRIDMAP_RATELIMIT_STORAGE_URI"})
        self._check_data_dir()

    def _check_data_dir(self):
        """The data folder must be (or be creatable as) a writable folder; nothing is created."""
        path = Path(self.data_dir)
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            where = "" if existing == path else f" ({existing} is not a writable folder)"
            raise ConfigError(
                f"the data folder {path} cannot be written{where}: set GRIDMAP_DATA_DIR to a "
                "writable folder", details={"setting": "GRIDMAP_DATA_DIR"})
