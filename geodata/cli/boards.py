"""``gridmap boards``: the grid boards (网格员信息公示牌) of a park as one PDF."""

import click

from geodata.cli.context import FILE_PATH, PARK_CODE, pass_context


@click.command("boards")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--grid", "grid_code", help="Only this grid (default: every active grid).")
@click.option("--out", required=True, type=FILE_PATH,
              help="The PDF to write (replaced only when complete).")
@click.option("--service-line", required=True,
              help="The park's service phone line printed on every board (服务热线).")
@click.option("--base-url", help="The service's public address for the QR codes "
                                 "(default $GRIDMAP_PUBLIC_URL), e.g. https://gridmap.example.cn.")
@pass_context
def boards(obj, park_code, grid_code, out, service_line, base_url):
    """Write one board page per grid: code, name, map, published staff, service line, QR code.

    The QR code of each page holds BASE_URL/parks/<park>/grids/<grid>, the
    grid's public page.  Only staff whose contact is published are printed.
    """
    from geodata.errors import ValidationError
    from geodata.services.boards import write_boards
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    base_url = base_url or obj.settings.public_url
    if not base_url:
        raise ValidationError("give --base-url or set GRIDMAP_PUBLIC_URL: the QR codes need "
                              "the service's public address", code="missing_base_url")
    with session_scope(obj.ready_engine()) as session:
        pages = write_boards(session, get_park(session, park_code), out, base_url=base_url,
                             service_line=service_line, grid_code=grid_code)
    click.echo(f"wrote {pages} boards to {out}")


COMMANDS = (boards,)
