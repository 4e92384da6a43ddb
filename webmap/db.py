"""One engine per app, one session per request (removed at teardown)."""

from flask import current_app, g

from geodata.storage import begin_write, make_engine, make_session_factory, require_database


def init_app(app):
    """Create the app's engine (lazily connecting) and close the request's session at teardown."""
    settings = app.config["GRIDMAP"]
    # A missing SpatiaLite file is a setup step not done (not an outage): refuse to start.
    require_database(settings.database_url)
    app.extensions["gridmap.engine"] = make_engine(
        settings.database_url, busy_timeout_s=settings.sqlite_busy_timeout_s)
    app.extensions["gridmap.sessions"] = make_session_factory(app.extensions["gridmap.engine"])
    app.teardown_appcontext(close_session)


def get_session():
    """Return this request's session, creating it on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["gridmap.sessions"]()
    return g.db_session


def close_session(exc=None):
    """Roll back anything uncommitted and close the request's session."""
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def write_session():
    """The request's session, switched to a fresh write transaction.

    The authentication lookup ran in a read transaction; on SQLite a read
    snapshot cannot be upgraded to a writer, so it is ended first and the
    write starts with ``BEGIN IMMEDIATE`` (writers queue instead of failing).
    """
    session = get_session()
    session.commit()
    begin_write(session)
    return session


def commit_or_rollback(session, work):
    """Run ``work()`` and commit; roll back on any error (then re-raise)."""
    try:
        result = work()
        session.commit()
        return result
    except BaseException:
        session.rollback()
        raise
