"""The recipe of every edit (:func:`_run`).

Lock, versions, plan, arrangement, coverage before and after, write, and the
dependants that follow; see the package docstring.
"""

import json
from typing import NamedTuple

import numpy as np
import shapely
import sqlalchemy as sa
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from geodata import arrangement, domains, editing
from geodata import attributes as attr
from geodata.coverage import check_coverage
from geodata.crs import area_m2, to_metric, to_storage
from geodata.errors import ConflictError, NotFoundError, ValidationError
from geodata.gridcodes import grid_code, reading_order
from geodata.models import Grid, GridEdit, GridEditItem, GridLineage, GridStaff, Park
from geodata.models.base import to_element, to_shapes
from geodata.periods import local_today
from geodata.services.edits.common import EditOutcome, _Plan, Preview, _State, TOLERANCE_M
from geodata.services.grids import follow_grids
from geodata.storage import backend_name, begin_write, start_write
from geodata.versions import check_version, parse_if_match

_PROBLEM_CODES = {"gap": "would_leave_gap", "overlap": "grid_overlap",
                  "outside": "outside_park", "invalid": "invalid_geometry"}


def _lock(session, park, write=True):
    """Lock the park for this transaction and return it, freshly loaded."""
    if backend_name(session) == "sqlite" or not write:
        if write and not session.in_transaction():
            begin_write(session)
        query = sa.select(Park).where(Park.id == park.id)
    else:
        query = sa.select(Park).where(Park.id == park.id).with_for_update()
    locked = session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if locked is None:
        raise NotFoundError(f"no park {park.code!r}", details={"park": park.code})
    return locked


def _check_versions(state, if_match, expected, codes):
    park = state.park
    check_version(f"park {park.code}'s grids", park.version, parse_if_match(if_match), True,
                  required=False, details={"park": park.code})
    if expected is None:
        return
    if not isinstance(expected, dict):
        if len(codes) != 1:
            raise ValidationError("give expected versions as {code: version} for several grids",
                                  code="invalid_value")
        expected = {codes[0]: expected}
    for code, version in expected.items():
        # The version first: a stale edit of a grid retired since is a conflict (409/412),
        # not an unknown grid (404).
        key = attr.code(code)
        if key not in state.every:
            state.grid(code)  # 404
        # A string is an ETag from an If-Match header on the grid: a mismatch is 412, not 409.
        from_header = isinstance(version, str)
        check_version(f"grid {key}", state.every[key].version,
                      parse_if_match(version) if from_header else int(version), from_header,
                      details={"grid": key})


def _report(state, codes, parents, geoms):
    return check_coverage(geoms, codes, parents, park=state.park4326,
                          tolerance_m=state.tolerance_m, metric_epsg=state.epsg)


def _problem_geoms(report):
    yield "gap", [g["geometry"] for g in report.gaps], report.gaps
    yield "overlap", [o["geometry"] for o in report.overlaps], report.overlaps
    yield "outside", [o["geometry"] for o in report.outside_park], report.outside_park


def _new_problems(before, after, state):
    """Problems of ``after`` that ``before`` did not have (wider than the tolerance)."""
    found = []
    old = {kind: shapely.union_all(geoms) if geoms else None
           for kind, geoms, _ in _problem_geoms(before)}
    for kind, geoms, items in _problem_geoms(after):
        for item, geom in zip(items, geoms):
            fresh = geom if old[kind] is None else shapely.difference(geom, old[kind])
            fresh = editing.clean(fresh)
            if fresh.is_empty:
                continue
            metric = to_metric(fresh, state.epsg)
            wide = [p for p, m in zip(shapely.get_parts(fresh), shapely.get_parts(metric))
                    if not editing.is_narrow(m, state.tolerance_m)]
            if not wide:
                continue
            geom = shapely.union_all(wide)
            problem = {"problem": kind, "area_m2": round(float(area_m2(geom, state.epsg)), 3),
                       "geometry": shapely.geometry.mapping(geom)}
            if kind == "overlap":
                problem["codes"] = list(item["codes"])
            elif kind == "outside":
                problem["code"] = item["code"]
            else:
                problem["parent_code"] = item["parent_code"]
            found.append(problem)
    old_invalid = {i["code"] for i in before.invalid_grids}
    found += [{"problem": "invalid", "code": i["code"], "reason": i["reason"], "area_m2": None}
              for i in after.invalid_grids if i["code"] not in old_invalid]
    return found


