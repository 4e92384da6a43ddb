"""Retiring a grid: its ground goes to its neighbours."""

from geodata import editing
from geodata.services.edits.common import TOLERANCE_M
from geodata.services.edits.recipe import _run


def retire_grid(session, park, code, *, to=None, actor, reason="", expected_version=None,
                if_match=None, tolerance_m=TOLERANCE_M):
    """Retire grid ``code``: its ground goes to ``to`` or the neighbours with the longest border.

    The row stays (``active_to`` set) so the code is never reused; its
    sub-grids are retired too and the receivers' sub-grids take the ground.
    """
    def build(state, plan):
        key = state.grid(code)
        target = state.grid(to) if to is not None else None
        changed = editing.retire(state.siblings(key), key, target, tolerance_m=tolerance_m)
        plan.retire_tree(key)
        for c, geom in changed.items():
            plan.update(c, geom)

    return _run(session, park, "retire", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m)
