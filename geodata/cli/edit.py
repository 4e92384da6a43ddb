"""Grid editing commands: ``gridmap edit ...``, ``propose-grids`` and the QGIS round trip.

Every command calls one service of :mod:`geodata.services.edits` in one
transaction; errors become one line on stderr and exit 2 (see
:class:`geodata.cli.context.ErrorExitGroup`).  A refused edit (new gap, overlap or part
outside) names the reason and the area in m², and changes nothing.

Geometries given on the command line (``--line``, ``--geometry``) are WKT or
GeoJSON text, or ``@FILE`` for a file of one feature, in EPSG:4326.
"""

import getpass
import json
import os
import sys

import click

from geodata import domains
from geodata.cli.context import (FILE_PATH, PARK_CODE, PLAIN_INT, PlainFloatRange, PlainIntRange,
                                 format_option)
from geodata.errors import BadRequestError

_ACTOR_HELP = "Who makes the edit (default $GRIDMAP_ACTOR, else the login name)."


def _actor(value):
    """The acting user: ``--actor``, else ``$GRIDMAP_ACTOR``, else the login name."""
    return value or os.environ.get("GRIDMAP_ACTOR") or getpass.getuser()


def _geometry(text, what):
    """Parse WKT, GeoJSON text or ``@FILE`` (any importable format, first feature)."""
    import shapely

    if text.startswith("@"):
        from geodata.formats import read_layer

        frame, _ = read_layer(text[1:])
        if len(frame) == 0:
            raise BadRequestError(f"{text[1:]}: no feature for {what}", code="empty_geometry")
        return frame.geometry.iloc[0]
    from geodata.geometry import (check_geometries, geometry_from_geojson, parse_json,
                                  refuse_other_crs)

    if text.lstrip().startswith("{"):
        # The strict reader of files and of the API: shapely.geometry.shape() closed an
        # unclosed ring, took "116.0" as a coordinate and ignored Z and any crs member
        # (inline text is lon/lat; @FILE takes files in other CRSs).
        obj = parse_json(text, what)
        geometry = obj.get("geometry") if isinstance(obj, dict) and obj.get(
            "type") == "Feature" else obj
        if geometry is not obj:
            refuse_other_crs(obj, file=what, field="crs")
        warnings = set()
        geom = geometry_from_geojson(geometry, file=what, warnings=warnings)
        for warning in sorted(warnings):
            click.echo(f"warning: {warning}", err=True)
    else:
        try:
            geom = shapely.from_wkt(text)
        except shapely.errors.GEOSException as exc:
            raise BadRequestError(f"{what}: not WKT or GeoJSON ({exc})",
                                  code="invalid_geometry") from None
        if shapely.has_z(geom):
            click.echo("warning: dropped Z values: gridmap stores 2D geometries", err=True)
            geom = shapely.force_2d(geom)
    # An EMPTY ring or part would crash GEOS predicates in the edit service.
    check_geometries([geom], file=what)
    return geom


def _emit(outcome, fmt):
    """Print an edit's outcome: a summary (text) or its JSON object."""
    if fmt == "json":
        click.echo(json.dumps(outcome.to_dict(), ensure_ascii=False))
        return
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(outcome.summary())
    click.echo(f"park version {outcome.edit.park_version} (use --if-match for the next edit)")


def _edit(obj, park_code, operation, *args, **kwargs):
    """Run edit service ``operation`` on the park: compute, then one short write transaction.

    The session does not start as a writer, so the edit holds the write lock
    only while it writes (see :func:`geodata.services.edits.recipe._run`).
    """
    from geodata.services.transfer import resolve_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        park = resolve_park(session, park_code)
        return operation(session, park, *args, **kwargs)


_common = [
    click.option("--park", "park_code", type=PARK_CODE,
                 help="Park code (needed unless there is one park)."),
    click.option("--actor", help=_ACTOR_HELP),
    click.option("--reason", default="", help="Why (kept in the history)."),
    click.option("--if-match", type=PLAIN_INT,
                 help="Expected park version (412 when it moved on)."),
    format_option(("text", "json")),
]


def common(func):
    """Apply the options every edit command shares."""
    for option in reversed(_common):
        func = option(func)
    return func


@click.group("edit")
def edit():
    """Edit a park's grids; every edit is one versioned, coverage-checked transaction."""


