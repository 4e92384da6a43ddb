"""Grid staff: import and export."""

import pandas as pd
import sqlalchemy as sa

from geodata import attributes as attr
from geodata.errors import FeatureError
from geodata.models import STAFF_ROLES, Grid, GridStaff

#: Accepts the stored role names and their Chinese titles.
ROLE_NAMES = {**{k: k for k in STAFF_ROLES}, **{v: k for k, v in STAFF_ROLES.items()}}


def import_staff(session, park, frame, *, file=None):
    """Insert grid staff from a table (columns grid_code, name, phone, role, published).

    ``role`` is ``grid_chief``/``full_time``/``part_time``/``party_instructor``
    or the Chinese title (网格长, 专职网格员, 兼职网格员, 党建指导员).

    Raises
    ------
    FeatureError
        ``unknown_grid`` or a missing/invalid field, naming the row.
    """
    grids = dict(session.execute(sa.select(Grid.code, Grid.id).where(
        Grid.park_id == park.id, Grid.active_to.is_(None))).all())
    new = []
    for i, row in attr.records(frame):
        where = {"index": i, "file": file}
        grid_code = attr.code(row.get("grid_code"), field="grid_code", **where)
        if grid_code not in grids:
            raise FeatureError(f"no active grid {grid_code!r} in park {park.code}",
                               code="unknown_grid", field="grid_code", **where)
        role = attr.text(row.get("role"), field="role", **where)
        if role not in ROLE_NAMES:
            raise FeatureError(f"unknown role {role!r}; use one of {', '.join(ROLE_NAMES)}",
                               code="invalid_value", field="role", **where)
        new.append(GridStaff(
            grid_id=grids[grid_code],
            name=attr.text(row.get("name"), field="name", kind="person", **where),
            phone=attr.text(row.get("phone"), field="phone", kind="phone", **where),
            role=ROLE_NAMES[role],
            published=attr.boolean(row.get("published"), field="published", **where)))
    session.add_all(new)
    session.flush()
    return new, []


def staff_frame(session, park):
    """Return the staff of a park's grids as a DataFrame (no geometry)."""
    rows = session.execute(
        sa.select(Grid.code, GridStaff.name, GridStaff.phone, GridStaff.role,
                  GridStaff.published).join(Grid, GridStaff.grid_id == Grid.id)
        .where(Grid.park_id == park.id).order_by(Grid.code, GridStaff.id)).all()
    return pd.DataFrame(rows, columns=["grid_code", "name", "phone", "role", "published"])
