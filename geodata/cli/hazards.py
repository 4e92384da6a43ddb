"""``gridmap hazards ...``: the hazard ledger (隐患台账) from the shell.

Errors exit 2 with one line on stderr, as everywhere in the CLI.  Moving a
hazard from the shell needs ``--as USER``: the step is checked against that
user's role and recorded under their name, exactly as through the API.  A
hazard is named by its id or its ledger code (``YH2026-0012``).
"""

import json

import click

from geodata.cli.context import (FILE_PATH, PARK_CODE, PlainIntRange, check_park_scope, echo_moved,
                                 emit_table,
                                 format_option, on_every_park, park_scope_options, pass_context,
                                 stored_park_codes)
from geodata.periods import local_today
from geodata.vocabulary import STATE_NAMES


def _filters(session, park_code, status, overdue):
    from geodata.services.parks import get_park

    return {"park": get_park(session, park_code) if park_code else None,
            "status": status, "overdue": True if overdue else None}


def _actor(session, username):
    """The ``--as`` user, with their role and grid limits; a disabled account may not act."""
    from geodata.services import ledger
    from geodata.services.users import allowed_grid_ids, get_user
    from geodata.workflow import PermissionDeniedError

    user = get_user(session, username)
    if not user.active:
        # the web refuses a disabled account everywhere; the shell must not record steps in
        # its name either
        raise PermissionDeniedError(f"user {user.username!r} is disabled",
                                    code="account_disabled")
    return ledger.Actor(user.username, user.role, allowed_grid_ids(session, user))


def _hazard(session, ref):
    """The hazard named by ``ref``: a numeric id or a ledger code (``YH2026-0012``)."""
    from geodata.services import ledger

    ref = ref.strip()
    if ref.isascii() and ref.isdigit():
        return ledger.get_hazard(session, int(ref))
    return ledger.get_hazard_by_code(session, ref)


@click.group("hazards")
def hazards():
    """The hazard ledger (隐患台账): list, show, transition, export."""


#: Columns of ``hazards list`` (key of the ledger's hazard dict, header).
LIST_COLUMNS = [("id", "id"), ("code", "编号 code"), ("state", "状态 state"),
                ("status", "status"), ("grid", "网格 grid"), ("category", "类别 category"),
                ("deadline", "期限 deadline"), ("late", "逾期 overdue"),
                ("description", "描述 description")]


@hazards.command("list")
@click.option("--park", "park_code", type=PARK_CODE, help="Park code.")
@click.option("--status", help="found/rectifying/supervising/closed (or 排查/整改/督导/销号).")
@click.option("--overdue", is_flag=True, help="Only open hazards past their deadline.")
@click.option("--limit", default=100, show_default=True, type=PlainIntRange(1, 100_000))
@format_option(help="json: {total, hazards: [...]} with every field.")
@pass_context
def list_(obj, park_code, status, overdue, limit, fmt):
    """List hazards by ledger number."""
    from geodata.services import ledger
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows, total = ledger.list_hazards(session, limit=limit,
                                          **_filters(session, park_code, status, overdue))
        items = ledger.hazard_dicts(session, rows)
    table = [{**h, "state": STATE_NAMES[h["status"]], "grid": (h["grid"] or {}).get("code"),
              "late": "逾期" if h["overdue"] else "",
              "description": h["description"][:40] if fmt == "text" else h["description"]}
             for h in items]
    emit_table(table, LIST_COLUMNS, fmt, json_value={"total": total, "hazards": items})
    if fmt == "text":
        click.echo(f"{len(items)} of {total} hazards", err=True)


@hazards.command("show")
@click.argument("hazard")
@click.option("--park", "park_code", type=PARK_CODE,
              help="Park of a ledger code used in several parks.")
