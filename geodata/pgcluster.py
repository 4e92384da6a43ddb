"""A throwaway local PostgreSQL + PostGIS cluster, for the test suite and benchmarks.

Uses the server binaries of Debian's ``postgresql-NN`` packages
(``/usr/lib/postgresql/NN/bin``) and ``postgresql-NN-postgis-3``.  PostgreSQL
refuses to run as root, so as root the cluster runs as the ``postgres``
system user.  Durability is switched off: the data is thrown away.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import sqlalchemy as sa


def find_bindir():
    """Return the newest ``/usr/lib/postgresql/NN/bin`` holding ``pg_ctl``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[-3]))
    return os.path.dirname(found[-1]) if found else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayCluster:
    """Start with :meth:`start`, stop (and delete) with :meth:`stop`; also a context manager."""

    def __init__(self, bindir=None, settings=None):
        self.bindir = bindir or find_bindir()
        #: Extra server settings, e.g. ``{"work_mem": "256MB"}`` for benchmarks.
        self.settings = dict(settings or {})
        if self.bindir is None:
            raise RuntimeError("no PostgreSQL server binaries: install Debian 'postgresql-15' "
                               "and 'postgresql-15-postgis-3'")
        self.port = _free_port()
        self.root = None

    def _run(self, *args):
        command = [os.path.join(self.bindir, args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        """Create the cluster in a temporary directory and start it on a free port."""
        self.root = tempfile.mkdtemp(prefix="gridmap-pg-")
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        data = os.path.join(self.root, "data")
        self._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200"
                   + "".join(f" -c {k}={v}" for k, v in self.settings.items()))
        self._run("pg_ctl", "-D", data, "-o", options, "-l", os.path.join(self.root, "log"),
                  "-w", "start")
        return self

    def url(self, database="postgres", driver="+psycopg"):
        """Return the SQLAlchemy URL (psycopg 3) of a database; ``driver=""`` gives libpq's."""
        return f"postgresql{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name, template=None):
        """Create database ``name`` (from ``template`` if given) with PostGIS; return its URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
        engine.dispose()
        url = self.url(name)
        if template is None:
            engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS postgis")
            engine.dispose()
        return url

    def stop(self):
        """Stop the server immediately and delete its files."""
        if self.root:
            try:
                self._run("pg_ctl", "-D", os.path.join(self.root, "data"), "-m", "immediate",
                          "-w", "stop")
            except subprocess.CalledProcessError:
                time.sleep(0.5)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
