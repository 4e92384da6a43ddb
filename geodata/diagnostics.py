"""What ``gridmap info`` reports: where the data is, which libraries, what is stored.

Read-only: it never creates a database file (the engine it is given opens
only an existing SpatiaLite file) and writes nothing.  A missing or
unreachable database is part of the report, not an exception.
"""

from importlib.metadata import PackageNotFoundError, version

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from geodata import schema
from geodata.errors import DatabaseMissingError, SchemaOutdatedError
from geodata.models import Base
from geodata.storage import safe_url, translate_db_error


def library_versions():
    """Versions of gridmap and its stack; GEOS, PROJ and GDAL are the ones bundled in wheels."""
    import geoalchemy2
    import pyogrio
    import pyproj
    import shapely

    try:
        gridmap = version("gridmap")
    except PackageNotFoundError:  # running from a checkout that was never installed
        gridmap = "not installed"
    return {"gridmap": gridmap, "shapely": shapely.__version__,
            "GEOS": shapely.geos_version_string, "pyproj": pyproj.__version__,
            "PROJ": pyproj.proj_version_str, "pyogrio": pyogrio.__version__,
            "GDAL": pyogrio.__gdal_version_string__, "SQLAlchemy": sa.__version__,
            "GeoAlchemy2": geoalchemy2.__version__}


def _spatial_versions(conn):
    if conn.dialect.name == "sqlite":
        # mod_spatialite links Debian's GEOS and PROJ, not the ones bundled with shapely/pyproj.
        row = conn.exec_driver_sql(
            "SELECT spatialite_version(), geos_version(), proj_version(), sqlite_version()").one()
        return {"SpatiaLite": row[0], "SpatiaLite GEOS": row[1], "SpatiaLite PROJ": row[2],
                "SQLite": row[3]}
    server = conn.exec_driver_sql("SHOW server_version").scalar()
    installed = conn.exec_driver_sql(
        "SELECT extversion FROM pg_extension WHERE extname = 'postgis'").scalar()
    return {"PostgreSQL": server, "PostGIS": conn.exec_driver_sql(
        "SELECT postgis_full_version()").scalar() if installed else "not installed"}


def database_info(engine):
    """Describe ``engine``'s database as a dict with a ``status`` key.

    ``status`` is ``ok`` (with the spatial extension's versions, the schema
    revision and the row count of every table), ``no_schema`` (reachable,
    never initialised), ``outdated`` (another schema revision than this
    code's: its tables are not counted, they may lack one the code knows),
    ``missing`` (no SpatiaLite file yet) or
    ``unreachable``; all but ``ok`` carry a ``message`` saying what to do.
    """
    backend = "spatialite" if engine.dialect.name == "sqlite" else "postgis"
    info = {"backend": backend, "schema_head": schema.head_revision()}
    try:
        with engine.connect() as conn:
            info.update(_spatial_versions(conn))
        revision = schema.current_revision(engine)
        if revision is None:
            return {**info, "status": "no_schema", "schema_revision": None,
                    "message": "no gridmap schema yet: run `gridmap demo` or `gridmap init-db`"}
        try:
            schema.require_current(engine)
        except SchemaOutdatedError as exc:
            return {**info, "status": "outdated", "schema_revision": revision,
                    "message": exc.message}
        with engine.connect() as conn:
            tables = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                      for t in Base.metadata.sorted_tables}
    except DatabaseMissingError:
        return {**info, "status": "missing",
                "message": "not created yet: run `gridmap demo` (demo data) or `gridmap init-db`"}
    except SQLAlchemyError as exc:
        error = translate_db_error(exc, engine.url)
        return {**info, "status": "unreachable", "message": error.message if error else
                "database error: " + str(getattr(exc, "orig", exc)).splitlines()[0]}
    return {**info, "status": "ok", "schema_revision": revision, "tables": tables}


def collect(settings, engine):
    """The whole ``gridmap info`` report as a JSON-ready dict (the password is hidden)."""
    return {"database_url": safe_url(settings.database_url), "data_dir": settings.data_dir,
            "photo_dir": str(settings.photo_dir), "versions": library_versions(),
            "database": database_info(engine)}


def to_text(report):
    """The report as aligned ``name  value`` lines."""
    db = report["database"]
    rows = [("database", report["database_url"]), ("data folder", report["data_dir"]),
            ("photos", report["photo_dir"]), *report["versions"].items()]
    rows += [(k, v) for k, v in db.items()
             if k not in ("backend", "status", "message", "tables", "schema_head",
                          "schema_revision")]
    if db["status"] == "ok":
        rows.append(("schema", f"{db['schema_revision']} (newest {db['schema_head']})"))
        rows += [(f"rows {name}", count) for name, count in db["tables"].items()]
    else:
        rows.append(("database status", db["message"]))
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in rows)
