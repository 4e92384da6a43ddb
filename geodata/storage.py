"""Engines, sessions and the SpatiaLite loader for both backends.

SpatiaLite (``sqlite:///file``) is the embedded default; PostGIS
(``postgresql+psycopg://...``) is for production.  The pyenv CPython's
``sqlite3`` cannot load extensions, so SQLite URLs are served by
``pysqlite3`` (a SQLite build that can) and ``mod_spatialite`` is loaded
on every new connection, in WAL mode with a busy timeout so that readers
never block the writer and a locked database turns into a clean 503.
"""

import ctypes
import functools
import importlib.util
import math
import os
import sys
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

# shapely, pyproj and pyogrio bundle their own GEOS, PROJ and GDAL.  They must
# be loaded before mod_spatialite, which SQLite opens with RTLD_GLOBAL: loaded
# later, their symbols would bind to Debian's older GEOS/PROJ and corrupt memory.
import pyproj  # noqa: F401
import shapely  # noqa: F401
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from geodata.crs import STORAGE_SRID
from geodata.errors import (ConfigError, ConflictError, DatabaseMissingError,
                            DatabaseUnavailableError, SchemaMissingError)


def _preload_bundled_gdal():
    """Load pyogrio's bundled GDAL (and its GEOS and PROJ) before any mod_spatialite.

    Importing pyogrio would do it too, but pyogrio imports pandas and
    geopandas on the way (a quarter of a second), which commands such as
    ``gridmap check --park`` never need.  ctypes opens the library with
    RTLD_NOW, as Python opens extension modules, so every symbol of it binds
    to its own bundled copies here, before Debian's are loaded; a later
    ``import pyogrio`` reuses the loaded library.  A pyogrio built against the
    system's GDAL has no bundled copy and is imported instead.
    """
    if "pyogrio" in sys.modules:
        return
    spec = importlib.util.find_spec("pyogrio")
    libs = Path(spec.origin).parent.parent / "pyogrio.libs" if spec and spec.origin else None
    bundled = sorted(libs.glob("libgdal-*.so*")) if libs and libs.is_dir() else []
    if bundled:
        ctypes.CDLL(str(bundled[0]))
    else:
        import pyogrio  # noqa: F401


_preload_bundled_gdal()

WRITE_OPTION = "gridmap_write"
_CHANGES = "gridmap_changes_at_begin"
SPATIALITE_CANDIDATES = ("mod_spatialite", "/usr/lib/x86_64-linux-gnu/mod_spatialite.so",
                         "/usr/lib/aarch64-linux-gnu/mod_spatialite.so")


def _sqlite_dbapi():
    try:
        from pysqlite3 import dbapi2
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigError("SQLite URLs need the 'pysqlite3-binary' package "
                          "(pip install pysqlite3-binary)") from None
    return dbapi2


def _load_spatialite(dbapi_conn, busy_timeout_s, read_only=False):
    dbapi_conn.enable_load_extension(True)
    paths = [os.environ["SPATIALITE_LIBRARY_PATH"]] if os.environ.get(
        "SPATIALITE_LIBRARY_PATH") else SPATIALITE_CANDIDATES
    last = None
    for path in paths:
        try:
            dbapi_conn.load_extension(path)
            break
        except Exception as exc:  # the DBAPI raises its own OperationalError type
            last = exc
    else:
        raise ConfigError(
            f"cannot load SpatiaLite ({last}); install Debian 'libsqlite3-mod-spatialite' "
            "or set SPATIALITE_LIBRARY_PATH to mod_spatialite.so",
            details={"setting": "SPATIALITE_LIBRARY_PATH"})
    dbapi_conn.enable_load_extension(False)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    cur.execute("PRAGMA foreign_keys = ON")
    if read_only:
        # A reader neither switches the journal mode nor creates metadata:
        # both would write, and the file is opened read-only.
        cur.close()
        return
    cur.execute("PRAGMA journal_mode = WAL")
    if cur.execute("SELECT CheckSpatialMetaData()").fetchone()[0] < 1:
        # Only EPSG:4326 is stored; loading all 5000+ EPSG rows would cost seconds.
        cur.execute("SELECT InitSpatialMetaData(1, 'WGS84')")
    cur.close()


