"""Giving sliver grids, parts and gaps to their neighbours."""

from geodata import editing
from geodata.services.edits.common import TOLERANCE_M
from geodata.services.edits.recipe import _run


def absorb_slivers(session, park, *, actor, reason="", max_width_m=1.0, max_area_m2=0.0,
                   if_match=None, tolerance_m=TOLERANCE_M):
    """Give sliver grids, sliver parts and sliver gaps to the neighbour with the longest border.

    Works on level-1 grids.  Slivers are narrower than ``max_width_m`` metres
    everywhere or smaller than ``max_area_m2`` m² (:func:`editing.absorb_slivers`).
    """
    def build(state, plan):
        level1 = {c: state.metric[c] for c in state.by_code if state.parent[c] is None}
        changed, retired, filled = editing.absorb_slivers(
            level1, park=state.park_metric, max_width_m=max_width_m, max_area_m2=max_area_m2,
            tolerance_m=tolerance_m)
        for c in retired:
            plan.retire_tree(c)
        for c, geom in changed.items():
            plan.update(c, geom)
        if filled:
            plan.warnings.append(f"filled {filled:.2f} m² of sliver gaps")

    return _run(session, park, "absorb_slivers", build, actor=actor, reason=reason,
                if_match=if_match, tolerance_m=tolerance_m)
