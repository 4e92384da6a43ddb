"""``gridmap check`` (the coverage check) and ``gridmap hidden-units``."""

import json
import sys

import click

from geodata.cli.context import (FILE_PATH, PlainFloatRange, PlainIntRange, check_park_scope,
                                 emit_table,
                                 format_option, on_every_park, park_scope_options, pass_context,
                                 stored_park_codes, write_output)
from geodata.errors import ConflictError, GridmapError

#: The three 100% rates of database mode, as the text report names them.
RATE_NAMES = {
    "enterprises_in_grid": "企业有格 enterprises in a grid",
    "grids_staffed": "格中有人 grids with a chief and published contacts",
    "records_complete": "一表在手 enterprises with complete records",
}


def rates_text(rates):
    """Text lines of the three 100% rates (``-`` when there is nothing to count)."""
    return [f"{RATE_NAMES[key]}: " + ("-" if value is None else f"{value:.2%}")
            for key, value in rates.items()]


@click.command("check")
@park_scope_options
@click.option("--park-file", type=FILE_PATH, help="Park boundary file.")
@click.option("--grids-file", type=FILE_PATH,
              help="Grid cells file (columns code, optional parent_code).")
@click.option("--enterprises-file", type=FILE_PATH,
              help="Enterprise sites file (columns name, credit_code).")
@click.option("--tolerance-m", type=PlainFloatRange(min=0), default=0.01, show_default=True,
              help="Gaps and overlaps narrower than this (metres) are numeric noise.")
@click.option("--gap-width-m", type=PlainFloatRange(min=0), default=0.0, show_default=True,
              help="Without --park-file: report gaps narrower than this (metres).")
@click.option("--crs", help="CRS for files that declare none, e.g. EPSG:4547.")
@click.option("--threads", type=PlainIntRange(1, 64),
              help="Threads of this process for the geometry work (--park without Dask, or "
                   "files); the findings do not depend on it.  [default: the cores, at most 2; "
                   "1 runs everything in one thread]")
@format_option(("text", "json", "geojson"))
@click.option("--out", type=FILE_PATH, help="Write the report here.")
@click.option("--require-parks", is_flag=True, help="With --all: exit 1 when there are none.")
@pass_context
def check(obj, park_code, all_parks, workers, scheduler, park_file, grids_file,
          enterprises_file, tolerance_m, gap_width_m, crs, threads, fmt, out, require_parks):
    """Check that grids tile the park edge to edge with no overlaps (横向到边、纵向到底).

    Exit 0 when the coverage is valid, 1 when problems are found, 2 on bad input.
    """
    check_park_scope(park_code, all_parks, workers, scheduler, others=bool(grids_file))
    if grids_file and (workers > 1 or scheduler):
        raise click.UsageError("--workers and --scheduler work with --park or --all")
    if threads is not None and (all_parks or workers > 1 or scheduler):
        raise click.UsageError("--threads works with --park or files, without --all, "
                               "--workers or --scheduler")
    if all_parks:
        _check_all(obj, workers, scheduler, tolerance_m, fmt, out, require_parks)
    if park_code:
        from geodata.batch import dask_client
        from geodata.coverage import default_threads
        from geodata.services.coverage import check_park
        from geodata.services.parks import get_park
        from geodata.storage import session_scope

        with session_scope(obj.ready_engine()) as session:
            park = get_park(session, park_code)
            with dask_client(workers, scheduler) as client:
                # A running cluster's workers read the database themselves; a
                # LocalCluster shares this machine's cores, where reading here
                # and sending the cells measured 1.5-2x faster (docs/scaling.md).
                result, report = check_park(session, park, tolerance_m=tolerance_m,
                                            client=client, workers_read=bool(scheduler),
                                            threads=threads or default_threads())
    else:
        result, report = _check_files(park_file, grids_file, enterprises_file, crs,
                                      tolerance_m, gap_width_m, threads, obj.settings)
    if fmt == "json":
        text = json.dumps(result, ensure_ascii=False)
    elif fmt == "geojson":
        text = json.dumps(report.to_geojson(), ensure_ascii=False)
    else:
        text = "\n".join([report.to_text(), *rates_text(result.get("rates", {}))])
    write_output(text, out)
    sys.exit(0 if result["valid"] else 1)


