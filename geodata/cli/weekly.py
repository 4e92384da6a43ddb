"""``gridmap weekly-report``, ``gridmap weekly ...`` and ``gridmap assessment``.

The weekly routine (周汇报·周研判·周交办) and the staff assessment (考核)
from the shell.  Bad input (unknown park, a week that does not exist, an
output file that cannot be written) exits 2 with one line on stderr and
writes nothing; see docs/weekly.md.
"""

import click

from geodata.cli.context import pass_context


@click.command("weekly-report")
@click.option("--park", "park_code", required=True, help="Park code.")
@click.option("--week", required=True, help="ISO week in Asia/Shanghai, e.g. 2026-W48.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file: .xlsx, .html (printable) or .pdf.")
@pass_context
def weekly_report(obj, park_code, week, out):
    """Write the weekly report (周汇报) of PARK for WEEK to OUT."""
    from geodata.periods import week_bounds
    from geodata.services.parks import get_park
    from geodata.services.weekly import weekly_report as build
    from geodata.storage import session_scope
    from geodata.weekly_export import check_format, write_report

    # Checked before the database is read: a typo fails at once.
    week_bounds(week)
    check_format(out)
    with session_scope(obj.ready_engine()) as session:
        park = get_park(session, park_code)
        report = build(session, park, week)
        write_report(session, park, report, out)
    click.echo(f"wrote {out}: {report['park']['code']} {report['week']}", err=True)


COMMANDS = (weekly_report,)
