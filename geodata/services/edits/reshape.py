"""Reshaping a grid: its neighbours give or take the same ground."""

from geodata import editing
from geodata.errors import ValidationError
from geodata.services.edits.common import _metric, _polygon_input, SNAP_M, TOLERANCE_M
from geodata.services.edits.recipe import _run


def reshape_grid(session, park, code, geometry, *, actor, reason="", neighbours=None,
                 expected_version=None, if_match=None, snap_m=SNAP_M,
                 tolerance_m=TOLERANCE_M, operation="reshape", dry_run=False):
    """Give grid ``code`` a new shape; the neighbours give or take the same ground.

    ``neighbours`` limits which grids may give or take ground (default: all
    touching ones; ``()`` makes it a plain vertex edit that must not touch
    any neighbour).  Sub-grids of every changed grid are refitted.

    Raises
    ------
    ValidationError
        ``grid_overlap``, ``would_leave_gap``, ``outside_park`` with the area;
        ``invalid_geometry`` (with the reason) for an invalid new shape;
        ``invalid_neighbour`` for a listed neighbour that is the grid itself
        or has another parent;
        ``empty_result`` when the new shape keeps nothing of the grid inside
        its park or parent (a neighbour losing all its ground retires, the
        grid itself never does).
    """
    geometry = _polygon_input(geometry, "geometry")

    def build(state, plan):
        key = state.grid(code)
        nbrs = None if neighbours is None else [state.grid(c) for c in neighbours]
        for c in nbrs or ():
            if c == key or state.parent[c] != state.parent[key]:
                # Ignored, it would surface as an unexplained overlap or gap.
                raise ValidationError(
                    f"{c} cannot give or take ground from {key}: a neighbour is another grid "
                    f"with the same parent ({state.parent[key] or 'the park'})",
                    code="invalid_neighbour", details={"field": "neighbours", "grid": c})
        park_metric = state.park_metric if state.parent[key] is None else \
            state.metric[state.parent[key]]
        changed = editing.reshape(state.siblings(key), key, _metric(state, geometry), nbrs,
                                  park=park_metric, tolerance_m=tolerance_m, snap_m=snap_m)
        # A neighbour that loses all its ground retires; the reshaped grid itself never does.
        plan.keep.add(key)
        for c, geom in changed.items():
            plan.update(c, geom)

    return _run(session, park, operation, build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m,
                dry_run=dry_run)
