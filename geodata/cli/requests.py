"""``gridmap requests ...``: the request ledger (诉求台账) from the shell.

As ``gridmap hazards``: errors exit 2 with one line on stderr, moving a
request needs ``--as USER`` (checked against that user's role and grids,
recorded under their name), and a request is named by its id or its ledger
number (``SQ2026-0012``).  "Today" is the date in Asia/Shanghai.
"""

import json

import click

from geodata.cli.context import (FILE_PATH, PARK_CODE, PlainIntRange, echo_moved, emit_table,
                                 format_option,
                                 pass_context)
from geodata.cli.hazards import _actor
from geodata.vocabulary import (REQUEST_SOURCES, REQUEST_STATE_NAMES, REQUEST_STATUSES,
                                SATISFACTION_LEVELS, SATISFACTION_NAMES, SOURCE_NAMES)

_STATES = [*REQUEST_STATUSES, *REQUEST_STATE_NAMES.values()]
_SOURCES = [*REQUEST_SOURCES, *SOURCE_NAMES.values()]
_SATISFACTION = [*SATISFACTION_LEVELS, *SATISFACTION_NAMES.values()]


def _park(session, code):
    from geodata.services.parks import get_park

    return get_park(session, code) if code else None


def _request(session, ref, park=None):
    """The request named by ``ref``: a numeric id or a ledger number (``SQ2026-0012``)."""
    from geodata.services import requests as service

    ref = ref.strip()
    if ref.isascii() and ref.isdigit():
        return service.get_request(session, int(ref))
    return service.get_request_by_code(session, ref, park)


def _filters(session, park_code, status, category, source, overdue):
    return {"park": _park(session, park_code), "status": status, "category": category,
            "source": source, "overdue": True if overdue else None}


def _filter_options(command):
    for option in reversed((
            click.option("--park", "park_code", type=PARK_CODE, help="Park code."),
            click.option("--status", type=click.Choice(_STATES),
                         help="accepted/assigned/in_progress/resolved/followed_up "
                              "(or 受理/交办/办理/办结/回访)."),
            click.option("--category", help="A request category of the park (用工, 融资 ...)."),
            click.option("--source", type=click.Choice(_SOURCES),
                         help="visit/phone/walk_in/platform (or 走访/电话/上门/平台)."),
            click.option("--overdue", is_flag=True,
                         help="Only requests not resolved and past their deadline."))):
        command = option(command)
    return command


@click.group("requests")
def requests():
    """The request ledger (诉求台账): list, show, transition, export, categories."""


#: Columns of ``requests list`` (key of the row dict, header).
LIST_COLUMNS = [("id", "id"), ("code", "编号 code"), ("state", "状态 state"),
                ("status", "status"), ("enterprise", "企业 enterprise"), ("grid", "网格 grid"),
                ("category", "类别 category"), ("deadline", "期限 deadline"),
                ("late", "逾期 overdue"), ("description", "内容 description")]


@requests.command("list")
@_filter_options
@click.option("--limit", default=100, show_default=True, type=PlainIntRange(1, 1000))
@format_option(help="json: {total, requests: [...]} with every field.")
@pass_context
def list_(obj, park_code, status, category, source, overdue, limit, fmt):
    """List requests by park and date received."""
    from geodata.services import requests as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows, total = service.list_requests(
            session, limit=limit,
            **_filters(session, park_code, status, category, source, overdue))
        items = service.request_dicts(session, rows)
    table = [{**r, "state": REQUEST_STATE_NAMES[r["status"]],
              "enterprise": r["enterprise"]["name"], "grid": (r["grid"] or {}).get("code"),
              "late": "逾期" if r["overdue"] else "",
              "description": r["description"][:40] if fmt == "text" else r["description"]}
             for r in items]
    emit_table(table, LIST_COLUMNS, fmt, json_value={"total": total, "requests": items})
    if fmt == "text":
        click.echo(f"{len(items)} of {total} requests", err=True)


