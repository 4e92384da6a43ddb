"""``gridmap serve``: the web service, in one process (waitress) or several (gunicorn)."""

import os

import click

from geodata.cli.context import PlainIntRange, pass_context


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=PlainIntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=PlainIntRange(1, 64),
              help="Threads per worker process.")
@click.option("--workers", default=1, show_default=True, type=PlainIntRange(1, 64),
              help="Worker processes; more than 1 runs gunicorn instead of waitress.")
@pass_context
def serve(obj, host, port, threads, workers):
    """Run the web service (map pages and JSON API).

    One worker runs the waitress WSGI server in this process.  Several run
    gunicorn: this process is the master and forks ``--workers`` processes that
    each build the app.  They share sessions because every worker signs cookies
    with the master's secret key, and share rate limits when
    ``GRIDMAP_RATELIMIT_STORAGE_URI`` names a Redis server.
    """
    from geodata.storage import safe_url
    from webmap import create_app

    settings = obj.settings
    # Settings were read once, here: with GRIDMAP_SECRET_KEY unset, the random key made for
    # this process is the one every forked worker signs and checks session cookies with.
    config = {"DATABASE_URL": settings.database_url, "SECRET_KEY": settings.secret_key}
    if not os.environ.get("GRIDMAP_SECRET_KEY"):
        click.echo("warning: GRIDMAP_SECRET_KEY is not set: sessions are signed with a key made "
                   "at startup and end when the server restarts", err=True)
    if workers > 1 and settings.ratelimit_storage_uri.startswith("memory:"):
        click.echo(f"warning: GRIDMAP_RATELIMIT_STORAGE_URI is memory://: each of the {workers} "
                   "workers counts login attempts on its own, so a client gets up to "
                   f"{workers} x GRIDMAP_LOGIN_RATE_LIMIT; use redis://HOST:6379/0 to share them",
                   err=True)
    # Built here even when gunicorn's workers build their own, so a setting the app rejects
    # stops the command with exit 2 instead of a worker that fails to boot.
    app = create_app(config)
    click.echo(f"serving {safe_url(settings.database_url)} on http://{host}:{port}/ with "
               f"{workers} worker process(es) x {threads} thread(s)", err=True)
    if workers == 1:
        from waitress import serve as waitress_serve

        waitress_serve(app, host=host, port=port, threads=threads, ident="gridmap")
        return
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    _gunicorn(lambda: create_app(config), {
        "bind": bind, "workers": workers, "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        # gunicorn's runtime control socket is one path per user ($HOME/.gunicorn), which two
        # servers on one machine would fight over; restarts go through signals instead.
        "control_socket_disable": True}).run()


def _gunicorn(factory, options):
    """A gunicorn application whose workers each serve ``factory()``.

    The same as ``gunicorn -w N --threads T 'webmap:create_app()'`` on the
    command line, but with the settings this command has already read.
    """
    from gunicorn.app.base import BaseApplication

    class _GridmapServer(BaseApplication):
        def load_config(self):
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return factory()

    return _GridmapServer()


COMMANDS = (serve,)