def _refuse(problems):
    worst = max(problems, key=lambda p: p["area_m2"] or 0)
    total = sum(p["area_m2"] or 0 for p in problems if p["problem"] == worst["problem"])
    what = {"gap": "a new gap", "overlap": "a new overlap", "invalid": "an invalid grid",
            "outside": "ground outside the park or parent"}[worst["problem"]]
    where = worst.get("codes") or worst.get("code")
    where = f" ({', '.join(where) if isinstance(where, list) else where})" if where else ""
    raise ValidationError(
        f"the edit would leave {what} of {total:.2f} m²{where}; nothing was changed",
        code=_PROBLEM_CODES[worst["problem"]],
        details={"problems": problems, "area_m2": round(total, 3)})


def coverage_summary(report):
    """Counts and areas (m²) of a coverage report's problems, for edit answers."""
    return {"valid": bool(report.valid), "coverage_ratio": report.coverage_ratio,
            "gaps": len(report.gaps),
            "gap_area_m2": round(sum(g["area_m2"] for g in report.gaps), 3),
            "overlaps": len(report.overlaps),
            "overlap_area_m2": round(sum(o["area_m2"] for o in report.overlaps), 3),
            "outside": len(report.outside_park),
            "outside_area_m2": round(sum(o["area_m2"] for o in report.outside_park), 3)}


def _arrange(state, plan):
    """EPSG:4326 shapes of the plan's computed grids, from one noded arrangement per parent.

    Parents come before their sub-grids, which then tile the parent's final
    shape (:func:`geodata.arrangement.tile`).
    """
    metric = {c: g for c, g in plan.updates.items() if c not in plan.retire}
    parent_of = {c: state.parent[c] for c in metric}
    metric.update({n.key: n.geom for n in plan.new})
    parent_of.update({n.key: n.parent for n in plan.new})
    touched = {}
    for c in set(plan.updates) | plan.retire:
        touched.setdefault(state.parent[c], []).append(state.geom[c])
    out = {}
    pending = list(dict.fromkeys(parent_of.values()))
    while pending:
        for parent in list(pending):
            if parent in parent_of and parent not in out:
                continue  # its parent is computed too, and not yet
            keys = [k for k, p in parent_of.items() if p == parent]
            shapes = to_storage(np.array([metric[k] for k in keys], dtype=object), state.epsg)
            ground, others, keep = touched.get(parent, []), [], [state.park4326]
            if parent is not None:
                # Sub-grids tile their parent's final shape, whatever their old one was.
                keep = keep + ground
                ground = [out[parent] if parent in out else state.geom[parent]]
                others = [state.geom[c] for c in state.children.get(parent, [])
                          if c not in plan.updates and c not in plan.retire]
            out.update(arrangement.tile(dict(zip(keys, shapes)), ground, others=others,
                                        keep=keep, clip=parent is not None, epsg=state.epsg,
                                        tolerance_m=state.tolerance_m))
            pending.remove(parent)
    return out


def _multi(geom):
    geom = editing.clean(geom)
    return shapely.MultiPolygon(list(shapely.get_parts(geom)))


