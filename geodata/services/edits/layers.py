"""Whole layers as one edit.

The QGIS round trip (``import grids --diff/--apply``) and an adopted proposal.
"""

import shapely

from geodata import attributes as attr
from geodata import editing
from geodata.crs import STORAGE_SRID, to_metric
from geodata.errors import ConflictError, ValidationError
from geodata.models import GRID_KINDS
from geodata.services.edits.common import _metric, TOLERANCE_M
from geodata.services.edits.recipe import _run


def _layer_rows(gdf, file):
    """``[(index, code or None, parent code or None, name, kind, geometry)]`` of a grid layer."""
    from geodata.geometry import validate_geometries

    geoms, _ = validate_geometries(gdf.geometry.to_numpy(), "grids", file=file)
    rows = []
    for i, row in attr.records(gdf):
        where = {"index": i, "file": file}
        code = attr.code(row.get("code"), field="code", required=False, **where)
        parent = attr.code(row.get("parent_code"), field="parent_code", required=False, **where)
        name = attr.text(row.get("name"), field="name", required=False, **where)
        kind = attr.choice(row.get("kind"), GRID_KINDS, field="kind", default="", **where) or None
        rows.append((i, code, parent, name, kind, geoms[i]))
    return rows


def _kept_attributes(grid, row, file):
    """Warnings for a stored grid whose name or kind the layer changes.

    The round trip edits shapes and codes; a renamed grid or another kind in
    QGIS is kept as stored, and saying so is better than "no changes".
    """
    index, _, _, name, kind, _ = row
    return [f"{file or 'layer'}: feature {index}: grid {grid.code}: {what} {new!r} is not "
            f"applied (the round trip edits shapes; the grid keeps {what} {old!r})"
            for what, new, old in (("name", name, grid.name), ("kind", kind, grid.kind))
            if new is not None and new != old]


def _differs(a, b, epsg, tolerance_m):
    """True when two EPSG:4326 shapes differ by more than noise."""
    if shapely.equals_exact(a, b, 0) or a.equals(b):
        return False
    diff = editing.clean(shapely.symmetric_difference(a, b))
    return not editing.is_narrow(to_metric(diff, epsg), tolerance_m)