@edit.command("draw")
@click.option("--geometry", required=True, help="The drawn polygon (WKT/GeoJSON/@FILE).")
@click.option("--name", help="Name of the new grid (default: its code).")
@click.option("--snap-m", type=PlainFloatRange(min=0), default=0.5, show_default=True)
@common
@click.pass_obj
def draw(obj, geometry, name, snap_m, park_code, actor, reason, if_match, fmt):
    """Add a grid over uncovered ground (clipped to the park and the gaps, snapped)."""
    from geodata.services.edits import draw_grid

    _emit(_edit(obj, park_code, draw_grid, _geometry(geometry, "--geometry"), name=name,
                snap_m=snap_m, actor=_actor(actor), reason=reason, if_match=if_match), fmt)


@edit.command("reshape")
@click.argument("code")
@click.option("--geometry", required=True, help="The new shape (WKT/GeoJSON/@FILE).")
@click.option("--neighbour", "neighbours", multiple=True,
              help="Only these neighbours give or take ground (default: all touching).")
@click.option("--expected-version", type=PLAIN_INT,
              help="The grid's version (409 when it moved on).")
@common
@click.pass_obj
def reshape(obj, code, geometry, neighbours, expected_version, park_code, actor, reason,
            if_match, fmt):
    """Move CODE's boundary; the neighbours give or take the same ground."""
    from geodata.services.edits import reshape_grid

    _emit(_edit(obj, park_code, reshape_grid, code, _geometry(geometry, "--geometry"),
                neighbours=list(neighbours) or None, expected_version=expected_version,
                actor=_actor(actor), reason=reason, if_match=if_match), fmt)


@edit.command("split")
@click.argument("code")
@click.option("--line", help="Split line (WKT/GeoJSON/@FILE, EPSG:4326).")
@click.option("--parts", type=PlainIntRange(2, 99), help="Or: this many parts of equal area.")
@click.option("--expected-version", type=PLAIN_INT,
              help="The grid's version (409 when it moved on).")
@common
@click.pass_obj
def split(obj, code, line, parts, expected_version, park_code, actor, reason, if_match, fmt):
    """Split CODE by a line or into N equal-area parts (new codes; sub-grids follow)."""
    from geodata.services.edits import split_grid

    if (line is None) == (parts is None):
        raise click.UsageError("give exactly one of --line or --parts")
    _emit(_edit(obj, park_code, split_grid, code,
                line=_geometry(line, "--line") if line else None, parts=parts,
                expected_version=expected_version, actor=_actor(actor), reason=reason,
                if_match=if_match), fmt)


@edit.command("merge")
@click.argument("codes", nargs=-1, required=True)
@common
@click.pass_obj
def merge(obj, codes, park_code, actor, reason, if_match, fmt):
    """Merge adjacent grids CODES into one new grid (staff, enterprises, hazards follow)."""
    from geodata.services.edits import merge_grids

    _emit(_edit(obj, park_code, merge_grids, list(codes), actor=_actor(actor), reason=reason,
                if_match=if_match), fmt)


@edit.command("retire")
@click.argument("code")
@click.option("--to", "to", help="The neighbour that takes the ground (default: longest border).")
@click.option("--expected-version", type=PLAIN_INT,
              help="The grid's version (409 when it moved on).")
@common
@click.pass_obj
def retire(obj, code, to, expected_version, park_code, actor, reason, if_match, fmt):
    """Retire CODE; its ground goes to neighbours; the code is never reused."""
    from geodata.services.edits import retire_grid

    _emit(_edit(obj, park_code, retire_grid, code, to=to, expected_version=expected_version,
                actor=_actor(actor), reason=reason, if_match=if_match), fmt)


@edit.command("absorb-slivers")
@click.option("--max-width-m", type=PlainFloatRange(min=0), default=1.0, show_default=True)
@click.option("--max-area-m2", type=PlainFloatRange(min=0), default=0.0, show_default=True)
@common
@click.pass_obj
def absorb(obj, max_width_m, max_area_m2, park_code, actor, reason, if_match, fmt):
    """Give sliver grids, parts and gaps to the neighbour with the longest shared border."""
    from geodata.services.edits import absorb_slivers

    _emit(_edit(obj, park_code, absorb_slivers, max_width_m=max_width_m,
                max_area_m2=max_area_m2, actor=_actor(actor), reason=reason,
                if_match=if_match), fmt)


@edit.command("restore")
@click.option("--edit", "edit_id", type=PlainIntRange(0, domains.ID_MAX), required=True,
              help="Restore as right after this edit (0: before the first edit).")
