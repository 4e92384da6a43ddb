"""Drawing a new level-1 grid over uncovered ground."""

from geodata import editing
from geodata.services.edits.common import _metric, _polygon_input, SNAP_M, TOLERANCE_M
from geodata.services.edits.recipe import _run


def draw_grid(session, park, geometry, *, actor, reason="", name=None, kind="area",
              if_match=None, snap_m=SNAP_M, tolerance_m=TOLERANCE_M):
    """Add a level-1 grid over uncovered ground of the park.

    What was drawn (EPSG:4326) is snapped to neighbouring edges within
    ``snap_m`` metres, clipped to the park and to the uncovered ground
    (:func:`geodata.editing.draw`).

    Raises
    ------
    ValidationError
        ``empty_result`` when the drawing covers no uncovered ground;
        ``invalid_geometry`` (with the reason) for an invalid drawing.
    """
    geometry = _polygon_input(geometry, "geometry")

    def build(state, plan):
        level1 = [state.metric[c] for c in state.by_code if state.parent[c] is None]
        geom = editing.draw(_metric(state, geometry), state.park_metric, level1,
                            tolerance_m=tolerance_m, snap_m=snap_m)
        plan.add(geom, None, 1, kind, [], "draw", name=name)

    return _run(session, park, "draw", build, actor=actor, reason=reason, if_match=if_match,
                tolerance_m=tolerance_m)
