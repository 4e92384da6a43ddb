"""The ``gridmap`` command line.

Exit codes: 0 success; 1 a check found problems; 2 bad input, usage,
configuration or an unreachable database.  Errors are one line on stderr
that says what to fix; ``--debug`` shows the traceback instead.
"""

import sys

import click
from sqlalchemy.exc import SQLAlchemyError

from geodata import schema
from geodata.config import Settings
from geodata.errors import ConflictError, GridmapError, SchemaMissingError
from geodata.services.transfer import LAYERS, export_file, import_file
from geodata.storage import make_engine, safe_url, translate_db_error


class _Group(click.Group):
    """A click group that turns domain and database errors into exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (GridmapError, SQLAlchemyError) as exc:
            if ctx.meta.get("gridmap.debug"):
                raise
            error = exc if isinstance(exc, GridmapError) else translate_db_error(
                exc, ctx.meta.get("gridmap.url"))
            if error is None:
                error = GridmapError("database error: " + str(
                    getattr(exc, "orig", exc)).splitlines()[0])
            click.echo(f"error: {error.message}", err=True)
            ctx.exit(2)


class Context:
    """Settings and a lazily created engine shared by the subcommands."""

    def __init__(self, settings):
        self.settings = settings
        self._engine = None

    @property
    def engine(self):
        """The engine for ``--db`` (created on first use)."""
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url,
                                       busy_timeout_s=self.settings.sqlite_busy_timeout_s)
        return self._engine

    def close(self):
        """Dispose of the engine's connections (called when the command ends)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def ready_engine(self):
        """The engine, after checking that the schema exists and is current."""
        revision = schema.current_revision(self.engine)
        if revision is None:
            raise SchemaMissingError(
                f"{safe_url(self.settings.database_url)} has no gridmap schema: run "
                "`gridmap init-db` first")
        return self.engine


pass_context = click.make_pass_decorator(Context)