def sqlite_file(url):
    """Return the file of a SpatiaLite URL, or None for PostGIS and in-memory SQLite."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") or (
            parsed.database.startswith("file:")):
        return None
    return Path(parsed.database)


def require_database(url):
    """Raise :class:`DatabaseMissingError` when ``url`` names a SpatiaLite file that is missing.

    Only ``gridmap init-db`` and ``gridmap demo`` create the file; everything
    else stops here with that advice instead of creating an empty database.
    """
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise DatabaseMissingError(
            f"no database at {path}: run `gridmap demo` (demo data) or `gridmap init-db`",
            details={"path": str(path)})


def make_engine(url, busy_timeout_s=5.0, *, create=False, read_only=False, **kwargs):
    """Create an engine for a SpatiaLite or PostGIS URL.

    Parameters
    ----------
    create : bool
        SpatiaLite only: create a missing database file (and its folder).
        Without it a missing file raises :class:`DatabaseMissingError` on
        connect and is never created, so commands that only read leave no
        empty database behind.
    read_only : bool
        An engine that cannot write, for tasks that only read (Dask
        workers): a SpatiaLite file is opened ``mode=ro``; PostgreSQL
        sessions are ``default_transaction_read_only`` and ``REPEATABLE
        READ``, so the statements of one transaction read one snapshot, as
        they do on SQLite.

    Raises
    ------
    ConfigError
        For an unsupported URL or when SpatiaLite cannot be loaded.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, module=_sqlite_dbapi(), **kwargs)

        if path is not None and not create:
            @event.listens_for(engine, "do_connect")
            def _existing_file_only(_dialect, _record, cargs, cparams):
                # sqlite3 creates a missing file on connect; mode=rw opens only an existing one.
                require_database(parsed)
                mode = "ro" if read_only else "rw"
                cargs[0] = f"file:{quote(str(path.absolute()))}?mode={mode}"
                cparams["uri"] = True

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            _load_spatialite(dbapi_conn, busy_timeout_s, read_only)
            dbapi_conn.create_function("gridmap_fold", 1, fold_text, deterministic=True)
            # pysqlite's implicit BEGIN breaks SAVEPOINT and BEGIN IMMEDIATE;
            # SQLAlchemy emits BEGIN itself below.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # Writers take SQLite's write lock up front, so two writers queue on
            # busy_timeout instead of failing later with a stale snapshot.
            write = conn.get_execution_options().get(WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            # What start_write() compares with to tell a transaction that only read.
            conn.info[_CHANGES] = conn.connection.dbapi_connection.total_changes

        return engine
    if parsed.get_backend_name() == "postgresql":
        if read_only:
            kwargs = {"isolation_level": "REPEATABLE READ", **kwargs, "connect_args": {
                "options": "-c default_transaction_read_only=on",
                **kwargs.get("connect_args", {})}}
        return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
    raise ConfigError(f"unsupported database URL scheme {parsed.drivername!r}",
                      details={"setting": "GRIDMAP_DATABASE_URL"})


def fold_text(text):
    """``text`` as searches compare it: NFKC, full Unicode case folding, NFKC (None stays None).

    ``Ａ`` and ``A``, ``É`` and ``é``, ``ß`` and ``SS``, final ``ς`` and
    ``Σ`` fold alike (``str.casefold``, not ``lower``: ``"ß".lower()`` stays
    ``ß`` and ``"ς".lower()`` stays ``ς``).  The last NFKC composes what
    case folding decomposed.  It is :func:`folded` in SQL, so a search can
    filter and order in the database.
    """
    if text is None:
        return None
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


# Full case folding is lower case except for these characters of lower-cased, NFKC then NFD
# text (tests/test_api.py derives the table from every code point and compares):
# PostgreSQL 15 has lower() but no casefold(), so folded() maps them after lower().
_AFTER_LOWER = str.maketrans({
    "\u0345": "\u03b9",  # combining ypogegrammeni (ᾳ decomposed): iota
    "\u03c2": "\u03c3",  # final sigma: sigma
    **dict(zip("\u1c80\u1c81\u1c82\u1c83\u1c84\u1c85\u1c86\u1c87\u1c88",
               "\u0432\u0434\u043e\u0441\u0442\u0442\u044a\u0463\ua64b")),
    # Cherokee folds to its capitals, the lower-case letters of Unicode 8 to the older ones.
    **{chr(c): chr(c - 0xAB70 + 0x13A0) for c in range(0xAB70, 0xABC0)},
    **{chr(c): chr(c - 8) for c in range(0x13F8, 0x13FE)},
    "\u00df": "ss"})


def folded(bind, column):
    """SQL for :func:`fold_text` of ``column``, the same on both backends.

    SQLite's ``lower()`` folds ASCII only, and PostgreSQL's follows the
    database's locale (ASCII only under ``C``); so SQLite calls
    :func:`fold_text` itself (registered on each connection) and PostgreSQL
    lowers the NFKC form under the ICU root collation, which lowers every
    script as Python does, then maps the few characters whose case folding
    is not their lower case (:data:`_AFTER_LOWER`: ``translate`` for single
    characters, ``replace`` for ``ß``) on the NFD form, and composes again.
    """
    if backend_name(bind) == "postgresql":
        def form(value, name):
            return sa.func.normalize(value, sa.literal_column(name))

        lowered = sa.func.lower(form(column, "NFKC").collate("und-x-icu"))
        single = {chr(k): v for k, v in _AFTER_LOWER.items() if len(v) == 1}
        mapped = sa.func.translate(form(lowered, "NFD"), "".join(single), "".join(single.values()))
        for k, v in _AFTER_LOWER.items():
            if len(v) > 1:
                mapped = sa.func.replace(mapped, chr(k), v)
        return form(mapped, "NFKC")
    return sa.func.gridmap_fold(column)


def id_list(ids):
    """``ids`` (integers) for ``column.in_(...)``, written into the SQL as numbers.

    A set the service computed (a park's hidden units: thousands of ids)
    would be thousands of bound parameters, beyond SQLite's 32 766; checked
    integers cannot inject anything, and the statement stays cached by shape.
    """
    return sa.bindparam(None, [int(i) for i in ids], expanding=True, literal_execute=True)


def code_point_order(bind, column):
    """``column`` ordered by code point on both backends (not by a locale's collation)."""
    return column.collate("C") if backend_name(bind) == "postgresql" else column


#: Values per ``IN (...)`` list: each is a bound parameter, and SQLite allows 32 766.
IN_BATCH = 5000


def in_batches(values, size=IN_BATCH):
    """``values`` (any iterable) as lists of at most ``size``, for ``column.in_(batch)``."""
    values = list(values)
    return [values[i:i + size] for i in range(0, len(values), size)]


def parse_url(url):
    """Return ``url`` as a SQLAlchemy URL.

    Raises
    ------
    ConfigError
        For text that is not a URL (a port that is not a number...).  The
        message never repeats the text: SQLAlchemy's own error quotes the
        part it could not read, which is the password when the ``@`` is
        missing (``postgresql://gm:s3cret/db`` reads ``s3cret`` as the port).
    """
    if isinstance(url, sa.engine.URL):
        return url
    try:
        return make_url(url)
    except (ValueError, sa.exc.ArgumentError):
        raise ConfigError(
            "GRIDMAP_DATABASE_URL (or --db) is not a database URL: expected sqlite:///FILE or "
            "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE (a numeric port)",
            details={"setting": "GRIDMAP_DATABASE_URL"}) from None


#: Query parameters libpq reads secrets from (``?password=...`` works like ``user:pw@``).
_SECRET_QUERY_KEYS = ("password", "sslpassword")


def safe_url(url):
    """Return the URL as text for messages, with its password hidden.

    Also a password given as a query parameter (``?password=``); an
    unreadable URL is not repeated at all.
    """
    try:
        parsed = parse_url(url)
    except ConfigError:
        return "(an unreadable database URL)"
    secrets = {key: "MASKED" for key in parsed.query if key.lower() in _SECRET_QUERY_KEYS}
    # The placeholder is swapped after rendering, which would quote "***" as %2A%2A%2A.
    return parsed.update_query_dict(secrets).render_as_string(hide_password=True).replace(
        "=MASKED", "=***")


def bbox_filter(bind, model, column, box):
    """A WHERE clause: ``column``'s bounding box meets ``box`` (minx, miny, maxx, maxy), indexed.

    PostGIS answers ``&&`` from the GiST index; on SpatiaLite the R*Tree
    ``idx_<table>_<column>`` (bounds rounded outwards to float32) gives the
    candidate row ids.  Either way the result is a superset of the rows that
    intersect ``box``; the exact test is left to shapely.  ``bind`` is an
    engine, connection or session, or the backend's name (:func:`backend_name`);
    ``model`` is a mapped class or its table; the bounds are numbers or SQL
    expressions (bound parameters of a statement built once).
    """
    minx, miny, maxx, maxy = (v if isinstance(v, sa.ColumnElement) else float(v) for v in box)
    if backend_name(bind) == "postgresql":
        return column.op("&&")(sa.func.ST_MakeEnvelope(minx, miny, maxx, maxy, STORAGE_SRID))
    table = getattr(model, "__table__", model)
    index = sa.table(f"idx_{table.name}_{column.key}", sa.column("pkid"),
                     sa.column("xmin"), sa.column("xmax"), sa.column("ymin"), sa.column("ymax"))
    return table.c.id.in_(sa.select(index.c.pkid).where(
        index.c.xmin <= maxx, index.c.xmax >= minx, index.c.ymin <= maxy,
        index.c.ymax >= miny))


def boxes_filter(bind, model, column, boxes):
    """A WHERE clause: ``column``'s bounding box meets one of ``boxes``, indexed.

    :func:`bbox_filter` for many small boxes at once (the boxes of a page of
    scattered sites): one statement joining a ``VALUES`` list of the boxes,
    which reads the neighbourhood of each box rather than of their union.
    ``boxes`` is a sequence of (minx, miny, maxx, maxy); keep it to a few
    thousand (four bound parameters each).
    """
    names = ("minx", "miny", "maxx", "maxy")
    numbers = [[float(v) for v in box] for box in boxes]
    if not all(math.isfinite(v) for box in numbers for v in box):
        raise ValueError("boxes_filter: a box bound is not a finite number")
    # The bounds are written into the SQL as numbers (repr: exact, and only digits, sign,
    # point and exponent), not as 4 bound parameters each: compiling thousands of
    # parameters cost more than the query.
    rows = ", ".join(f"({a!r}, {b!r}, {c!r}, {d!r})" for a, b, c, d in numbers)
    found = sa.text(
        "SELECT column1 AS minx, column2 AS miny, column3 AS maxx, column4 AS maxy "
        f"FROM (VALUES {rows}) AS v").columns(
            *(sa.column(n, sa.Float) for n in names)).subquery("boxes")
    table = getattr(model, "__table__", model)
    if backend_name(bind) == "postgresql":
        return table.c.id.in_(sa.select(table.c.id).join(found, column.op("&&")(
            sa.func.ST_MakeEnvelope(*(found.c[n] for n in names), STORAGE_SRID))))
    index = sa.table(f"idx_{table.name}_{column.key}", sa.column("pkid"),
                     sa.column("xmin"), sa.column("xmax"), sa.column("ymin"), sa.column("ymax"))
    return table.c.id.in_(sa.select(index.c.pkid).join(found, sa.and_(
        index.c.xmin <= found.c.maxx, index.c.xmax >= found.c.minx,
        index.c.ymin <= found.c.maxy, index.c.ymax >= found.c.miny)))


def backend_name(bind):
    """Return ``"sqlite"`` or ``"postgresql"`` for an engine, connection or session."""
    if isinstance(bind, str):
        return bind
    return bind.get_bind().dialect.name if hasattr(bind, "get_bind") else bind.dialect.name


def make_session_factory(engine):
    """Return a ``sessionmaker`` bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def begin_write(session):
    """Mark the session's transaction as a writer before its first statement.

    On SQLite this makes the transaction start with ``BEGIN IMMEDIATE``; on
    PostgreSQL it changes nothing (row locks are taken by the services).
    """
    session.connection(execution_options={WRITE_OPTION: True})


def start_write(session):
    """Make the session's transaction a writer, now, for a short write at its end.

    Services that compute for long (grid edits, hazard placement) read in
    the caller's transaction and call this just before they write, so the
    write lock is held only for the write:

    * SQLite: a transaction that has only read is ended (it holds nothing
      worth keeping) and ``BEGIN IMMEDIATE`` starts the writer; one begun
      as a writer (:func:`begin_write`) or that has already written goes on.
    * PostgreSQL: nothing changes; the service takes its row locks next
      (``SELECT ... FOR UPDATE``), and every statement reads the latest
      committed rows (READ COMMITTED).

    Whatever was read before may be stale afterwards: the caller re-checks
    the versions it relied on once it holds the lock.
    """
    if backend_name(session) != "sqlite":
        return
    if session.new or session.dirty or session.deleted:
        return  # the caller's pending writes belong to its transaction
    if session.in_transaction():
        conn = session.connection()
        if conn.get_execution_options().get(WRITE_OPTION) or (
                conn.connection.dbapi_connection.total_changes != conn.info.get(_CHANGES)):
            return
        session.commit()
    begin_write(session)


def refresh_statistics(engine):
    """Update the query planner's statistics after a bulk load (``ANALYZE``).

    PostgreSQL's autovacuum gets there eventually; until then a freshly
    loaded table counts as nearly empty and joins over it may be planned as
    nested loops.  SQLite's planner uses them too (``sqlite_stat1``).
    """
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


def fetch_rows(session, statement):
    """The rows of a Core ``statement`` as plain tuples, straight from the DBAPI cursor.

    At 10^5 rows SQLAlchemy's result processing costs as much as the query
    itself.  Values come back as the driver gives them, without SQLAlchemy's
    type processing, so this is only for plain columns and WKB (bytes or
    memoryview), in the session's transaction.
    """
    conn = session.connection()
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = [params[name] for name in compiled.positiontup] if compiled.positional else params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


def insert_row(session, obj):
    """INSERT the transient ORM object ``obj`` with one Core statement; it becomes persistent.

    For the hot write paths (a hazard logged from the API): the unit of work
    of a flush cost twice the CPU of the statement itself.  The statement
    is built once per table and set of given columns; the columns left out
    take the table's own defaults, which come back with ``RETURNING`` and
    are set on ``obj`` as loaded, so it reads as if the ORM had flushed it.
    """
    mapper, given, values = given_columns(obj)
    statement, returned = _insert_statement(mapper, given)
    return adopt_row(session, obj, returned, session.execute(statement, values).one())


def given_columns(obj):
    """The transient ORM object ``obj``'s mapper, the keys of its set columns, and their values."""
    state = sa.inspect(obj)
    given = tuple(sorted(key for key in state.dict if key in state.mapper.columns))
    return state.mapper, given, {key: state.dict[key] for key in given}


def with_python_defaults(mapper, values):
    """``values`` and the Python-side column defaults of ``mapper``'s columns it lacks.

    An ``INSERT … SELECT`` built by hand runs no Python-side defaults (a
    plain ``insert()`` would), so the statement must be given them.
    """
    values = dict(values)
    for key, column in mapper.columns.items():
        default = column.default
        if key in values or default is None:
            continue
        if default.is_scalar:
            values[key] = default.arg
        elif default.is_callable:
            values[key] = default.arg(None)  # wrapped by SQLAlchemy to take a context
        else:
            raise TypeError(f"{mapper.class_.__name__}.{key}: a SQL default needs a plain insert")
    return values


def adopt_row(session, obj, keys, row):
    """Make the transient ``obj``, just inserted, persistent as if the ORM had flushed it.

    ``row`` holds the values of ``keys`` that the INSERT's ``RETURNING`` read
    back (the table's defaults and whatever the statement computed).
    """
    for key, value in zip(keys, row):
        set_committed_value(obj, key, value)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def returned_columns(mapper, given):
    """The keys of ``mapper``'s columns an INSERT of the ``given`` keys reads back."""
    return tuple(key for key in mapper.columns.keys() if key not in given)


@functools.cache
def _insert_statement(mapper, given):
    returned = returned_columns(mapper, given)
    return (mapper.local_table.insert().returning(*(mapper.columns[key] for key in returned)),
            returned)


def update_row(session, obj, values, *, child=None):
    """UPDATE the versioned ORM object ``obj`` with ``values`` in one Core statement.

    The counterpart of :func:`insert_row` for a row the caller has locked
    and whose version it checked: ``WHERE id = … AND version = …`` still
    guards it as the ORM's ``version_id_col`` would, and a row changed
    meanwhile raises ``StaleDataError`` (409 ``stale_version``).  ``obj``
    takes the new values and version as loaded, with nothing left to flush.

    ``child`` = ``(table, key column, values)``: a row to INSERT with
    ``obj``'s id in its key column (a history event).  On PostgreSQL it goes
    in the same statement (a data-modifying ``WITH``), one round trip less.
    """
    mapper = sa.inspect(obj).mapper
    version_key = mapper.version_id_col.key
    version = getattr(obj, version_key)
    params = {f"new_{key}": value for key, value in values.items()}
    (row_id,) = mapper.primary_key_from_instance(obj)
    params.update(row_id=row_id, row_version=version, new_version=version + 1)
    together = child is not None and backend_name(session) == "postgresql"
    statement = _update_statement(mapper, tuple(sorted(values)), together and child_shape(child))
    if together:
        params.update(child_params(child))
    result = session.execute(statement, params)
    if (result.first() is None) if together else result.rowcount != 1:
        raise StaleDataError(f"{mapper.local_table.name} row {row_id} changed meanwhile")
    if child is not None and not together:
        insert_child(session, row_id, child)
    for key, value in values.items():
        set_committed_value(obj, key, value)
    set_committed_value(obj, version_key, version + 1)
    return obj


@functools.cache
def _update_statement(mapper, keys, child=None):
    # Bound names differ from the column names: SQLAlchemy keeps those for its own SET values.
    table, version = mapper.local_table, mapper.version_id_col
    (key_column,) = mapper.primary_key
    update = table.update().where(
        key_column == sa.bindparam("row_id"), version == sa.bindparam("row_version")).values(
            {**{mapper.columns[key]: sa.bindparam(f"new_{key}") for key in keys},
             version: sa.bindparam("new_version")})
    if not child:
        return update
    # WITH updated AS (UPDATE … RETURNING id) INSERT INTO child SELECT updated.id, …
    # RETURNING: a row when the UPDATE matched (psycopg gives no row count after a WITH).
    updated = update.returning(key_column).cte("updated")
    return child_insert(child, updated.c[key_column.name]).returning(child[0].c[child[1]])


def child_shape(child):
    """The hashable shape of ``child`` = (table, key column, values): table, key, value keys."""
    table, key, values = child
    return table, key, tuple(sorted(values))


def child_params(child):
    """The bound values of ``child`` for :func:`child_insert`'s statement."""
    return {f"child_{k}": v for k, v in child[2].items()}


def child_insert(shape, parent_id):
    """``INSERT INTO table (key, …) SELECT parent_id, :child_… FROM <parent_id's CTE>``."""
    table, key, keys = shape
    return table.insert().from_select(
        [table.c[key]] + [table.c[k] for k in keys],
        sa.select(parent_id, *(sa.bindparam(f"child_{k}", type_=table.c[k].type) for k in keys)),
        include_defaults=False)


def insert_child(session, parent_id, child):
    """INSERT ``child`` = (table, key column, values) with ``parent_id`` in its key column."""
    table, key, values = child
    session.execute(table.insert(), {key: parent_id, **values})


@contextmanager
def session_scope(engine, write=False):
    """Yield a session in one transaction: commit on success, roll back on any error.

    Ctrl-C (``KeyboardInterrupt``) rolls back too, so a re-run starts clean.
    """
    session = make_session_factory(engine)()
    try:
        if write:
            begin_write(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def translate_db_error(exc, url=None):
    """Turn a driver-level error into a :class:`~geodata.errors.GridmapError`.

    Connection failures, SQLite lock timeouts and a damaged SQLite file
    become 503s; a missing table means the schema was never created.  A
    write that lost a race to another one is a 409, never a 500: a versioned
    row changed since it was read (``StaleDataError``: ``stale_version``), a
    unique key written meanwhile (``duplicate_grid_code`` and the like), a
    row another one still refers to (``has_dependents``).  The services check
    all of these under the park's lock first; this is the net under them.
    """
    if isinstance(exc, StaleDataError):
        return ConflictError("the record changed while this write ran; reload and try again",
                             code="stale_version")
    if isinstance(exc, IntegrityError):
        return _integrity_conflict(exc)
    text = str(getattr(exc, "orig", exc)).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return SchemaMissingError("the database has no gridmap schema: run `gridmap init-db`")
    if "database is locked" in text or "busy" in text:
        return DatabaseUnavailableError("the database is busy; retry shortly",
                                        code="database_busy", details={"retry_after": 5})
    where = f" at {safe_url(url)}" if url else ""
    if "file is not a database" in text or "disk image is malformed" in text:
        return DatabaseUnavailableError(f"the database file{where} is damaged or not a "
                                        "SpatiaLite database", details={"retry_after": 5})
    if getattr(exc, "connection_invalidated", False) or (
            isinstance(exc, OperationalError) and not _statement_fault(exc)):
        return DatabaseUnavailableError(f"cannot connect to the database{where}",
                                        details={"retry_after": 5})
    return None


#: SQLSTATE classes of a statement the server refused as written (a bug, not an outage):
#: syntax or undefined column (42), data (22), unsupported feature (0A).
_STATEMENT_CLASSES = ("42", "22", "0A")


def _statement_fault(exc):
    """True when an ``OperationalError`` is the statement's own fault, not the database's.

    SQLite reports a misspelt column (``no such column``) as an
    OperationalError with the generic code ``SQLITE_ERROR``, which a retry
    can never cure: answered as a 503 with ``Retry-After`` it made clients
    retry a bug forever, and was not logged.  Busy, I/O, full, read-only and
    unopenable files keep their own codes, and an error without a code
    (a connection that failed to open) stays an outage.
    """
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlite_errorname", None) == "SQLITE_ERROR":
        return True
    return str(getattr(orig, "sqlstate", None) or "")[:2] in _STATEMENT_CLASSES


#: Unique keys a concurrent writer can take first, by table: the codes the services use.
_DUPLICATE_CODES = {"grids": "duplicate_grid_code", "parks": "duplicate_park_code",
                    "enterprises": "duplicate_credit_code"}


def _integrity_conflict(exc):
    """The 409 of a unique or foreign-key violation, or None (another rule: a server bug)."""
    orig = getattr(exc, "orig", exc)
    text = str(orig).lower()
    diag = getattr(orig, "diag", None)  # psycopg names the table; SQLite says "table.column"
    table = getattr(diag, "table_name", None)
    if table is None and "constraint failed: " in text:
        table = text.split("constraint failed: ", 1)[1].split(".", 1)[0].strip()
    if "unique" in text or "duplicate key" in text:
        return ConflictError("a record with the same key was stored meanwhile; reload and try "
                             "again", code=_DUPLICATE_CODES.get(table, "duplicate"),
                             details={"table": table})
    if "foreign key" in text:
        if "update or delete on table" in text:  # PostgreSQL names the side
            return ConflictError("other records still refer to this one",
                                 code="has_dependents", details={"table": table})
        return ConflictError("a record this write refers to, or one that refers to it, "
                             "changed meanwhile; reload and try again", code="conflict",
                             details={"table": table})
    return None
