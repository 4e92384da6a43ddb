"""History of a park's edits, the grids at any edit, restores and lineage."""

import json

import geopandas as gpd
import shapely
import sqlalchemy as sa

from geodata import attributes as attr
from geodata.crs import area_m2, STORAGE_SRID
from geodata.errors import NotFoundError
from geodata.models import Grid, GridEdit, GridEditItem, GridLineage
from geodata.models.base import to_shapes
from geodata.services.edits.common import TOLERANCE_M
from geodata.services.edits.recipe import _run
from geodata.services.edits.reshape import reshape_grid


def park_history(session, park, limit=None, offset=0):
    """The park's edits, newest first: ``id, at, actor, operation, reason, park_version, grids``.

    ``limit`` and ``offset`` take one page of them (:func:`count_edits` counts them all).
    """
    edits = session.execute(sa.select(GridEdit).where(GridEdit.park_id == park.id)
                            .order_by(GridEdit.id.desc()).limit(limit).offset(offset)
                            ).scalars().all()
    return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "operation": e.operation,
             "reason": e.reason, "park_version": e.park_version,
             "grids": [i.code for i in e.items],
             "problems": json.loads(e.problems) if e.problems else []} for e in edits]


def count_edits(session, park):
    """How many edits the park has had."""
    return int(session.execute(sa.select(sa.func.count()).where(
        GridEdit.park_id == park.id)).scalar())


def grid_history(session, park, code):
    """Every recorded version of grid ``code``, oldest first.

    Returns
    -------
    list of dict
        ``edit, at, actor, operation, reason, version, active, area_m2`` and
        ``geometry`` (shapely, EPSG:4326) after each edit that touched it.
    """
    rows = session.execute(
        sa.select(GridEditItem, GridEdit).join(GridEdit, GridEditItem.edit_id == GridEdit.id)
        .where(GridEdit.park_id == park.id, GridEditItem.code == attr.code(code))
        .order_by(GridEdit.id)).all()
    if not rows:
        grid = session.execute(sa.select(Grid).where(
            Grid.park_id == park.id, Grid.code == attr.code(code))).scalar_one_or_none()
        if grid is None:
            raise NotFoundError(f"no grid {code!r} in park {park.code}",
                                details={"park": park.code, "grid": code})
    out = []
    for item, edit in rows:
        if item.before_wkb is not None and not out:
            geom = shapely.from_wkb(item.before_wkb)
            out.append({"edit": None, "at": None, "actor": None, "operation": "initial",
                        "reason": "", "version": item.before_version,
                        "active": item.before_active, "geometry": geom,
                        "area_m2": float(area_m2(geom, park.metric_epsg))})
        geom = shapely.from_wkb(item.after_wkb)
        out.append({"edit": edit.id, "at": edit.at.isoformat(), "actor": edit.actor,
                    "operation": edit.operation, "reason": edit.reason,
                    "version": item.after_version, "active": item.after_active,
                    "geometry": geom, "area_m2": float(area_m2(geom, park.metric_epsg))})
    return out


def _state_at(session, park, edit_id):
    """``{code: (active, geometry EPSG:4326, parent code)}`` right after edit ``edit_id``.

    ``edit_id=0`` means before the first edit.  The current state is rolled
    back through the recorded before-states of every later edit.
    """
    grids = session.execute(sa.select(Grid).where(Grid.park_id == park.id)).scalars().all()
    code_of = {g.id: g.code for g in grids}
    state = {g.code: (g.active_to is None, to_shapes([g.geom])[0], code_of.get(g.parent_id))
             for g in grids}
    later = session.execute(
        sa.select(GridEditItem).join(GridEdit, GridEditItem.edit_id == GridEdit.id)
        .where(GridEdit.park_id == park.id, GridEdit.id > edit_id)
        .order_by(GridEditItem.edit_id.desc(), GridEditItem.id.desc())).scalars().all()
    for item in later:
        _, geom, parent = state[item.code]
        if item.before_wkb is None:
            state[item.code] = (False, geom, parent)
        else:
            state[item.code] = (item.before_active, shapely.from_wkb(item.before_wkb), parent)
    return state


