"""Merging adjacent grids with one parent into a new grid."""

from geodata import editing
from geodata.errors import ValidationError
from geodata.services.edits.common import TOLERANCE_M
from geodata.services.edits.recipe import _run


def merge_grids(session, park, codes, *, actor, reason="", expected_versions=None,
                if_match=None, tolerance_m=TOLERANCE_M):
    """Merge two or more adjacent grids with the same parent into one new grid.

    The merged grids are retired; their sub-grids move under the new grid
    (a merged grid without sub-grids becomes one), their staff follow.

    Raises
    ------
    ValidationError
        ``not_adjacent``, or ``different_parents``.
    """
    if expected_versions is not None and not isinstance(expected_versions, dict):
        expected_versions = dict(zip(codes, expected_versions))

    def build(state, plan):
        keys = list(dict.fromkeys(state.grid(c) for c in codes))
        if len(keys) < 2:
            raise ValidationError("merge needs at least two grids", code="invalid_value",
                                  details={"field": "codes"})
        if len({state.parent[k] for k in keys}) != 1:
            raise ValidationError("grids with different parents cannot be merged",
                                  code="different_parents", details={"grids": keys})
        merged = editing.merge([state.metric[k] for k in keys], tolerance_m=tolerance_m)
        plan.replace(keys, [merged], "merge", new_for_wide=True)

    return _run(session, park, "merge", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_versions, tolerance_m=tolerance_m)