def _next_codes(state, plan):
    """Codes for the plan's new grids: the park's sequence continued, in reading order."""
    park_code = state.park.code
    taken = set(state.every)
    seqs = [int(c[len(park_code) + 1:]) for c in taken
            if c.startswith(park_code + "-") and c[len(park_code) + 1:].isdigit()]
    next_seq = max(seqs, default=0) + 1
    codes = {n.key: n.code for n in plan.new if n.code}
    taken_new = list(codes.values())
    if len(set(taken_new)) != len(taken_new):
        raise ConflictError("a new grid code is given twice", code="duplicate_grid_code")
    for code in taken_new:
        if code in taken:
            raise ConflictError(f"grid code {code} is already used in park {park_code} (codes "
                                "are never reused)", code="duplicate_grid_code",
                                details={"grid": code})
    taken = taken | set(taken_new)
    top = [n for n in plan.new if n.parent is None and not n.code]
    if top:
        rank = reading_order([n.geom for n in top])
        for n, r in zip(top, rank):
            codes[n.key] = _make_code(park_code, next_seq + int(r))
    by_parent = {}
    for n in plan.new:
        if n.parent is not None:
            by_parent.setdefault(n.parent, []).append(n)
    pending = list(by_parent)
    while pending:
        for parent in list(pending):
            parent_code = codes.get(parent, parent if parent in state.every else None)
            if parent_code is None:
                continue
            kids = [n for n in by_parent[parent] if not n.code]
            subs = [int(c[len(parent_code) + 1:]) for c in taken | set(codes.values())
                    if c.startswith(parent_code + "-") and c[len(parent_code) + 1:].isdigit()]
            first = max(subs, default=0) + 1
            for n, r in zip(kids, reading_order([n.geom for n in kids]) if kids else []):
                codes[n.key] = f"{parent_code}-{first + int(r):02d}"
            pending.remove(parent)
    for n in plan.new:
        if n.key not in codes:  # a parent outside this park's codes: cannot happen
            raise ValidationError("cannot number a new sub-grid", code="invalid_value")
        if codes[n.key] in taken and not n.code:
            raise ConflictError(f"grid code {codes[n.key]} is already used",
                                code="duplicate_grid_code", details={"grid": codes[n.key]})
        if len(codes[n.key]) > domains.GRID_CODE_MAX:
            # A sub-grid's code is its parent's plus "-NN": stored, it would fit no code
            # lookup (and no PostgreSQL column), so it is refused before anything is written.
            raise ValidationError(
                f"the new grid code {codes[n.key][:80]} would have {len(codes[n.key])} "
                f"characters, more than the {domains.GRID_CODE_MAX} of a grid code; give its "
                "parent a shorter code first", code="grid_code_too_long",
                details={"grid": codes[n.key], "max_length": domains.GRID_CODE_MAX})
    return codes


def _make_code(park_code, seq):
    try:
        return grid_code(park_code, seq)
    except ValueError:
        if seq > 999:
            raise ValidationError(f"park {park_code} has used all 999 grid numbers",
                                  code="grid_codes_exhausted") from None
        return f"{park_code}-{seq:03d}"


class _Computed(NamedTuple):
    """An edit planned and checked, ready to write (see :func:`_compute`)."""

    state: _State
    plan: _Plan
    codes: dict
    after: dict
    new_geoms: dict
    keep: list
    re_codes: list
    after_codes: list
    after_geoms: list
    after_report: object
    problems: list


def _stamp(state):
    """What an edit was computed from: the park's version and every grid's version and state."""
    return state.park.version, sorted((g.id, g.version, g.active_to) for g in state.every.values())


def _stored_stamp(session, park):
    """:func:`_stamp` of the stored park (``park`` freshly loaded under the lock)."""
    rows = session.execute(sa.select(Grid.id, Grid.version, Grid.active_to).where(
        Grid.park_id == park.id)).all()
    return park.version, sorted(tuple(r) for r in rows)


