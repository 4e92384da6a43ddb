"""``gridmap weekly-report``, ``gridmap weekly ...`` and ``gridmap assessment``.

The weekly routine (周汇报·周研判·周交办) and the staff assessment (考核)
from the shell.  Bad input (unknown park, a week that does not exist, an
output file that cannot be written) exits 2 with one line on stderr and
writes nothing; see docs/weekly.md.
"""

import click

from geodata.cli.context import FILE_PATH, PARK_CODE, emit_table, format_option, pass_context


@click.command("weekly-report")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--week", required=True, help="ISO week in Asia/Shanghai, e.g. 2026-W48.")
@click.option("--out", required=True, type=FILE_PATH,
              help="Output file: .xlsx, .html (printable) or .pdf.")
@pass_context
def weekly_report(obj, park_code, week, out):
    """Write the weekly report (周汇报) of PARK for WEEK to OUT."""
    from geodata.periods import week_bounds
    from geodata.services.parks import get_park
    from geodata.services.weekly import weekly_report as build
    from geodata.storage import session_scope
    from geodata.weekly_export import TABLE_ROWS, check_format, write_report

    # Checked before the database is read: a typo fails at once.
    week_bounds(week)
    suffix = check_format(out)
    with session_scope(obj.ready_engine()) as session:
        park = get_park(session, park_code)
        # The XLSX holds every row; the HTML and PDF print a page of them.
        report = build(session, park, week, rows=None if suffix == ".xlsx" else TABLE_ROWS)
        write_report(session, park, report, out)
    click.echo(f"wrote {out}: {report['park']['code']} {report['week']}", err=True)


@click.group("weekly")
def weekly():
    """周研判·周交办: the week's assignments (a hazard task given to an owner with a deadline)."""


@weekly.command("assign")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--week", required=True, help="ISO week of the meeting, e.g. 2026-W48.")
@click.option("--hazard", "hazard_ref", help="A hazard to task: id or ledger code (YH2026-0012).")
@click.option("--request", "request_ref",
              help="A request to task: id or ledger code (SQ2026-0012).")
@click.option("--enterprise", help="Create a request for this enterprise (credit code) and "
                                   "task it; needs --category and --description.")
@click.option("--category", help="The new request's category (用工, 用地, 融资 ...).")
@click.option("--description", help="The new request's description.")
@click.option("--source", default="visit", show_default=True,
              help="The new request's source: visit, phone, walk_in or platform.")
@click.option("--owner", required=True, help="User name of the person responsible.")
@click.option("--deadline", required=True, help="YYYY-MM-DD.")
@click.option("--note", default="", help="What is asked (交办内容).")
@click.option("--as", "username", required=True, help="User making the assignment.")
@pass_context
def assign(obj, park_code, week, hazard_ref, request_ref, enterprise, category, description,
           source, owner, deadline, note, username):
    """Assign a hazard or a request (周交办) to OWNER with a DEADLINE; prints the assignment id.

    Name an existing hazard (--hazard) or request (--request), or create the
    request in the same transaction (--enterprise, --category, --description).
    """
    from geodata.cli.hazards import _actor
    from geodata.services import ledger, requests
    from geodata.services.parks import get_park
    from geodata.services.weekly import assign as make
    from geodata.storage import session_scope

    if sum(x is not None for x in (hazard_ref, request_ref, enterprise)) != 1:
        raise click.UsageError("give one of --hazard, --request or --enterprise")
    with session_scope(obj.ready_engine(), write=True) as session:
        park = get_park(session, park_code)
        actor = _actor(session, username)
        hazard = request = None
        if hazard_ref is not None:
            ref = hazard_ref.strip()
            hazard = (ledger.get_hazard(session, int(ref)) if ref.isascii() and ref.isdigit()
                      else ledger.get_hazard_by_code(session, ref, park))
        elif request_ref is not None:
            ref = request_ref.strip()
            request = (requests.get_request(session, int(ref)) if ref.isascii()
                       and ref.isdigit() else requests.get_request_by_code(session, ref, park))
        else:
            request = requests.create_request(session, park, enterprise=enterprise,
                                              category=category, description=description,
                                              source=source, actor=actor)
        item = make(session, park, week, actor=actor, owner=owner, deadline=deadline,
                    hazard=hazard, request=request, note=note)
        ident = item.id
    click.echo(ident)