@click.option("--grid", "code", help="Restore only this grid (neighbours adjust).")
@click.option("--allow-problems", is_flag=True, help="Restore even if coverage gets worse.")
@common
@click.pass_obj
def restore(obj, edit_id, code, allow_problems, park_code, actor, reason, if_match, fmt):
    """Restore an earlier version of the park's grids (or of one grid) as a new edit."""
    from geodata.services.edits import restore_grid, restore_park

    if code:
        outcome = _edit(obj, park_code, restore_grid, code, edit_id, actor=_actor(actor),
                        reason=reason, if_match=if_match)
    else:
        outcome = _edit(obj, park_code, restore_park, edit_id, actor=_actor(actor),
                        reason=reason, if_match=if_match, allow_problems=allow_problems)
    _emit(outcome, fmt)


@edit.command("history")
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park code (needed unless there is one park).")
@click.option("--grid", "code", help="One grid's versions and lineage.")
@click.option("--at", "at_edit", type=PlainIntRange(0, domains.ID_MAX),
              help="Write the grids as right after this edit to --out.")
@click.option("--out", type=FILE_PATH, help="File for --at (any format).")
@format_option(("text", "json"))
@click.pass_obj
def history(obj, park_code, code, at_edit, out, fmt):
    """Show the park's edits, one grid's versions, or write an earlier state (--at/--out)."""
    if out and at_edit is None:  # else --out was ignored and a script found no file
        raise click.UsageError("--out needs --at EDIT (the history itself is printed)")
    import shapely

    from geodata.services import edits
    from geodata.services.transfer import resolve_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        park = resolve_park(session, park_code)
        if at_edit is not None:
            if not out:
                raise click.UsageError("--at needs --out FILE")
            from geodata.formats import write_layer

            frame = edits.grids_at(session, park, at_edit)
            write_layer(frame, out)
            click.echo(f"wrote {len(frame)} grids as after edit {at_edit} to {out}")
            return
        if code:
            rows = [{k: (shapely.geometry.mapping(v) if k == "geometry" else v)
                     for k, v in r.items()} for r in edits.grid_history(session, park, code)]
            data = {"grid": code, "versions": rows, "lineage": edits.lineage(session, park, code)}
            if fmt == "json":
                click.echo(json.dumps(data, ensure_ascii=False))
                return
            for r in rows:
                click.echo(f"edit {r['edit'] or '-'}\t{r['at'] or '-'}\t{r['actor'] or '-'}\t"
                           f"{r['operation']}\tv{r['version']}\t"
                           f"{'active' if r['active'] else 'retired'}\t{r['area_m2']:.1f} m²\t"
                           f"{r['reason']}")
            for link in data["lineage"]:
                click.echo(f"{link['code']} <- {link['source']} ({link['relation']}, "
                           f"edit {link['edit']})")
            return
        rows = edits.park_history(session, park)
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        click.echo("no edits yet")
    for r in rows:
        click.echo(f"edit {r['id']}\t{r['at']}\t{r['actor']}\t{r['operation']}\t"
                   f"v{r['park_version']}\t{', '.join(r['grids'][:8])}"
                   f"{' ...' if len(r['grids']) > 8 else ''}\t{r['reason']}")


@click.command("propose-grids")
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park code (needed unless there is one park).")
@click.option("--method", type=click.Choice(["voronoi", "regular", "enterprise"]),
              default="voronoi", show_default=True,
              help="voronoi: straight bisectors between balanced centres; regular: "
                   "rectangular blocks; enterprise: boundaries between enterprise lots.")
@click.option("--target-count", type=PlainIntRange(1, 999), required=True,
              help="Level-1 grids wanted.")
@click.option("--balance", type=click.Choice(["area", "enterprises", "employees"]),
              default="area", show_default=True,
              help="Balance cells by area, by number of enterprises or by employees.")
@click.option("--out", type=FILE_PATH,
              help="Write the draft here (.geojson, .gpkg, ...).")
