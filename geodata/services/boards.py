"""Grid boards (公示牌): read a park's grids and published staff, write the PDF.

The drawing is :mod:`geodata.boards`; this module decides what each board
shows.  A board lists only staff whose contact is published
(``GridStaff.published``); unpublished staff never reach the PDF.
"""

import numpy as np
import sqlalchemy as sa

from geodata import boards, domains
from geodata.crs import to_metric
from geodata.errors import NotFoundError
from geodata.models import STAFF_ROLES, Grid, GridStaff
from geodata.services.grids import get_grid, grid_layer
from geodata.services.parks import park_boundary


def board_set(session, park, *, base_url, service_line, grid_code=None):
    """The boards of every active grid of ``park`` (all levels), or of one grid.

    Parameters
    ----------
    base_url : str
        The service's public address; each QR code holds
        ``<base_url>/parks/<park>/grids/<grid>`` (:func:`geodata.boards.check_base_url`).
    service_line : str
        The park's service phone line printed on every board.
    grid_code : str, optional
        Only this grid (it must be active).

    Returns
    -------
    geodata.boards.BoardSet
        Boards ordered by grid code; geometries in the park's metric CRS.

    Raises
    ------
    NotFoundError
        Unknown or retired grid, or a park without active grids (``no_grids``).
    ValidationError
        A bad base URL or service line.
    """
    base_url = boards.check_base_url(base_url)
    service_line = domains.text(service_line, "service_line", kind="phone", required=True)
    layer = grid_layer(session, park)
    if grid_code is not None:
        grid = get_grid(session, park, grid_code)
        if grid.active_to is not None:
            raise NotFoundError(f"grid {grid.code} of park {park.code} is retired",
                                details={"park": park.code, "grid": grid.code})
        chosen = layer[layer["code"] == grid.code]
    else:
        chosen = layer
    if chosen.empty:
        raise NotFoundError(f"park {park.code} has no active grids to make boards for",
                            code="no_grids", details={"park": park.code})
    staff = _published_staff(session, park, set(chosen["id"].tolist()))
    metric = to_metric(chosen.geometry.to_numpy(), park.metric_epsg)
    level1 = layer[layer["level"] == 1].geometry.to_numpy()
    items = [boards.Board(code=row.code, name=row.name, level=int(row.level),
                          parent_code=row.parent_code or "", geometry=geom,
                          staff=staff.get(row.id, []),
                          url=boards.public_url(base_url, park.code, row.code))
             for row, geom in zip(chosen.itertuples(), metric)]
    return boards.BoardSet(
        park_code=park.code, park_name=park.name, service_line=service_line,
        boundary=to_metric(park_boundary(park), park.metric_epsg),
        cells=to_metric(level1, park.metric_epsg) if len(level1) else np.array([], dtype=object),
        boards=items)


def _published_staff(session, park, grid_ids):
    """``{grid id: [(title, name, phone), ...]}`` of published staff, chief first."""
    rank = {role: i for i, role in enumerate(STAFF_ROLES)}
    rows = session.execute(
        sa.select(GridStaff.grid_id, GridStaff.role, GridStaff.name, GridStaff.phone)
        .join(Grid, GridStaff.grid_id == Grid.id)
        .where(Grid.park_id == park.id, GridStaff.published.is_(True))
        .order_by(GridStaff.id)).all()
    staff = {}
    for grid_id, role, name, phone in sorted(rows, key=lambda r: rank.get(r[1], len(rank))):
        if grid_id in grid_ids:
            staff.setdefault(grid_id, []).append((STAFF_ROLES.get(role, role), name, phone))
    return staff


def write_boards(session, park, out, **options):
    """Write the boards PDF to ``out`` atomically; return the number of pages.

    The PDF is written to a temporary file beside ``out`` and renamed over it
    only when complete, so a failure (or Ctrl-C) leaves no half file and any
    older ``out`` untouched.  ``options`` go to :func:`board_set`.

    Raises
    ------
    GridmapError
        ``unwritable_output``, or the errors of :func:`board_set`.
    """
    from geodata.files import atomic_write, check_writable

    check_writable(out)
    chosen = board_set(session, park, **options)
    with atomic_write(out) as temp:  # disk full, folder removed meanwhile: unwritable_output
        boards.render(chosen, str(temp))
    return len(chosen.boards)