def _check_all(obj, workers, scheduler, tolerance_m, fmt, out, require_parks):
    """``check --all``: one line per stored park; exits 0 only when every park is valid.

    ``--format json`` (or ``geojson``) prints one JSON array of ``{park,
    valid, summary}``, ``[]`` when no park is stored: stdout stays one JSON
    document for scripts, and "no parks found" goes to stderr.  On Dask
    (``--workers N`` or ``--scheduler``) each park is one task.
    """
    from geodata.batch import check_park_task

    codes = stored_park_codes(obj)
    if not codes:
        click.echo("no parks found", err=True)
        if fmt != "text":
            write_output("[]", out)
        sys.exit(1 if require_parks else 0)
    results = on_every_park(obj, check_park_task, codes, workers, scheduler, tolerance_m)
    if fmt == "text":
        text = "\n".join(f"{r['park']}: {rep.summary_line()}" for r, rep in results)
    else:
        text = json.dumps([{"park": r["park"], "valid": r["valid"],
                            "summary": rep.summary_line()} for r, rep in results],
                          ensure_ascii=False)
    write_output(text, out)
    sys.exit(0 if all(r["valid"] for r, _ in results) else 1)


def _check_files(park_file, grids_file, enterprises_file, crs, tolerance_m, gap_width_m,
                 threads, settings):
    """File mode of ``gridmap check``: read the files (any importable format) and check."""
    import shapely

    from geodata import attributes as attr
    from geodata.coverage import check_coverage, default_threads
    from geodata.formats import read_layer

    def read(path, layer):
        frame, warnings = read_layer(path, layer=layer, crs=crs, **settings.read_limits())
        for warning in warnings:  # on stderr: stdout is the report a script may parse
            click.echo(f"warning: {path}: {warning}", err=True)
        return frame

    grids = read(grids_file, "grids")
    if "code" not in grids:
        raise GridmapError(f"{grids_file}: grids need a 'code' column", code="missing_field")
    # Codes are reported as given (G22b stays G22b); the normalised form
    # (attributes.code) only finds duplicates and resolves parent codes.
    codes = [attr.text(c, index=i, field="code", file=grids_file)
             for i, c in enumerate(grids["code"])]
    given = {}
    for i, c in enumerate(codes):
        key = attr.code(c)
        if key in given:
            raise ConflictError(
                f"{grids_file}: features {given[key][0]} and {i}: grid codes {given[key][1]!r} "
                f"and {c!r} are the same code", code="duplicate_grid_code",
                details={"file": grids_file, "features": [given[key][0], i]})
        given[key] = (i, c)
    parents = [attr.code(c, index=i, field="parent_code", file=grids_file, required=False)
               for i, c in enumerate(grids.get("parent_code", [None] * len(grids)))]
    parents = [None if p is None else given.get(p, (None, p))[1] for p in parents]
    park = None
    if park_file:
        parks = read(park_file, "parks")
        park = shapely.union_all(parks.geometry.to_numpy())
    sites = None
    if enterprises_file:
        sites = read(enterprises_file, "enterprises")
    report = check_coverage(grids.geometry.to_numpy(), codes, parents, park=park,
                            enterprises=sites, tolerance_m=tolerance_m, gap_width_m=gap_width_m,
                            threads=threads or default_threads())
    return report.to_dict(), report


@click.command("hidden-units")
@park_scope_options
@format_option(help="json: an array of {park, name, credit_code, host, grid, reason}.")
@pass_context
def hidden_units(obj, park_code, all_parks, workers, scheduler, fmt):
    """List hidden sub-units (厂中厂/园中园): sites inside another enterprise's site.

    With --all every stored park is searched, one Dask task per park with
    --workers N or --scheduler URL.
    """
    from geodata.batch import hidden_units_task
    from geodata.hidden import REASONS

    check_park_scope(park_code, all_parks, workers, scheduler)
    codes = stored_park_codes(obj, park_code)
    units = [u for park in on_every_park(obj, hidden_units_task, codes, workers, scheduler)
             for u in park]
    rows = [{**u, "reason_text": REASONS[u["reason"]]} for u in units]
    emit_table(rows, [("park", "园区 park"), ("grid", "网格 grid"), ("name", "名称 name"),
                      ("credit_code", "信用代码 credit code"), ("host", "所在企业 host"),
                      ("reason_text", "依据 reason")], fmt, json_value=units)
    if fmt == "text":
        click.echo(f"{len(units)} hidden sub-unit candidates in "
                   + (f"park {park_code}" if park_code else f"{len(codes)} parks"), err=True)


COMMANDS = (check, hidden_units)
