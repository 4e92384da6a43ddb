"""Splitting a grid by a line or into strips of equal area."""

from geodata import editing
from geodata.errors import ValidationError
from geodata.services.edits.common import _line_input, _metric, TOLERANCE_M
from geodata.services.edits.recipe import _run


def split_grid(session, park, code, *, line=None, parts=None, actor, reason="",
               expected_version=None, if_match=None, tolerance_m=TOLERANCE_M, dry_run=False):
    """Split grid ``code`` by a line (EPSG:4326) or into ``parts`` strips of equal area.

    The grid is retired; each piece becomes a new grid (new code, lineage
    ``split``).  Sub-grids follow: each keeps its part inside each piece
    under that piece (new codes, lineage ``reparent``).  With ``dry_run``
    nothing is locked or written and a :class:`Preview` is returned.
    """
    if (line is None) == (parts is None):
        raise ValidationError("give either a split line or a number of parts",
                              code="invalid_value",
                              details={"field": "line" if line is not None else "parts",
                                       "fields": ["line", "parts"]})
    if line is not None:
        line = _line_input(line, "line")

    def build(state, plan):
        key = state.grid(code)
        geom = state.metric[key]
        if line is not None:
            pieces = editing.split_by_line(geom, _metric(state, line), tolerance_m=tolerance_m)
        else:
            pieces = editing.split_equal_area(geom, parts, tolerance_m=tolerance_m)
        plan.replace([key], pieces, "split")

    return _run(session, park, "split", build, actor=actor, reason=reason, if_match=if_match,
                expected=expected_version, expected_codes=[code], tolerance_m=tolerance_m,
                dry_run=dry_run)