def _run(session, park, operation, build, *, actor, reason, if_match=None, expected=None,
         expected_codes=(), allow_problems=False, tolerance_m=TOLERANCE_M, dry_run=False):
    """Plan and check, then lock and write: the recipe of every edit.

    The geometry is computed in the caller's transaction without a lock (a
    snapshot on SQLite, the committed rows on PostgreSQL).  Then
    :func:`geodata.storage.start_write` and :func:`_lock` take the write
    lock, and the versions the plan was computed from are compared with the
    stored ones: when another writer changed the park's grids meanwhile, the
    edit is planned again under the lock, so it never overwrites what it did
    not see (a stale expected version or ``if_match`` is then 409/412).  The
    write lock is held only for the write, unless the caller's transaction
    was already a writer (then the whole edit runs under its lock, as before).

    With ``dry_run`` nothing is locked or written and a :class:`Preview` is returned.
    """
    if not actor or not str(actor).strip():
        raise ValidationError("an edit needs an actor (who makes it)", code="missing_field",
                              details={"field": "actor"})
    actor = domains.text(str(actor), "actor", kind="person")
    reason = domains.text(reason, "reason", kind="reason") or ""
    options = dict(if_match=if_match, expected=expected, expected_codes=expected_codes,
                   allow_problems=allow_problems, tolerance_m=tolerance_m)
    park = _lock(session, park, write=False)
    done = _compute(session, park, build, dry_run=dry_run, **options)
    if dry_run:
        return done
    seen = _stamp(done.state)
    start_write(session)
    park = _lock(session, park)
    if _stored_stamp(session, park) != seen:
        # Another writer changed the park while this edit was computed: plan it again on
        # what it will replace, now under the lock.
        done = _compute(session, park, build, **options)
    return _write(session, park, done, operation, actor=actor, reason=reason,
                  allow_problems=allow_problems)


def _compute(session, park, build, *, if_match, expected, expected_codes, allow_problems,
             tolerance_m, dry_run=False):
    """Load the park's grids, check versions, plan, arrange and check coverage.

    Returns a :class:`_Computed`, or a :class:`Preview` with ``dry_run``.
    Raises what :func:`_run` raises for a refused edit; writes nothing.
    """
    state = _State(session, park, tolerance_m)
    _check_versions(state, if_match, expected, [attr.code(c) for c in expected_codes])
    plan = _Plan(state)
    build(state, plan)
    if not (plan.updates or plan.exact or plan.retire or plan.new or plan.reactivate):
        if dry_run:  # a preview of no change is an answer, not an error
            report = _report(state, list(state.by_code),
                             [state.parent[c] for c in state.by_code],
                             [state.geom[c] for c in state.by_code])
            return Preview(added=[], reshaped=[], retired=[], coverage=coverage_summary(report),
                           problems=[], warnings=list(plan.warnings),
                           unchanged=len(state.by_code), report=report)
        raise ValidationError("the edit changes nothing", code="no_change")

    codes = _next_codes(state, plan)
    computed = _arrange(state, plan)
    for n in plan.new:
        if computed[n.key].is_empty:
            raise ValidationError("the edit would make an empty grid", code="empty_result")
    for code in [c for c in plan.updates if c not in plan.retire and computed[c].is_empty]:
        plan.retire_tree(code)
    for code in sorted(plan.keep & plan.retire):
        # Retiring a grid is its own edit, never the silent outcome of a reshape.
        raise ValidationError(
            f"the new shape of {code} leaves nothing of it inside its "
            f"{'parent ' + state.parent[code] if state.parent[code] else 'park'}; draw it "
            "there, or retire the grid", code="empty_result",
            details={"grid": code, "field": "geometry"})
    after = {c: computed[c] for c in plan.updates if c not in plan.retire}
    for code, geom in plan.exact.items():
        after[code] = _multi(geom)
    new_geoms = {n.key: computed[n.key] for n in plan.new}
    parent_of = {}
    for n in plan.new:
        parent_of[codes[n.key]] = codes.get(n.parent, n.parent)

    # Coverage before and after.
    keep = [c for c in state.by_code if c not in plan.retire]
    before_report = _report(state, list(state.by_code), [state.parent[c] for c in state.by_code],
                            [state.geom[c] for c in state.by_code])
    re_codes = list(plan.reactivate)
    re_parents = [state.every[c].parent.code if state.every[c].parent_id else None
                  for c in re_codes]
    after_codes = keep + [codes[n.key] for n in plan.new] + re_codes
    after_parents = ([state.parent[c] for c in keep] + [parent_of[codes[n.key]]
                                                        for n in plan.new] + re_parents)
    after_geoms = ([after.get(c, state.geom[c]) for c in keep] + [new_geoms[n.key]
                                                                  for n in plan.new]
                   + [_multi(plan.reactivate[c]) for c in re_codes])
    after_report = _report(state, after_codes, after_parents, after_geoms)
    problems = _new_problems(before_report, after_report, state)
    if dry_run:
        added = [codes[n.key] for n in plan.new]
        return Preview(added=added, reshaped=sorted((set(after) - plan.retire) | set(re_codes)),
                       retired=sorted(plan.retire), coverage=coverage_summary(after_report),
                       problems=problems, warnings=list(plan.warnings),
                       unchanged=len(keep) - len(set(after) - plan.retire), report=after_report,
                       grids={**{c: after[c] for c in after if c not in plan.retire},
                              **{codes[n.key]: new_geoms[n.key] for n in plan.new}})
    if problems and not allow_problems:
        _refuse(problems)
    return _Computed(state, plan, codes, after, new_geoms, keep, re_codes, after_codes,
                     after_geoms, after_report, problems)


