"""One engine per app, one session per request (closed before the response leaves).

The session is closed in ``after_request``, while the response can still be
replaced: when the database went away mid-request, ending the transaction
fails, and the client gets the JSON 503 ``database_unavailable`` (with
``Retry-After``) instead of a plain-text 500 from a teardown.  The teardown
closes whatever an unhandled error left behind; it can no longer change the
response, so it logs a failure instead of raising.
"""

from flask import current_app, g
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from geodata import schema
from geodata.errors import DatabaseUnavailableError
from geodata.storage import (make_engine, make_session_factory, require_database, start_write,
                             translate_db_error)


def init_app(app):
    """Create the app's engine lazily and close the request's session after each request."""
    settings = app.config["GRIDMAP"]
    # A missing SpatiaLite file is a setup step not done (not an outage): refuse to start.
    require_database(settings.database_url)
    app.extensions["gridmap.engine"] = make_engine(
        settings.database_url, busy_timeout_s=settings.sqlite_busy_timeout_s)
    app.extensions["gridmap.sessions"] = make_session_factory(app.extensions["gridmap.engine"])
    app.after_request(release_session)
    app.teardown_appcontext(close_session)


def get_session():
    """Return this request's session, creating it on first use.

    Until the database's schema has been found at this code's head once, a
    new session checks it first (:func:`geodata.schema.require_current`): a
    worker started on a database a migration behind answered every route with
    a 500 from a missing column; now 503 ``schema_outdated`` (or
    ``schema_missing``) naming ``gridmap init-db``, as ``/readyz`` does.  Only
    success is remembered, so the routes work as soon as ``init-db`` has run.
    """
    if "db_session" not in g:
        extensions = current_app.extensions
        if not extensions.get("gridmap.schema_current"):
            schema.require_current(extensions["gridmap.engine"])
            extensions["gridmap.schema_current"] = True
        g.db_session = extensions["gridmap.sessions"]()
    return g.db_session


def _close(exc=None):
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def write_session():
    """The request's session, switched to a write transaction (:func:`start_write`).

    The authentication lookup ran in a read transaction; on SQLite a read
    snapshot cannot be upgraded to a writer, so it is ended first and the
    write starts with ``BEGIN IMMEDIATE`` (writers queue instead of failing).
    On PostgreSQL the transaction goes on: the services take row locks.
    """
    session = get_session()
    start_write(session)
    return session


def commit_or_rollback(session, work):
    """Run ``work()`` and commit; roll back on any error (then re-raise).

    A unique key taken by a concurrent writer after ``work`` checked it (two
    creates naming one hazard code or one visit ``client_id``, on PostgreSQL
    where such creates run side by side) fails the insert: the transaction
    is rolled back and ``work`` runs once more, so its own checks answer as
    for a sequential request (409 ``duplicate_hazard_code``, a visit's
    replay) rather than the bare constraint.  A second failure is raised
    (:func:`geodata.storage.translate_db_error`: 409).

    Under an ``Idempotency-Key`` (:mod:`webmap.idempotency`) the commit is
    left to the decorator, which stores the answer in the same transaction.
    """
    for attempt in (1, 2):
        try:
            result = work()
            pending = g.get("idempotency")
            if pending is not None:
                pending.session = session
            else:
                session.commit()
            return result
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
            start_write(session)
        except BaseException:
            session.rollback()
            raise


def release_session(response):
    """Close the request's session; a database lost meanwhile turns ``response`` into a 503."""
    from webmap.errors import error_response

    try:
        _close()
    except SQLAlchemyError as exc:
        current_app.logger.warning("database lost while ending the request: %s", exc)
        error = translate_db_error(exc)
        if error is None or error.http_status != 503:
            error = DatabaseUnavailableError("the database connection was lost; retry shortly",
                                             details={"retry_after": 5})
        return error_response(error)
    return response


def close_session(exc=None):
    """Roll back anything uncommitted and close a session left open (logged if that fails)."""
    try:
        _close(exc)
    except SQLAlchemyError as error:
        current_app.logger.warning("database lost while closing a session: %s", error)
