"""``gridmap parks ...``: per-park settings."""

import click

from geodata.cli.context import pass_context


@click.group("parks")
def parks():
    """Per-park settings: set."""


@parks.command("set")
@click.argument("code")
@click.option("--require-after-photo/--no-require-after-photo", default=None,
              help="Closing a major (重大) hazard needs a photo tagged 'after' (整改后).")
@pass_context
def set_(obj, code, require_after_photo):
    """Change the settings of park CODE; options not given keep their value."""
    if require_after_photo is None:
        raise click.UsageError("give a setting to change, e.g. --require-after-photo")
    from geodata.services.parks import set_park_settings
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        park = set_park_settings(session, code, require_after_photo=require_after_photo)
        click.echo(f"{park.code}: require_after_photo="
                   f"{'yes' if park.require_after_photo else 'no'}")


COMMANDS = (parks,)