def grids_at(session, park, edit_id):
    """The park's active grids right after edit ``edit_id`` (0: before any edit).

    Returns
    -------
    geopandas.GeoDataFrame
        ``code, parent_code, area_m2`` and the geometry, EPSG:4326.
    """
    _known_edit(session, park, edit_id)
    state = _state_at(session, park, edit_id)
    rows = sorted((c, p, g) for c, (active, g, p) in state.items() if active)
    return gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "parent_code": [r[1] for r in rows],
         "area_m2": [round(float(area_m2(r[2], park.metric_epsg)), 3) for r in rows]},
        geometry=[r[2] for r in rows], crs=STORAGE_SRID)


def _known_edit(session, park, edit_id):
    if edit_id == 0:
        return
    found = session.execute(sa.select(GridEdit.id).where(
        GridEdit.park_id == park.id, GridEdit.id == edit_id)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"no edit {edit_id} in park {park.code}",
                            details={"park": park.code, "edit": edit_id})


def restore_park(session, park, edit_id, *, actor, reason="", if_match=None,
                 allow_problems=False, tolerance_m=TOLERANCE_M):
    """Bring the park's grids back to how they were right after edit ``edit_id``, as a new edit.

    Grids made since are retired; grids retired since are reactivated with
    their code (the same grid returning, not a code reused); changed ones
    get their old geometry back exactly.
    """
    def build(state, plan):
        _known_edit(session, park, edit_id)
        target = _state_at(session, state.park, edit_id)
        for code, (active, geom, _) in target.items():
            current = state.by_code.get(code)
            if active and current is None:
                plan.reactivate[code] = geom
            elif not active and current is not None:
                plan.retire.add(code)
            elif active and not shapely.equals_exact(geom, state.geom[code], 0):
                plan.exact[code] = geom

    return _run(session, park, "restore", build, actor=actor, reason=reason or
                f"restore the grids as after edit {edit_id}", if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m)


def restore_grid(session, park, code, edit_id, *, actor, reason="", expected_version=None,
                 if_match=None, tolerance_m=TOLERANCE_M):
    """Give grid ``code`` back the shape it had right after edit ``edit_id``, as a reshape.

    The neighbours give or take the ground (:func:`reshape_grid`).
    """
    _known_edit(session, park, edit_id)
    state = _state_at(session, park, edit_id)
    key = attr.code(code)
    if key not in state or not state[key][0]:
        raise NotFoundError(f"grid {code} was not active after edit {edit_id}",
                            details={"grid": code, "edit": edit_id})
    return reshape_grid(session, park, key, state[key][1], actor=actor,
                        reason=reason or f"restore {key} as after edit {edit_id}",
                        expected_version=expected_version, if_match=if_match,
                        tolerance_m=tolerance_m, snap_m=0.0, operation="restore")


def lineage(session, park, code):
    """The grids ``code`` came from, transitively: ``[{code, source, relation, edit}]``."""
    codes = dict(session.execute(sa.select(Grid.id, Grid.code).where(
        Grid.park_id == park.id)).all())
    ids = {v: k for k, v in codes.items()}
    key = attr.code(code)
    if key not in ids:
        raise NotFoundError(f"no grid {code!r} in park {park.code}",
                            details={"park": park.code, "grid": code})
    out, todo, seen = [], [ids[key]], set()
    while todo:
        gid = todo.pop()
        if gid in seen:
            continue
        seen.add(gid)
        for row in session.execute(sa.select(GridLineage).where(
                GridLineage.grid_id == gid).order_by(GridLineage.id)).scalars():
            out.append({"code": codes[row.grid_id], "source": codes[row.source_id],
                        "relation": row.relation, "edit": row.edit_id})
            todo.append(row.source_id)
    return out