@requests.command("show")
@click.argument("ref", metavar="REQUEST")
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park of a ledger number used in several parks.")
@format_option(("text", "json"))
@pass_context
def show(obj, ref, park_code, fmt):
    """Show REQUEST (id or ledger number such as SQ2026-0012) with its history."""
    from geodata.services import requests as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        found = _request(session, ref, _park(session, park_code))
        (item,) = service.request_dicts(session, [found])
        item["history"] = service.event_dicts(service.history(session, found.id))
    if fmt == "json":
        click.echo(json.dumps(item, ensure_ascii=False, indent=2))
        return
    click.echo(f"{item['code']} (id {item['id']}) {item['status_name']} {item['status']}, "
               f"version {item['version']}{'  逾期 overdue' if item['overdue'] else ''}")
    click.echo(f"企业 enterprise: {item['enterprise']['name']} "
               f"({item['enterprise']['credit_code']})")
    click.echo(f"网格 grid: {(item['grid'] or {}).get('code') or '-'}")
    for key, label in (("category", "类别 category"), ("source_name", "来源 source"),
                       ("received_date", "受理 received"), ("department", "交办单位 department"),
                       ("responsible", "责任人 responsible"), ("deadline", "期限 deadline"),
                       ("description", "内容 description"), ("resolution", "办理结果 resolution"),
                       ("satisfaction_name", "满意度 satisfaction")):
        click.echo(f"{label}: {item.get(key) or '-'}")
    click.echo("")
    emit_table(item["history"], [("at", "时间 at"), ("actor", "人员 actor"),
                                 ("action", "动作 action"), ("from", "从 from"),
                                 ("to", "到 to"), ("satisfaction", "满意度 satisfaction"),
                                 ("note", "说明 note")], "text")


@requests.command("transition")
@click.argument("ref", metavar="REQUEST")
@click.argument("target", type=click.Choice(_STATES))
@click.option("--as", "username", required=True, help="The user taking the step.")
@click.option("--version", type=PlainIntRange(1, 2**31 - 1),
              help="The version you read (default: the current one).")
@click.option("--note", default="", help="What was done (办结) or why (不满意).")
@click.option("--department", help="交办单位 (to assign).")
@click.option("--responsible", help="责任人 (to assign).")
@click.option("--deadline", type=click.DateTime(["%Y-%m-%d"]), help="办理期限 (to assign).")
@click.option("--satisfaction", type=click.Choice(_SATISFACTION),
              help="回访 answer; 不满意 reopens the request.")
@format_option(("text", "json"))
@pass_context
def transition(obj, ref, target, username, version, note, department, responsible, deadline,
               satisfaction, fmt):
    """Move REQUEST (id or ledger number) to TARGET (交办/办理/办结/回访 or English)."""
    from geodata.services import requests as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        actor = _actor(session, username)
        found = _request(session, ref)
        moved = service.transition(
            session, found.id, target, actor=actor,
            expected_version=found.version if version is None else version, note=note,
            department=department, responsible=responsible,
            deadline=deadline.date() if deadline else None, satisfaction=satisfaction)
        result = {"id": moved.id, "code": moved.code, "status": moved.status,
                  "version": moved.version}
    echo_moved(result, fmt)


@requests.command("export")
@click.argument("file", type=FILE_PATH)
@_filter_options
@pass_context
def export(obj, file, park_code, status, category, source, overdue):
    """Export the ledger (诉求台账) to FILE: .csv (UTF-8 with BOM) or .xlsx, Chinese headers."""
    from geodata.ledger_export import export_suffix

    export_suffix(file)  # before the database is opened
    from geodata.request_export import export_requests
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        count = export_requests(session, file,
                                **_filters(session, park_code, status, category, source,
                                           overdue))
    click.echo(f"exported {count} requests to {file}")


@requests.group("categories")
def categories():
    """Each park's request categories: the defaults plus its own."""


@categories.command("list")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@format_option(("text", "json"))
@pass_context
def categories_list(obj, park_code, fmt):
    """List the park's request categories."""
    from geodata.services import requests as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        names = service.categories(session, _park(session, park_code))
    click.echo(json.dumps(names, ensure_ascii=False) if fmt == "json" else "\n".join(names))


@categories.command("add")
@click.argument("name")
@click.option("--park", "park_code", type=PARK_CODE, required=True, help="Park code.")
@pass_context
def categories_add(obj, name, park_code):
    """Add request category NAME to the park's list."""
    from geodata.services import requests as service
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        name = service.add_category(session, _park(session, park_code), name)
    click.echo(f"added request category {name} to park {park_code}")


COMMANDS = (requests,)