def _write(session, park, done, operation, *, actor, reason, allow_problems):
    """Write a computed edit (the caller holds the park's write lock); return its outcome."""
    (state, plan, codes, after, new_geoms, keep, re_codes, after_codes, after_geoms,
     after_report, problems) = done

    today = local_today()
    items = []  # (grid, before wkb, before active, before version)
    for code in sorted(set(after) | plan.retire):
        grid = state.by_code[code]
        items.append((grid, shapely.to_wkb(state.geom[code]), True, grid.version))
        if code in plan.retire:
            grid.active_to = today
        else:
            grid.geom = to_element(after[code])
            grid.area_m2 = float(area_m2(after[code], state.epsg))
    for code in re_codes:
        grid = state.every[code]
        items.append((grid, shapely.to_wkb(to_shapes([grid.geom])[0]), False, grid.version))
        geom = _multi(plan.reactivate[code])
        grid.geom, grid.area_m2, grid.active_to = to_element(geom), float(
            area_m2(geom, state.epsg)), None
    new_rows = {}
    for n in plan.new:  # parents come before their children in plan.new
        code = codes[n.key]
        parent = new_rows.get(n.parent) or state.every.get(n.parent)
        grid = Grid(park_id=park.id, code=code, name=n.name or code, level=n.level,
                    kind=n.kind, geom=to_element(new_geoms[n.key]),
                    area_m2=float(area_m2(new_geoms[n.key], state.epsg)), active_from=today,
                    parent_id=parent.id if parent is not None else None)
        if parent is not None and parent.id is None:
            grid.parent = parent
        session.add(grid)
        new_rows[n.key] = grid
        items.append((grid, None, False, None))
    flag_modified(park, "name")  # every edit bumps the park's version (the layer's ETag)
    try:
        session.flush()
    except StaleDataError:
        raise ConflictError("the grids changed while the edit ran; reload and edit again",
                            code="stale_version") from None
    edit = GridEdit(park_id=park.id, actor=str(actor).strip()[:100], operation=operation,
                    reason=reason or "", park_version=park.version,
                    problems=json.dumps(problems, ensure_ascii=False) if problems else "")
    session.add(edit)
    session.flush()
    for grid, before_wkb, before_active, before_version in items:
        session.add(GridEditItem(
            edit_id=edit.id, grid_id=grid.id, code=grid.code, before_wkb=before_wkb,
            after_wkb=shapely.to_wkb(to_shapes([grid.geom])[0]), before_active=before_active,
            after_active=grid.active_to is None, before_version=before_version,
            after_version=grid.version))
    for n in plan.new:
        for source in dict.fromkeys(n.sources):
            session.add(GridLineage(grid_id=new_rows[n.key].id, source_id=state.every[source].id,
                                    edit_id=edit.id, relation=n.relation))
    for code, source, relation in plan.links:
        session.add(GridLineage(grid_id=state.every[code].id, source_id=state.every[source].id,
                                edit_id=edit.id, relation=relation))
    warnings = list(plan.warnings)
    levels = ([state.by_code[c].level for c in keep] + [n.level for n in plan.new]
              + [state.every[c].level for c in re_codes])
    _move_staff(session, state, plan.retire, after_codes, after_geoms, levels, warnings)
    _move_user_grids(session, state, plan.retire, after_codes, after_geoms, levels, warnings)
    follow_grids(session, park)
    summary = coverage_summary(after_report)
    added = [codes[n.key] for n in plan.new]
    reshaped = sorted((set(after) - plan.retire) | set(re_codes))
    grids = {}
    for code in added + reshaped:
        grid = new_rows.get(next((n.key for n in plan.new if codes[n.key] == code), None)) \
            or state.every[code]
        grids[code] = {"version": grid.version, "area_m2": round(grid.area_m2, 3),
                       "geometry": shapely.geometry.mapping(to_shapes([grid.geom])[0])}
    return EditOutcome(edit=edit, added=added, reshaped=reshaped, retired=sorted(plan.retire),
                       coverage=summary, problems=problems if allow_problems else [],
                       warnings=warnings, grids=grids)


