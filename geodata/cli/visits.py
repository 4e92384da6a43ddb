"""``gridmap visits ...``: field work (走访/巡查/回头看) from the shell.

``list`` and ``export`` show logged visits, ``due`` what is due (entries
whose period passed without the visits, and re-checks of closed hazards);
``link``/``unlink``/``links`` manage cadre–enterprise links (联系企业) and
``rule``/``rules`` the park's visit rules.  Days and weeks are Asia/Shanghai
(:mod:`geodata.periods`).  Errors exit 2 with one line on stderr; ``due``
exits 0 whatever it finds (it is a work list, not a check).
"""

import click

from geodata.cli.context import (FILE_PATH, PARK_CODE, PLAIN_INT, PlainIntRange, emit_table,
                                 format_option,
                                 pass_context)
from geodata.vocabulary import RULE_PERIODS, VISIT_KINDS


@click.group("visits")
def visits():
    """Field work: visits, patrols and re-checks; links and rules; what is due."""


#: Columns of ``visits list`` and ``export`` (key of the visit dict, header).
COLUMNS = [("id", "id"), ("local_date", "日期 date"), ("kind_name", "类型 kind"),
           ("actor", "人员 actor"), ("park", "园区 park"), ("grid", "网格 grid"),
           ("enterprise", "企业 enterprise"), ("credit_code", "信用代码 credit code"),
           ("hazard", "隐患 hazard"), ("occurred_at", "时间 occurred at (UTC)"),
           ("accuracy_m", "精度 accuracy m"), ("note", "说明 note"),
           ("findings", "发现 findings")]


def _rows(items, fmt):
    return [{**v, "grid": (v["grid"] or {}).get("code"),
             "enterprise": (v["enterprise"] or {}).get("name"),
             "credit_code": (v["enterprise"] or {}).get("credit_code"),
             "hazard": (v["hazard"] or {}).get("code"),
             "note": v["note"][:40] if fmt == "text" else v["note"]} for v in items]


def _filter_options(command):
    for option in reversed([
            click.option("--park", "park_code", type=PARK_CODE, help="Park code."),
            click.option("--grid", help="Grid code (its sub-grids included)."),
            click.option("--kind", type=click.Choice(VISIT_KINDS)),
            click.option("--from", "from_", metavar="ISO", help="From this date-time."),
            click.option("--to", metavar="ISO", help="Before this date-time.")]):
        command = option(command)
    return command


def _select(session, park_code, grid, kind, from_, to, limit, offset=0):
    from geodata.services import visits as service
    from geodata.services.parks import get_park

    park = get_park(session, park_code) if park_code else None
    return service.list_visits(session, park=park, grid=grid, kind=kind, from_=from_, to=to,
                               limit=limit, offset=offset)


@visits.command("list")
@_filter_options
@click.option("--limit", default=100, show_default=True, type=PlainIntRange(1, 1000))
@format_option(help="json: {total, visits: [...]} with every field.")
@pass_context
def list_(obj, park_code, grid, kind, from_, to, limit, fmt):
    """List visits, newest first."""
    from geodata.services import visits as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows, total = _select(session, park_code, grid, kind, from_, to, limit)
        items = service.visit_dicts(session, rows)
    emit_table(_rows(items, fmt), COLUMNS, fmt, json_value={"total": total, "visits": items})
    if fmt == "text":
        click.echo(f"{len(items)} of {total} visits", err=True)


@visits.command("export")
@_filter_options
@click.option("--out", type=FILE_PATH, help="Write to this file (UTF-8).")
@format_option(default="csv", help="csv (default), json or text; every visit, oldest last.")
@pass_context
def export(obj, park_code, grid, kind, from_, to, out, fmt):
    """Export every matching visit (all pages)."""
    from geodata.services import visits as service
    from geodata.storage import session_scope

    items = []
    with session_scope(obj.ready_engine()) as session:
        while True:
            rows, total = _select(session, park_code, grid, kind, from_, to,
                                  service.MAX_PAGE, len(items))
            items += service.visit_dicts(session, rows)
            if not rows or len(items) >= total:
                break
    emit_table(_rows(items, fmt), COLUMNS, fmt, out=out, json_value=items)
    if out:
        click.echo(f"exported {len(items)} visits to {out}", err=True)


DUE_COLUMNS = [("park", "园区 park"), ("what", "类型 kind"), ("enterprise", "企业 enterprise"),
               ("credit_code", "信用代码 credit code"), ("grid", "网格 grid"),
               ("user", "联系人 cadre"), ("missed", "未完成周期 missed period"),
               ("count", "完成 done/required")]


@visits.command("due")
@click.option("--park", "park_code", type=PARK_CODE, help="Park code (default: every park).")
@click.option("--on", "on", type=click.DateTime(["%Y-%m-%d"]),
              help="Local date to compute for (default: today in Asia/Shanghai).")
