"""``gridmap import`` and ``gridmap export``: layers from and to files."""

import json

import click

from geodata.cli.context import FILE_PATH, PARK_CODE, format_option, pass_context
from geodata.vocabulary import LAYERS


@click.command("import")
@click.argument("layer", type=click.Choice(LAYERS))
@click.argument("file", type=FILE_PATH)
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park code (needed unless there is one park).")
@click.option("--crs", help="CRS to assume when the file declares none, e.g. EPSG:4490.")
@click.option("--dry-run", is_flag=True, help="Validate and report, write nothing.")
@click.option("--diff", is_flag=True, help="grids: show added/reshaped/retired codes and the "
              "coverage after replacing the park's grids with FILE; write nothing.")
@click.option("--apply", "apply_", is_flag=True, help="grids: replace the park's grids with FILE "
              "as one versioned edit (refused on new gaps or overlaps).")
@click.option("--allow-problems", is_flag=True, help="With --apply: accept and record problems.")
@click.option("--actor", help="With --apply: who makes the edit.")
@click.option("--reason", default="", help="With --apply: why.")
@format_option(("text", "json"))
@pass_context
def import_(obj, layer, file, park_code, crs, dry_run, diff, apply_, allow_problems, actor,
            reason, fmt):
    """Import LAYER from FILE (.geojson, .gpkg, .zip or .shp shapefile, .csv, .xlsx) at once."""
    if diff or apply_:
        from geodata.cli.edit import import_layer

        if layer != "grids" or (diff and apply_):
            raise click.UsageError("--diff or --apply (one of them) work on grids only")
        return import_layer(obj, file, park_code, crs, diff, apply_, allow_problems, actor,
                            reason, fmt=fmt)
    from geodata.services.transfer import import_file

    report = import_file(obj.ready_engine(), layer, file, park_code=park_code, crs=crs,
                         dry_run=dry_run, **obj.settings.read_limits())
    for warning in report.warnings:  # also in the JSON; stderr is for whoever watches
        click.echo(f"warning: {warning}", err=True)
    if fmt == "json":
        from dataclasses import asdict

        click.echo(json.dumps({**asdict(report), "summary": report.summary()},
                              ensure_ascii=False))
        return
    click.echo(report.summary())


@click.command("export")
@click.argument("layer", type=click.Choice(LAYERS))
@click.argument("file", type=FILE_PATH)
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park code (needed unless there is one park).")
@format_option(("text", "json"))
@pass_context
def export(obj, layer, file, park_code, fmt):
    """Export LAYER to FILE; the format follows the extension."""
    from geodata.services.transfer import export_file

    count = export_file(obj.ready_engine(), layer, file, park_code=park_code)
    if fmt == "json":
        click.echo(json.dumps({"layer": layer, "file": str(file), "count": count},
                              ensure_ascii=False))
    else:
        click.echo(f"exported {count} {layer} to {file}")


COMMANDS = (import_, export)