def _move_staff(session, state, retired, after_codes, after_geoms, levels, warnings):
    """Staff of retired grids move to the grid holding most of its old ground.

    A grid of the same level first; when none holds any of it (a sub-grid
    whose ground went to a grid without sub-grids), the grid of any level
    that holds most, so nobody is left serving a retired grid.
    """
    if not retired:
        return
    ids = [state.by_code[c].id for c in retired]
    staff = session.execute(sa.select(GridStaff).where(GridStaff.grid_id.in_(ids))).scalars().all()
    if not staff:
        return
    targets = {}
    for code in retired:
        best = {}
        for c, g, level in zip(after_codes, after_geoms, levels):
            if c in retired:
                continue
            shared = shapely.area(shapely.intersection(g, state.geom[code]))
            same = level == state.by_code[code].level
            if shared > best.get(same, (None, 0.0))[1]:
                best[same] = (c, shared)
        targets[state.by_code[code].id] = (best.get(True) or best.get(False) or (None,))[0]
    moved = 0
    for person in staff:
        target = targets.get(person.grid_id)
        if target is None:
            continue
        row = state.by_code.get(target) or session.execute(sa.select(Grid).where(
            Grid.park_id == state.park.id, Grid.code == target)).scalar_one()
        person.grid_id = row.id
        moved += 1
    if moved:
        warnings.append(f"{moved} staff moved from retired grids; check their assignments")


def _move_user_grids(session, state, retired, after_codes, after_geoms, levels, warnings):
    """A grid member limited to a retired grid gets the grids in force now holding its ground.

    Those of the same level when any hold some of it, else those of any
    level.  Without it a member whose grid was split or merged could act
    nowhere (``outside_your_grids`` on the very ground they serve).  Ground
    under :data:`geodata.arrangement.MIN_PART_M2` (noise) does not count.
    """
    if not retired:
        return
    from geodata.arrangement import MIN_PART_M2
    from geodata.models import UserGrid

    ids = {state.by_code[c].id: c for c in retired}
    rows = session.execute(sa.select(UserGrid).where(UserGrid.grid_id.in_(ids))).scalars().all()
    if not rows:
        return
    geoms = np.asarray(after_geoms, dtype=object)
    heirs = {}
    for code in {ids[r.grid_id] for r in rows}:
        shared = shapely.intersection(geoms, state.geom[code])
        held = [(c, level) for c, g, level in zip(after_codes, shared, levels)
                if c not in retired and not g.is_empty
                and float(area_m2(g, state.epsg)) >= MIN_PART_M2]
        same = [c for c, level in held if level == state.by_code[code].level]
        heirs[code] = same or [c for c, _ in held]
    grid_ids = dict(session.execute(sa.select(Grid.code, Grid.id).where(
        Grid.park_id == state.park.id, Grid.code.in_({c for cs in heirs.values() for c in cs})
    )).all())
    held = set(session.execute(sa.select(UserGrid.user_id, UserGrid.grid_id).where(
        UserGrid.user_id.in_({r.user_id for r in rows}))).all())
    for row in rows:
        for code in heirs[ids[row.grid_id]]:
            if (row.user_id, grid_ids[code]) not in held:
                session.add(UserGrid(user_id=row.user_id, grid_id=grid_ids[code]))
                held.add((row.user_id, grid_ids[code]))
        session.delete(row)
    warnings.append(f"{len(rows)} grid members' grid limits moved from retired grids to the "
                    "grids now holding their ground; check them")