@click.group(cls=_Group)
@click.option("--db", "database_url", metavar="URL",
              help="Database URL (default $GRIDMAP_DATABASE_URL, else the SpatiaLite file "
                   "instance/gridmap.sqlite).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="gridmap")
@click.pass_context
def main(ctx, database_url, debug):
    """Grid service management (网格化服务管理) for industrial parks."""
    ctx.meta["gridmap.debug"] = debug
    settings = Settings.from_env(database_url=database_url)
    ctx.meta["gridmap.url"] = settings.database_url
    ctx.obj = Context(settings)
    ctx.call_on_close(ctx.obj.close)


@main.command("init-db")
@pass_context
def init_db(obj):
    """Create or upgrade the schema (Alembic migrations; nothing is dropped)."""
    schema.upgrade(obj.engine)
    click.echo(f"database ready at {safe_url(obj.settings.database_url)} "
               f"(schema {schema.current_revision(obj.engine)})")


@main.command("demo")
@click.option("--seed", type=int, default=None, help="Random seed (default: the fixed demo seed).")
@pass_context
def demo(obj, seed):
    """Create the schema if needed and load the demo park (扶沟县先进制造业开发区)."""
    from geodata.services.demo_loader import load_demo

    schema.upgrade(obj.engine)
    summary = load_demo(obj.engine, seed=seed)
    click.echo(summary)


@main.command("import")
@click.argument("layer", type=click.Choice(LAYERS))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--park", "park_code", help="Park code (needed unless there is one park).")
@click.option("--crs", help="CRS to assume when the file declares none, e.g. EPSG:4490.")
@click.option("--dry-run", is_flag=True, help="Validate and report, write nothing.")
@click.option("--diff", is_flag=True, help="grids: show added/reshaped/retired codes and the "
              "coverage after replacing the park's grids with FILE; write nothing.")
@click.option("--apply", "apply_", is_flag=True, help="grids: replace the park's grids with FILE "
              "as one versioned edit (refused on new gaps or overlaps).")
@click.option("--allow-problems", is_flag=True, help="With --apply: accept and record problems.")
@click.option("--actor", help="With --apply: who makes the edit.")
@click.option("--reason", default="", help="With --apply: why.")
@pass_context
def import_(obj, layer, file, park_code, crs, dry_run, diff, apply_, allow_problems, actor,
            reason):
    """Import LAYER from FILE (.geojson, .gpkg, .zip shapefile, .shp, .csv) in one transaction."""
    if diff or apply_:
        from geodata.cli_edit import import_layer

        if layer != "grids" or (diff and apply_):
            raise click.UsageError("--diff or --apply (one of them) work on grids only")
        return import_layer(obj, file, park_code, crs, diff, apply_, allow_problems, actor,
                            reason)
    report = import_file(obj.ready_engine(), layer, file, park_code=park_code, crs=crs,
                         dry_run=dry_run, max_features=obj.settings.max_features,
                         max_vertices=obj.settings.max_vertices)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(report.summary())


@main.command("export")
@click.argument("layer", type=click.Choice(LAYERS))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--park", "park_code", help="Park code (needed unless there is one park).")
@pass_context
def export(obj, layer, file, park_code):
    """Export LAYER to FILE; the format follows the extension."""
    count = export_file(obj.ready_engine(), layer, file, park_code=park_code)
    click.echo(f"exported {count} {layer} to {file}")


@main.command("hidden-units")
@click.option("--park", "park_code", required=True, help="Park code.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: an array of {name, credit_code, host, grid, reason}.")
@pass_context
def hidden_units(obj, park_code, fmt):
    """List hidden sub-units (厂中厂/园中园): sites inside another enterprise's site."""
    import json

    from geodata.hidden import REASONS, find_hidden_units
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        units = find_hidden_units(session, get_park(session, park_code))
    if fmt == "json":
        click.echo(json.dumps([u.to_dict() for u in units], ensure_ascii=False, indent=1))
        return
    for u in units:
        click.echo(f"{u.grid or '-'}\t{u.name} ({u.credit_code})\tin {u.host or '-'}"
                   f"\t{REASONS[u.reason]}")
    click.echo(f"{len(units)} hidden sub-unit candidates in park {park_code}", err=True)


def _write_output(text, out):
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        click.echo(text)


def _check_one(url, code, tolerance_m):
    """Check one stored park (runs in a worker process for ``--all --workers N``)."""
    from geodata.services.coverage import check_park
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            return check_park(session, get_park(session, code), tolerance_m=tolerance_m)
    finally:
        engine.dispose()


@main.command("check")
@click.option("--park", "park_code", help="Check a stored park (database mode).")
@click.option("--all", "all_parks", is_flag=True, help="Check every stored park, one line each.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes for --all.")
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
@click.option("--format", "fmt", type=click.Choice(["text", "json", "geojson"]),
              default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--require-parks", is_flag=True, help="With --all: exit 1 when there are none.")
@pass_context
def check(obj, park_code, all_parks, workers, park_file, grids_file, enterprises_file,
          tolerance_m, gap_width_m, crs, fmt, out, require_parks):
    """Check that grids tile the park edge to edge with no overlaps (横向到边、纵向到底).

    Exit 0 when the coverage is valid, 1 when problems are found, 2 on bad input.
    """
    import json

    modes = sum(map(bool, (park_code, all_parks, grids_file)))
    if modes != 1:
        raise click.UsageError("give exactly one of --park CODE, --all, or --grids-file FILE")
    if all_parks:
        from concurrent.futures import ProcessPoolExecutor

        from geodata.services.coverage import park_codes
        from geodata.storage import session_scope

        with session_scope(obj.ready_engine()) as session:
            codes = park_codes(session)
        if not codes:
            click.echo("no parks found")
            sys.exit(1 if require_parks else 0)
        url = obj.settings.database_url
        if workers > 1:
            with ProcessPoolExecutor(min(workers, len(codes))) as pool:
                results = list(pool.map(_check_one, [url] * len(codes), codes,
                                        [tolerance_m] * len(codes)))
        else:
            results = [_check_one(url, code, tolerance_m) for code in codes]
        lines = [json.dumps({"park": r["park"], "valid": r["valid"],
                             "summary": rep.summary_line()}, ensure_ascii=False)
                 if fmt != "text" else f"{r['park']}: {rep.summary_line()}"
                 for r, rep in results]
        _write_output("\n".join(lines), out)
        sys.exit(0 if all(r["valid"] for r, _ in results) else 1)
    if park_code:
        from geodata.services.coverage import check_park
        from geodata.services.parks import get_park
        from geodata.storage import session_scope

        with session_scope(obj.ready_engine()) as session:
            result, report = check_park(session, get_park(session, park_code),
                                        tolerance_m=tolerance_m)
    else:
        result, report = _check_files(park_file, grids_file, enterprises_file, crs,
                                      tolerance_m, gap_width_m, obj.settings)
    if fmt == "json":
        text = json.dumps(result, ensure_ascii=False)
    elif fmt == "geojson":
        text = json.dumps(report.to_geojson(), ensure_ascii=False)
    else:
        text = report.to_text()
    _write_output(text, out)
    sys.exit(0 if result["valid"] else 1)


def _check_files(park_file, grids_file, enterprises_file, crs, tolerance_m, gap_width_m,
                 settings):
    """File mode of ``gridmap check``: read the files (any importable format) and check."""
    import shapely

    from geodata import attributes as attr
    from geodata.coverage import check_coverage
    from geodata.io_ import read_layer

    limits = {"crs": crs, "max_features": settings.max_features,
              "max_vertices": settings.max_vertices}
    grids, _ = read_layer(grids_file, **limits)
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
        parks, _ = read_layer(park_file, **limits)
        park = shapely.union_all(parks.geometry.to_numpy())
    sites = None
    if enterprises_file:
        sites, _ = read_layer(enterprises_file, **limits)
    report = check_coverage(grids.geometry.to_numpy(), codes, parents, park=park,
                            enterprises=sites, tolerance_m=tolerance_m, gap_width_m=gap_width_m)
    return report.to_dict(), report


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64))
@pass_context
def serve(obj, host, port, threads):
    """Run the web service (map pages and JSON API) with the waitress WSGI server."""
    from waitress import serve as waitress_serve

    from webmap import create_app

    app = create_app({"DATABASE_URL": obj.settings.database_url})
    click.echo(f"serving {safe_url(obj.settings.database_url)} on http://{host}:{port}/",
               err=True)
    waitress_serve(app, host=host, port=port, threads=threads, ident="gridmap")


from geodata.cli_edit import edit as _edit_group, propose_grids_command  # noqa: E402
from geodata.cli_ledger import hazards, users  # noqa: E402  (after main exists)

main.add_command(hazards)
main.add_command(users)
main.add_command(_edit_group)
main.add_command(propose_grids_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