@format_option(help="json: {park: {visits_due, rechecks_due}}.")
@pass_context
def due(obj, park_code, on, fmt):
    """What is due: visits and patrols whose period passed without them, and re-checks."""
    from geodata.services import visits as service
    from geodata.services.parks import get_park, list_parks
    from geodata.storage import session_scope

    today = on.date() if on else None
    result, rows = {}, []
    with session_scope(obj.ready_engine()) as session:
        parks = [get_park(session, park_code)] if park_code else list_parks(session)
        for park in parks:
            entries = service.due(session, park, today=today)
            rechecks = service.rechecks_due(session, park, today=today)
            result[park.code] = {"visits_due": entries, "rechecks_due": rechecks}
            rows += [{"park": park.code, "what": e["kind_name"],
                      "enterprise": e["enterprise"]["name"],
                      "credit_code": e["enterprise"]["credit_code"],
                      "grid": e["enterprise"]["grid"], "user": e["user"] or "",
                      "missed": e["previous"], "count": f"{e['previous_done']}/{e['times']}"}
                     for e in entries]
            rows += [{"park": park.code, "what": "回头看", "enterprise": (
                h["enterprise"] or {}).get("name"), "credit_code": h["code"],
                "grid": (h["grid"] or {}).get("code"), "user": "",
                "missed": h["recheck_due_on"], "count": "0/1"} for h in rechecks]
    if not parks and fmt == "text":
        click.echo("no parks found", err=True)
    emit_table(rows, DUE_COLUMNS, fmt, json_value=result)


@visits.command("link")
@click.argument("username")
@click.argument("credit_code")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park of the enterprise.")
@click.option("--remove", is_flag=True, help="Remove the link instead.")
@pass_context
def link(obj, username, credit_code, park_code, remove):
    """Link cadre USERNAME to the enterprise CREDIT_CODE (联系企业), or --remove it."""
    from geodata.services import visits as service
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        park = get_park(session, park_code)
        if remove:
            service.unlink(session, park, username, credit_code)
        else:
            service.link(session, park, username, credit_code)
    click.echo(f"{username} {'unlinked from' if remove else 'linked to'} {credit_code.upper()}")


@visits.command("links")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@format_option()
@pass_context
def links(obj, park_code, fmt):
    """List the park's cadre–enterprise links."""
    from geodata.services import visits as service
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows = [{"user": user, "enterprise": ent.name, "credit_code": ent.credit_code}
                for user, ent in service.links(session, get_park(session, park_code))]
    emit_table(rows, [("user", "联系人 cadre"), ("enterprise", "企业 enterprise"),
                      ("credit_code", "信用代码 credit code")], fmt)


@visits.command("rule")
@click.argument("kind", type=click.Choice(VISIT_KINDS))
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@click.option("--enterprise", metavar="CREDIT_CODE",
              help="Only this enterprise (default: the park's rule).")
@click.option("--period", type=click.Choice(RULE_PERIODS), help="visit/patrol: per day or week.")
@click.option("--times", type=PLAIN_INT, help="visit/patrol: records per period (1-48).")
@click.option("--after-days", type=PLAIN_INT, help="recheck: days after closing (0-3650).")
@click.option("--delete", is_flag=True, help="Remove the rule (the default applies again).")
@pass_context
def rule(obj, kind, park_code, enterprise, period, times, after_days, delete):
    """Set (or --delete) the park's or one enterprise's rule for KIND.

    Examples: ``rule patrol --park FG --enterprise 9141... --period day --times 2``
    (每日2次巡查); ``rule visit --park FG --period week --times 1``;
    ``rule recheck --park FG --after-days 30`` (回头看 30 days after closing).
    """
    from geodata.services import visits as service
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        park = get_park(session, park_code)
        if delete:
            service.delete_rule(session, park, kind, enterprise=enterprise)
        else:
            service.set_rule(session, park, kind, enterprise=enterprise, period=period,
                             times=times, after_days=after_days)
    click.echo(f"{kind} rule {'deleted' if delete else 'set'} for "
               f"{enterprise.upper() if enterprise else 'park ' + park_code.upper()}")


@visits.command("rules")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@format_option()
@pass_context
def rules(obj, park_code, fmt):
    """List the park's visit rules (without one: a weekly visit per link, re-check at 30 days)."""
    from geodata.services import visits as service
    from geodata.services.parks import get_park
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows = [{"kind": r.kind, "enterprise": code or "(park)", "period": r.period or "",
                 "times": r.times or "", "after_days": "" if r.after_days is None else
                 r.after_days} for r, code in service.rules(session, get_park(session, park_code))]
    emit_table(rows, [("kind", "类型 kind"), ("enterprise", "企业 enterprise"),
                      ("period", "周期 period"), ("times", "次数 times"),
                      ("after_days", "销号后天数 after days")], fmt)


COMMANDS = (visits,)