@format_option(("text", "json"))
@pass_context
def show(obj, hazard, park_code, fmt):
    """Show hazard HAZARD (id or ledger code such as YH2026-0012) with its history."""
    from geodata.services import ledger
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        if park_code:
            from geodata.services.parks import get_park

            found = ledger.get_hazard_by_code(session, hazard.strip(),
                                              get_park(session, park_code))
        else:
            found = _hazard(session, hazard)
        (item,) = ledger.hazard_dicts(session, [found])
        item["history"] = [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status,
                            "to": e.to_status, "action": e.action, "note": e.note}
                           for e in ledger.history(session, found.id)]
        item["supervisions"] = [{"supervisor": r.supervisor, "outcome": r.outcome,
                                 "checked_at": r.checked_at.isoformat(), "note": r.note}
                                for r in ledger.supervisions(session, found.id)]
    if fmt == "json":
        click.echo(json.dumps(item, ensure_ascii=False, indent=2))
        return
    grid = (item["grid"] or {}).get("code") or "-"
    click.echo(f"{item['code']} (id {item['id']}) {STATE_NAMES[item['status']]} "
               f"{item['status']}, version {item['version']}")
    for key, label in (("category", "类别 category"), ("level", "等级 level"),
                       ("found_date", "发现 found"), ("deadline", "期限 deadline"),
                       ("description", "描述 description")):
        click.echo(f"{label}: {item.get(key) or '-'}")
    click.echo(f"网格 grid: {grid}")
    click.echo("")
    emit_table(item["history"], [("at", "时间 at"), ("actor", "人员 actor"),
                                 ("action", "动作 action"), ("from", "从 from"),
                                 ("to", "到 to"), ("note", "说明 note")], "text")
    if item["supervisions"]:
        click.echo("")
        emit_table(item["supervisions"], [("checked_at", "督导时间 checked at"),
                                          ("supervisor", "督导人 supervisor"),
                                          ("outcome", "结果 outcome"), ("note", "说明 note")],
                   "text")


@hazards.command("transition")
@click.argument("hazard")
@click.argument("target")
@click.option("--as", "username", required=True, help="The user taking the step.")
@click.option("--version", type=PlainIntRange(1, 2**31 - 1),
              help="The version you read (default: the current one).")
@click.option("--note", default="", help="Why (required to reject or reopen).")
@click.option("--deadline", type=click.DateTime(["%Y-%m-%d"]), help="Rectification deadline.")
@click.option("--supervision-note", help="Supervision record note (required to close).")
@format_option(("text", "json"))
@pass_context
def transition(obj, hazard, target, username, version, note, deadline, supervision_note, fmt):
    """Move HAZARD (id or ledger code) to TARGET (rectifying, supervising, closed; or 整改/督导/销号)."""
    from geodata.services import ledger
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        actor = _actor(session, username)
        found = _hazard(session, hazard)
        if version is None:
            version = found.version
        supervision = {"note": supervision_note} if supervision_note is not None else None
        moved = ledger.transition(session, found.id, target, actor=actor,
                                  expected_version=version, note=note,
                                  deadline=deadline.date() if deadline else None,
                                  supervision=supervision)
        result = {"id": moved.id, "code": moved.code, "status": moved.status,
                  "version": moved.version}
    echo_moved(result, fmt)


@hazards.command("export")
@click.argument("file", type=FILE_PATH)
@click.option("--park", "park_code", type=PARK_CODE, help="Park code.")
@click.option("--status", help="Only this status.")
@click.option("--overdue", is_flag=True, help="Only overdue hazards.")
@pass_context
def export(obj, file, park_code, status, overdue):
    """Export the ledger (隐患台账) to FILE: .csv (UTF-8 with BOM) or .xlsx."""
    from geodata.ledger_export import export_ledger
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        count = export_ledger(session, file, today=local_today(),
                              **_filters(session, park_code, status, overdue))
    click.echo(f"exported {count} hazards to {file}")


@hazards.command("relocate")
@park_scope_options
@click.option("--dry-run", is_flag=True, help="Report the moves without writing them.")
@format_option(help="json: one {park, moved, skipped} object per park.")
@pass_context
def relocate(obj, park_code, all_parks, workers, scheduler, dry_run, fmt):
    """Re-resolve the grid and enterprise of open hazards (after grid or site changes).

    Closed hazards keep the grid they were closed in.  Where each hazard
    belongs is computed per park (on Dask with --workers N or --scheduler
    URL); the moves are then written in one short transaction per park, and
    a hazard changed meanwhile by someone else is skipped, not overwritten.
    """
    from geodata.batch import relocation_task
    from geodata.services.ledger import apply_relocation
    from geodata.storage import session_scope

    check_park_scope(park_code, all_parks, workers, scheduler)
    codes = stored_park_codes(obj, park_code)
    moves = on_every_park(obj, relocation_task, codes, workers, scheduler)
    rows = []
    for code, park_moves in zip(codes, moves):
        moved, skipped = len(park_moves), 0
        if not dry_run and park_moves:
            with session_scope(obj.engine, write=True) as session:
                moved, skipped = apply_relocation(session, park_moves)
        rows.append({"park": code, "moved": moved, "skipped": skipped})
    emit_table(rows, [("park", "园区 park"), ("moved", "移动 moved"), ("skipped", "跳过 skipped")],
               fmt)


COMMANDS = (hazards,)