@weekly.command("assignments")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--week", help="Only this ISO week's assignments.")
@format_option(("text", "json", "csv", "xlsx"), help="xlsx needs --out.")
@click.option("--out", type=FILE_PATH, help="Write to this file.")
@pass_context
def assignments(obj, park_code, week, fmt, out):
    """List (or export) the 周交办 assignments with their progress."""
    from geodata.services.parks import get_park
    from geodata.services.weekly import assignment_dicts, list_assignments
    from geodata.storage import session_scope
    from geodata.weekly_export import ASSIGNMENT_COLUMNS, display, table_xlsx, write_file

    if fmt == "xlsx" and not out:
        raise click.UsageError("--format xlsx needs --out FILE")
    with session_scope(obj.ready_engine()) as session:
        rows = assignment_dicts(session, list_assignments(session, get_park(session, park_code),
                                                          week))
    if fmt == "xlsx":
        write_file(out, table_xlsx("周交办", ASSIGNMENT_COLUMNS, rows))
        return
    shown = rows if fmt == "json" else [{k: display(v) for k, v in r.items()} for r in rows]
    emit_table(shown, ASSIGNMENT_COLUMNS, fmt, out=out)


#: (key, header) of the assessment table, in column order.
ASSESSMENT_COLUMNS = [
    ("user", "用户 user"), ("name", "姓名 name"), ("visits_done", "已走访 visits done"),
    ("visits_due", "应走访 visits due"), ("hazards_found", "发现隐患 hazards found"),
    ("closure_rate", "销号率 closure rate"), ("hazards_overdue", "逾期隐患 hazards overdue"),
    ("requests", "负责诉求 requests"), ("resolution_rate", "问题解决率 resolution rate"),
    ("requests_overdue", "逾期诉求 requests overdue"), ("follow_ups", "回访 follow-ups"),
    ("satisfaction_rate", "企业满意度 satisfaction rate"), ("score", "考核得分 score"),
]


@click.command("assessment")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--from", "first", required=True, help="First local day, YYYY-MM-DD.")
@click.option("--to", "last", required=True, help="Last local day, YYYY-MM-DD.")
@format_option(("text", "json", "xlsx"), help="xlsx needs --out.")
@click.option("--out", type=FILE_PATH, help="Write to this file.")
@pass_context
def assessment(obj, park_code, first, last, fmt, out):
    """Staff assessment (考核) of PARK from FROM to TO: figures and weighted score per person."""
    import json

    from geodata.services.assessment import assessment as build, parse_period
    from geodata.services.parks import get_park
    from geodata.storage import session_scope
    from geodata.weekly_export import percent, table_xlsx, write_file

    if fmt == "xlsx" and not out:
        raise click.UsageError("--format xlsx needs --out FILE")
    parse_period(first, last)  # a bad period fails before the database is read
    with session_scope(obj.ready_engine()) as session:
        result = build(session, get_park(session, park_code), first, last)
    if fmt == "json":
        _write_text(json.dumps(result, ensure_ascii=False, indent=2), out)
        return
    rated = ("closure_rate", "resolution_rate", "satisfaction_rate")
    rows = [{**p, **{k: percent(p[k]) for k in rated},
             "score": "—" if p["score"] is None else p["score"]} for p in result["staff"]]
    if fmt == "xlsx":
        write_file(out, table_xlsx("考核", ASSESSMENT_COLUMNS, rows))
        return
    emit_table(rows, ASSESSMENT_COLUMNS, "text", out=out)
    click.echo(f"{result['park']['code']} {result['from']}..{result['to']} (as of "
               f"{result['as_of']}); weights " + ", ".join(
                   f"{k} {v:g}" for k, v in result["weights"].items()), err=True)


@click.command("assessment-weights")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--set", "pairs", multiple=True, metavar="METRIC=WEIGHT",
              help="visits, closure, resolution, satisfaction (points) or overdue (points "
                   "off per overdue item), 0..100; repeat for several.")
@pass_context
def assessment_weights(obj, park_code, pairs):
    """Show (or --set) the park's assessment weights; unset ones are the documented defaults."""
    from geodata.services.assessment import DEFAULT_WEIGHTS, set_weights, weights
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    values = {}
    for pair in pairs:
        metric, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"--set takes METRIC=WEIGHT, got {pair!r}")
        values[metric.strip()] = value.strip()
    with session_scope(obj.ready_engine(), write=bool(values)) as session:
        park = get_park(session, park_code)
        shown = set_weights(session, park, values) if values else weights(session, park)
    for metric, weight in shown.items():
        note = " (default)" if weight == DEFAULT_WEIGHTS[metric] else ""
        click.echo(f"{metric}\t{weight:g}{note}")


def _write_text(text, out):
    """Print ``text`` or write it to ``out``; an unwritable file is a one-line error."""
    if out:
        from geodata.weekly_export import write_file

        write_file(out, (text + "\n").encode("utf-8"))
    else:
        click.echo(text)


COMMANDS = (weekly_report, weekly, assessment, assessment_weights)
