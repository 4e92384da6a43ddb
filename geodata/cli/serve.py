"""``gridmap serve``: the web service."""

import click

from geodata.cli.context import pass_context


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@pass_context
def serve(obj, host, port, threads):
    """Run the web service (map pages and JSON API) with the waitress WSGI server."""
    from waitress import serve as waitress_serve

    from geodata.storage import safe_url
    from webmap import create_app

    app = create_app({"DATABASE_URL": obj.settings.database_url})
    click.echo(f"serving {safe_url(obj.settings.database_url)} on http://{host}:{port}/",
               err=True)
    waitress_serve(app, host=host, port=port, threads=threads, ident="gridmap")


COMMANDS = (serve,)