@click.option("--adopt", is_flag=True, help="Adopt the proposal as one edit.")
@click.option("--seed", type=PlainIntRange(0), default=0, show_default=True)
@click.option("--actor", help=_ACTOR_HELP)
@click.option("--reason", default="", help="Why (kept in the history).")
@click.option("--if-match", type=PLAIN_INT, help="Expected park version (412 when it moved on).")
@format_option(("text", "json"), help="json: the statistics and the coverage check.")
@click.pass_obj
def propose_grids_command(obj, park_code, method, target_count, balance, out, adopt, seed,
                          actor, reason, if_match, fmt):
    """Propose grids that tile the park, every enterprise in one grid (a draft unless --adopt).

    Exit 0 when the draft passes the coverage check, 1 when it does not.
    """
    from geodata.coverage import check_coverage
    from geodata.formats import write_layer
    from geodata.proposals import propose_grids, proposal_stats
    from geodata.services.parks import park_boundary
    from geodata.services.sites import enterprises_frame
    from geodata.services.transfer import resolve_park
    from geodata.storage import session_scope

    engine = obj.ready_engine()
    with session_scope(engine) as session:
        park = resolve_park(session, park_code)
        boundary = park_boundary(park)
        sites = enterprises_frame(session, park)
        code, epsg = park.code, park.metric_epsg
    frame = propose_grids(boundary, sites, method, target_count, balance, park_code=code,
                          metric_epsg=epsg, seed=seed)
    report = check_coverage(frame.geometry.to_numpy(), frame["code"], frame["parent_code"],
                            park=boundary, enterprises=sites[["name", "credit_code", "geometry"]]
                            if len(sites) else None, metric_epsg=epsg)
    stats = proposal_stats(frame)
    valid = bool(report.valid and not report.enterprises["multi_grid"])
    if fmt == "json":
        result = {"park": code, "method": method, "balance": balance, "stats": stats,
                  "valid": valid, "check": report.to_dict(), "out": out, "adopted": None}
    else:
        click.echo(f"proposal for {code} ({method}, balance {balance}): {stats['cells']} "
                   f"grids, {stats['sub_grids']} sub-grids; area min/median/max "
                   f"{stats['area_min_m2']:.0f}/{stats['area_median_m2']:.0f}/"
                   f"{stats['area_max_m2']:.0f} m², CV {stats['cv_area']}; "
                   f"{report.summary_line()}")
    if out:
        write_layer(frame, out)
        if fmt == "text":
            click.echo(f"draft written to {out}")
    if adopt:
        from geodata.services.edits import adopt_proposal

        outcome = _edit(obj, code, adopt_proposal, frame, actor=_actor(actor),
                        reason=reason, if_match=if_match)
        if fmt == "json":
            result["adopted"] = outcome.to_dict()
        else:
            _emit(outcome, "text")
    if fmt == "json":
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
    sys.exit(0 if valid else 1)


def import_layer(obj, file, park_code, crs, diff, apply, allow_problems, actor, reason,
                 if_match=None, fmt="text"):
    """``gridmap import grids FILE --diff/--apply``: the QGIS round trip as one edit.

    ``--diff`` prints added, reshaped and retired codes and the coverage after
    the change, writes nothing, and exits 1 when ``--apply`` would be refused.
    """
    from geodata.formats import read_layer
    from geodata.services.edits import apply_layer
    from geodata.services.transfer import resolve_park
    from geodata.storage import session_scope

    engine = obj.ready_engine()
    with session_scope(engine) as session:
        park_code = resolve_park(session, park_code).code
    frame, warnings = read_layer(file, crs=crs, layer="grids", **obj.settings.read_limits())
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if diff:
        with session_scope(engine) as session:
            preview = apply_layer(session, resolve_park(session, park_code), frame,
                                  actor=_actor(actor), reason=reason, file=str(file),
                                  dry_run=True, if_match=if_match)
            session.rollback()
        if fmt == "json":
            click.echo(json.dumps({
                "added": preview.added, "reshaped": preview.reshaped,
                "retired": preview.retired, "unchanged": preview.unchanged,
                "coverage_after": preview.report.summary_line(),
                "problems": preview.problems, "warnings": preview.warnings},
                ensure_ascii=False, default=str))
            sys.exit(1 if preview.problems else 0)
        for warning in preview.warnings:
            click.echo(f"warning: {warning}", err=True)
        if not (preview.added or preview.reshaped or preview.retired):
            click.echo("no changes")
        click.echo(f"added: {', '.join(preview.added) or '-'}")
        click.echo(f"reshaped: {', '.join(preview.reshaped) or '-'}")
        click.echo(f"retired: {', '.join(preview.retired) or '-'}")
        click.echo(f"unchanged: {preview.unchanged}")
        click.echo(f"coverage after: {preview.report.summary_line()}")
        for p in preview.problems:
            where = p.get("codes") or p.get("code") or p.get("parent_code") or ""
            click.echo(f"new {p['problem']}: {p['area_m2']} m² {where}")
        if preview.problems:
            click.echo("--apply would be refused (use --allow-problems to record them)")
        sys.exit(1 if preview.problems else 0)
    outcome = _edit(obj, park_code, apply_layer, frame, actor=_actor(actor), reason=reason,
                    file=str(file), allow_problems=allow_problems, if_match=if_match)
    _emit(outcome, fmt)
    if outcome.problems:
        click.echo(f"recorded {len(outcome.problems)} coverage problems in edit "
                   f"{outcome.edit.id}", err=True)


COMMANDS = (edit, propose_grids_command)
