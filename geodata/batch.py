"""Work over many stored parks, one task per park, in this process or on Dask.

``gridmap check --all``, ``gridmap hidden-units --all`` and ``gridmap hazards
relocate --all`` run the same per-park function either one park after the
other here, or as tasks on a ``dask.distributed`` cluster: a LocalCluster of
``workers`` processes on this machine, or a running scheduler
(``tcp://host:port``) whose workers reach the same database URL.

Tasks only read: each opens its own engine on the URL, computes and returns
plain data (dicts, lists).  Whatever must be written is written afterwards by
the caller in one short transaction per park, so a cluster never holds the
database's write lock (SpatiaLite has one writer) and a failed task leaves
nothing half-written.
"""

import contextlib

from geodata.errors import GridmapError

__all__ = ["dask_client", "local_cluster_options", "map_parks", "check_park_task",
           "hidden_units_task", "relocation_task", "StoredGrids"]

#: Seconds Dask keeps retrying a refused or silent scheduler before
#: ``scheduler_unavailable`` (docs/scaling.md); the test suite shortens it.
SCHEDULER_CONNECT_TIMEOUT_S = 15


@contextlib.contextmanager
def dask_client(workers=1, scheduler=None):
    """Yield a Dask client for ``scheduler`` or ``workers`` > 1 processes, else None.

    Without either nothing of Dask is imported and the caller works in this
    process.  An unreachable scheduler raises :class:`GridmapError`
    (``scheduler_unavailable``).
    """
    if not scheduler and workers <= 1:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise GridmapError(f"cannot connect to the Dask scheduler {scheduler}: {exc}",
                               code="scheduler_unavailable") from exc
        with client:
            yield client
        return
    with LocalCluster(**local_cluster_options(workers)) as cluster, Client(cluster) as client:
        yield client


def local_cluster_options(workers):
    """``LocalCluster`` keywords: ``workers`` single-threaded processes, loopback, no dashboard.

    The scheduler serves its health routes over HTTP even without a
    dashboard, on port 8787 unless told otherwise; a free port avoids a
    clash (and a warning) when another Dask runs on the machine.
    """
    return dict(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def map_parks(task, url, codes, *args, client=None):
    """Return ``[task(url, code, *args) for code in codes]``, on ``client``'s workers if given.

    ``task`` must be a module-level function (it is pickled for the workers).
    """
    if client is None:
        return [task(url, code, *args) for code in codes]
    n = len(codes)
    return client.gather(client.map(task, [url] * n, codes, *([a] * n for a in args),
                                    pure=False))


@contextlib.contextmanager
def _park_session(url, code):
    from geodata.services.parks import get_park
    from geodata.storage import make_engine, session_scope

    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            yield session, get_park(session, code)
    finally:
        engine.dispose()


def check_park_task(url, code, tolerance_m):
    """The coverage check of one stored park: ``(result dict, CoverageReport)``."""
    from geodata.services.coverage import check_park

    with _park_session(url, code) as (session, park):
        return check_park(session, park, tolerance_m=tolerance_m)


def hidden_units_task(url, code):
    """The hidden sub-unit candidates of one stored park, as dicts with ``park``."""
    from geodata.hidden import find_hidden_units

    with _park_session(url, code) as (session, park):
        return [{"park": park.code, **u.to_dict()} for u in find_hidden_units(session, park)]


def relocation_task(url, code):
    """Where one park's hazards belong now: :func:`geodata.services.ledger.relocation`."""
    from geodata.services.ledger import relocation

    with _park_session(url, code) as (session, park):
        return relocation(session, park)


class StoredGrids:
    """Where a worker reads a stored park's level-1 grids for one partition.

    Sent with each task of :func:`geodata.partition.check_partitioned`
    (scattered to the worker, so it is not in the scheduler's task graph).
    The database URL, password included, is never shown: ``repr`` (what Dask
    logs when a task fails) and error messages hide the password.

    Parameters
    ----------
    url : str or sqlalchemy.engine.URL
        The database; a SpatiaLite file is opened read-only.
    park_id : int
    version : int
        The park's version when the check began: a worker that reads
        another one raises ``park_changed`` (every grid edit bumps it).
    """

    def __init__(self, url, park_id, version):
        from sqlalchemy.engine import make_url

        from geodata.storage import sqlite_file

        url = make_url(url)
        path = sqlite_file(url)
        if path is not None:  # workers may run in another folder
            url = url.set(database=str(path.absolute()))
        self._url = url.render_as_string(hide_password=False)
        self.park_id, self.version = int(park_id), int(version)

    def __repr__(self):
        from geodata.storage import safe_url

        return f"StoredGrids({safe_url(self._url)!r}, park_id={self.park_id})"

    def read(self, box):
        """``(ids, envelopes, geometries)`` of the park's level-1 grids meeting ``box``.

        See :func:`geodata.services.coverage.level1_grids_in_box`.
        """
        from geodata.services.coverage import level1_grids_in_box
        from geodata.storage import make_engine, session_scope, translate_db_error

        engine = make_engine(self._url, read_only=True)
        try:
            with session_scope(engine) as session:
                return level1_grids_in_box(session, self.park_id, self.version, box)
        except Exception as exc:
            error = translate_db_error(exc, self._url)
            if error is None:
                raise
            raise error from None
        finally:
            engine.dispose()