def apply_layer(session, park, gdf, *, actor, reason="", file=None, allow_problems=False,
                if_match=None, dry_run=False, tolerance_m=TOLERANCE_M):
    """Make the park's grids those of an edited layer (the QGIS round trip), as one edit.

    The layer is what ``gridmap export grids`` wrote (EPSG:4326; columns
    ``code``, ``parent_code``, ``name``, ``kind``), edited by a planner:

    * a feature whose code is stored and whose shape changed → **reshaped**
      (its sub-grids are refitted when the layer leaves them as they were);
    * several features with one code (QGIS's split tool copies attributes)
      → that grid is **split**: retired, each feature a new grid with a new
      code, its sub-grids redistributed;
    * a feature with a blank code → **added** with the next code; a new code
      not used before is kept as given;
    * a stored active code missing from the layer → **retired** (its lineage
      points to the grids that now hold its ground);
    * a retired code in the layer → 409 ``duplicate_grid_code`` (never reused).

    With ``dry_run`` nothing is written and a :class:`Preview` (the ``--diff``)
    is returned; otherwise an :class:`EditOutcome`.  New gaps, overlaps or
    parts outside are refused unless ``allow_problems`` (then recorded).
    """
    rows = _layer_rows(gdf, file)

    def build(state, plan):
        by_code = {}
        for row in rows:
            if row[1] is not None:
                by_code.setdefault(row[1], []).append(row)
        for code in by_code:
            if code in state.every and code not in state.by_code:
                raise ConflictError(
                    f"{file or 'layer'}: grid code {code} belongs to a retired grid and is "
                    "never reused; leave the code blank for a new grid",
                    code="duplicate_grid_code", details={"file": file, "grid": code})
        for code, rs in by_code.items() if "parent_code" in gdf else ():
            moved = [r for r in rs if code in state.by_code and r[2] != state.parent[code]]
            if moved:
                # Ignoring it would store what the planner did not ask for.
                raise ValidationError(
                    f"{file or 'layer'}: feature {moved[0][0]}: grid {code} has parent "
                    f"{state.parent[code] or '(none)'}, not {moved[0][2] or '(none)'}; a grid "
                    "keeps its parent (leave the code blank for a new grid under another)",
                    code="parent_changed", details={"file": file, "feature": moved[0][0],
                                                    "grid": code, "field": "parent_code"})
        split = {c for c, rs in by_code.items() if len(rs) > 1 and c in state.by_code}
        for code, rs in by_code.items():
            if code in state.by_code and code not in split:
                plan.warnings += _kept_attributes(state.by_code[code], rs[0], file)
        missing = [c for c in state.by_code if c not in by_code]
        unchanged_kids = set()
        reshaped = {}
        for code, rs in by_code.items():
            if code in state.by_code and code not in split:
                geom = rs[0][5]
                if _differs(geom, state.geom[code], state.epsg, tolerance_m):
                    reshaped[code] = geom
                elif state.parent[code] is not None:
                    unchanged_kids.add(code)
        for code in missing:
            if code not in plan.retire:
                plan.retire_tree(code)
        for code in sorted(split):
            pieces = [_metric(state, r[5]) for r in by_code[code]]
            plan.replace([code], pieces, "split")
        for code, geom in reshaped.items():
            if code in plan.retire:
                continue
            plan.exact[code] = geom
            kids = state.children.get(code, [])
            if kids and all(k in unchanged_kids or k not in by_code for k in kids):
                # The planner moved the parent only: its sub-grids follow.
                metric = _metric(state, geom)
                before = set(plan.updates)
                plan._refit(code, metric)
                plan.updates.pop(code, None)
                for k in set(plan.updates) - before:
                    unchanged_kids.discard(k)
        keys = {}
        new_rows = [r for r in rows if r[1] is None or (r[1] not in state.every)]
        level_of = {}
        pending = list(new_rows)
        while pending:
            progressed = False
            for r in list(pending):
                i, code, parent = r[0], r[1], r[2]
                if parent is not None and parent in split:
                    raise ValidationError(
                        f"{file or 'layer'}: feature {i}: parent {parent} is split in the same "
                        "layer; give it its new parent after the split", code="invalid_value",
                        details={"file": file, "feature": i})
                if parent is None:
                    level = 1
                elif parent in state.by_code and parent not in plan.retire:
                    level = state.by_code[parent].level + 1
                elif parent in level_of:
                    level = level_of[parent] + 1
                elif any(x[1] == parent for x in pending):
                    continue
                else:
                    raise ValidationError(
                        f"{file or 'layer'}: feature {i}: parent grid {parent} is neither "
                        "active nor new in the layer", code="unknown_parent",
                        details={"file": file, "feature": i, "parent_code": parent})
                geom = _metric(state, r[5])
                sources = [c for c in state.by_code if state.parent[c] == (
                    parent if level > 1 else None) and shapely.area(shapely.intersection(
                        state.metric[c], geom)) > tolerance_m ** 2]
                key = plan.add(geom, keys.get(parent, parent), level,
                               r[4] or ("area" if level == 1 else "workshop"), sources,
                               "import", name=r[3], code=code)
                if code is not None:
                    keys[code] = key
                    level_of[code] = level
                pending.remove(r)
                progressed = True
            if not progressed:
                raise ValidationError(f"{file or 'layer'}: parent codes form a cycle",
                                      code="invalid_value", details={"file": file})
        # Grids retired because the layer dropped them: who holds their ground now.
        for code in missing:
            if code in plan.retire and state.parent[code] is None:
                for other, geom in reshaped.items():
                    if other not in plan.retire and shapely.area(shapely.intersection(
                            geom, state.geom[code])) > 0:
                        plan.links.append((other, code, "absorb"))

    return _run(session, park, "import", build, actor=actor, reason=reason or
                f"import {file}" if file else reason, if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m, dry_run=dry_run)


def adopt_proposal(session, park, gdf, *, actor, reason="", if_match=None,
                   allow_problems=False, dry_run=False, tolerance_m=TOLERANCE_M):
    """Replace the park's grids with a proposal (:func:`geodata.proposals.propose_grids`).

    Every active grid is retired; each proposed grid gets a new code
    continuing the park's sequence (draft codes are only placeholders);
    lineage links each new level-1 grid to the old ones it overlaps.
    """
    frame = gdf.to_crs(STORAGE_SRID) if gdf.crs is not None else gdf

    def build(state, plan):
        top = [c for c in state.by_code if state.parent[c] is None]
        tree = shapely.STRtree([state.metric[c] for c in top]) if top else None
        for c in top:
            plan.retire_tree(c)
        keys = {}
        for level in sorted(set(int(v) for v in frame["level"])):
            rows = frame[frame["level"] == level]
            for _, row in rows.iterrows():
                geom = _metric(state, row.geometry)
                sources = []
                if level == 1 and tree is not None:
                    for j in tree.query(geom, predicate="intersects"):
                        if shapely.area(shapely.intersection(state.metric[top[j]],
                                                             geom)) > 1.0:
                            sources.append(top[j])
                parent = None if level == 1 else keys[row["parent_code"]]
                keys[row["code"]] = plan.add(geom, parent, level, row["kind"], sources,
                                             "adopt")

    return _run(session, park, "adopt_proposal", build, actor=actor,
                reason=reason or "adopt a proposed grid", if_match=if_match,
                allow_problems=allow_problems, tolerance_m=tolerance_m, dry_run=dry_run)
