"""``gridmap check`` (the coverage check) and ``gridmap hidden-units``."""

import contextlib
import json
import sys

import click

from geodata.cli.context import emit_table, format_option, pass_context, write_output
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


def _check_one(url, code, tolerance_m):
    """Check one stored park (a Dask task for ``--all --workers N`` or ``--scheduler``)."""
    from geodata.services.coverage import check_park
    from geodata.services.parks import get_park
    from geodata.storage import make_engine, session_scope

    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            return check_park(session, get_park(session, code), tolerance_m=tolerance_m)
    finally:
        engine.dispose()


@click.command("check")
@click.option("--park", "park_code", help="Check a stored park (database mode).")
@click.option("--all", "all_parks", is_flag=True, help="Check every stored park, one line each.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --park or --all: Dask worker processes on this machine "
                   "(a LocalCluster, one thread each); 1 checks in this process.")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="With --park or --all: run on this running Dask cluster.")
@click.option("--park-file", type=click.Path(dir_okay=False), help="Park boundary file.")
@click.option("--grids-file", type=click.Path(dir_okay=False),
              help="Grid cells file (columns code, optional parent_code).")
@click.option("--enterprises-file", type=click.Path(dir_okay=False),
              help="Enterprise sites file (columns name, credit_code).")
@click.option("--tolerance-m", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="Gaps and overlaps narrower than this (metres) are numeric noise.")
@click.option("--gap-width-m", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Without --park-file: report gaps narrower than this (metres).")
@click.option("--crs", help="CRS for files that declare none, e.g. EPSG:4547.")
@format_option(("text", "json", "geojson"))
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--require-parks", is_flag=True, help="With --all: exit 1 when there are none.")
@pass_context
def check(obj, park_code, all_parks, workers, scheduler, park_file, grids_file,
          enterprises_file, tolerance_m, gap_width_m, crs, fmt, out, require_parks):
    """Check that grids tile the park edge to edge with no overlaps (横向到边、纵向到底).

    Exit 0 when the coverage is valid, 1 when problems are found, 2 on bad input.
    """
    modes = sum(map(bool, (park_code, all_parks, grids_file)))
    if modes != 1:
        raise click.UsageError("give exactly one of --park CODE, --all, or --grids-file FILE")
    if grids_file and (workers > 1 or scheduler):
        raise click.UsageError("--workers and --scheduler work with --park or --all")
    if scheduler and workers > 1:
        raise click.UsageError("give --workers N or --scheduler URL, not both")
    if scheduler and not scheduler.startswith(("tcp://", "tls://")):
        raise click.UsageError(f"--scheduler: expected tcp://HOST:PORT, got {scheduler!r}")
    if all_parks:
        _check_all(obj, workers, scheduler, tolerance_m, fmt, out, require_parks)
    if park_code:
        from geodata.services.coverage import check_park
        from geodata.services.parks import get_park
        from geodata.storage import session_scope

        with session_scope(obj.ready_engine()) as session:
            park = get_park(session, park_code)
            with _dask_client(workers, scheduler) as client:
                result, report = check_park(session, park, tolerance_m=tolerance_m,
                                            client=client)
    else:
        result, report = _check_files(park_file, grids_file, enterprises_file, crs,
                                      tolerance_m, gap_width_m, obj.settings)
    if fmt == "json":
        text = json.dumps(result, ensure_ascii=False)
    elif fmt == "geojson":
        text = json.dumps(report.to_geojson(), ensure_ascii=False)
    else:
        text = "\n".join([report.to_text(), *rates_text(result.get("rates", {}))])
    write_output(text, out)
    sys.exit(0 if result["valid"] else 1)


@contextlib.contextmanager
def _dask_client(workers, scheduler):
    """A Dask client for ``--scheduler`` or ``--workers N`` (N > 1), else None.

    Without either, nothing of Dask is imported and the check runs in this
    process.
    """
    if not scheduler and workers == 1:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=15)
        except OSError as exc:
            raise GridmapError(f"cannot connect to the Dask scheduler {scheduler}: {exc}",
                               code="scheduler_unavailable") from exc
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _check_all(obj, workers, scheduler, tolerance_m, fmt, out, require_parks):
    """``check --all``: one line per stored park; exits 0 only when every park is valid.

    On Dask (``--workers N`` or ``--scheduler``) each park is one task.
    """
    from geodata.services.coverage import park_codes
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        codes = park_codes(session)
    if not codes:
        click.echo("no parks found")
        sys.exit(1 if require_parks else 0)
    url = obj.settings.database_url
    with _dask_client(min(workers, len(codes)), scheduler) as client:
        if client is None:
            results = [_check_one(url, code, tolerance_m) for code in codes]
        else:
            results = client.gather(client.map(_check_one, [url] * len(codes), codes,
                                               [tolerance_m] * len(codes), pure=False))
    lines = [json.dumps({"park": r["park"], "valid": r["valid"],
                         "summary": rep.summary_line()}, ensure_ascii=False)
             if fmt != "text" else f"{r['park']}: {rep.summary_line()}"
             for r, rep in results]
    write_output("\n".join(lines), out)
    sys.exit(0 if all(r["valid"] for r, _ in results) else 1)


def _check_files(park_file, grids_file, enterprises_file, crs, tolerance_m, gap_width_m,
                 settings):
    """File mode of ``gridmap check``: read the files (any importable format) and check."""
    import shapely

    from geodata import attributes as attr
    from geodata.coverage import check_coverage
    from geodata.formats import read_layer

    limits = {"crs": crs, **settings.read_limits()}
    grids, _ = read_layer(grids_file, layer="grids", **limits)
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
        parks, _ = read_layer(park_file, layer="parks", **limits)
        park = shapely.union_all(parks.geometry.to_numpy())
    sites = None
    if enterprises_file:
        sites, _ = read_layer(enterprises_file, layer="enterprises", **limits)
    report = check_coverage(grids.geometry.to_numpy(), codes, parents, park=park,
                            enterprises=sites, tolerance_m=tolerance_m, gap_width_m=gap_width_m)
    return report.to_dict(), report


@click.command("hidden-units")
@click.option("--park", "park_code", required=True, help="Park code.")
@format_option(help="json: an array of {name, credit_code, host, grid, reason}.")
@pass_context
def hidden_units(obj, park_code, fmt):
    """List hidden sub-units (厂中厂/园中园): sites inside another enterprise's site."""
    from geodata.hidden import REASONS, find_hidden_units
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        units = find_hidden_units(session, get_park(session, park_code))
    rows = [u.to_dict() for u in units]
    for row in rows:
        row["reason_text"] = REASONS[row["reason"]]
    emit_table(rows, [("grid", "网格 grid"), ("name", "名称 name"),
                      ("credit_code", "信用代码 credit code"), ("host", "所在企业 host"),
                      ("reason_text", "依据 reason")], fmt,
               json_value=[u.to_dict() for u in units])
    if fmt == "text":
        click.echo(f"{len(units)} hidden sub-unit candidates in park {park_code}", err=True)


COMMANDS = (check, hidden_units)
