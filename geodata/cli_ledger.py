"""``gridmap hazards ...`` and ``gridmap users ...``: the ledger and accounts from the shell.

Registered on the main group in :mod:`geodata.cli`.  Errors exit 2 with one
line on stderr, as everywhere in the CLI.  Moving a hazard from the shell
needs ``--as USER``: the step is checked against that user's role and
recorded under their name, exactly as through the API.
"""

import json
from datetime import date

import click

from geodata.errors import ValidationError
from geodata.ledger_export import export_ledger
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.services.users import (add_user, allowed_grid_ids, create_demo_accounts,
                                    create_token, get_user, list_users, revoke_tokens,
                                    set_active, set_password, set_role)
from geodata.storage import session_scope
from geodata.workflow import ROLES, STATE_NAMES


_pass_obj = click.pass_obj  # the geodata.cli.Context made by the main group


def _filters(session, park_code, status, overdue):
    return {"park": get_park(session, park_code) if park_code else None,
            "status": status, "overdue": True if overdue else None}


def _actor(session, username):
    user = get_user(session, username)
    return ledger.Actor(user.username, user.role, allowed_grid_ids(session, user))


@click.group("hazards")
def hazards():
    """The hazard ledger (隐患台账): list, show, transition, export."""


@hazards.command("list")
@click.option("--park", "park_code", help="Park code.")
@click.option("--status", help="found/rectifying/supervising/closed (or 排查/整改/督导/销号).")
@click.option("--overdue", is_flag=True, help="Only open hazards past their deadline.")
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_pass_obj
def list_(obj, park_code, status, overdue, limit, as_json):
    """List hazards by ledger number."""
    with session_scope(obj.ready_engine()) as session:
        rows, total = ledger.list_hazards(session, limit=limit,
                                          **_filters(session, park_code, status, overdue))
        items = ledger.hazard_dicts(session, rows)
    if as_json:
        click.echo(json.dumps({"total": total, "hazards": items}, ensure_ascii=False))
        return
    for h in items:
        click.echo("\t".join([str(h["id"]), h["code"], STATE_NAMES[h["status"]], h["status"],
                              (h["grid"] or {}).get("code", "-"), h["category"],
                              h["deadline"] or "-", "逾期" if h["overdue"] else "",
                              h["description"][:40]]))
    click.echo(f"{len(items)} of {total} hazards", err=True)


@hazards.command("show")
@click.argument("hazard_id", type=int)
@_pass_obj
def show(obj, hazard_id):
    """Show one hazard with its history, as JSON."""
    with session_scope(obj.ready_engine()) as session:
        (item,) = ledger.hazard_dicts(session, [ledger.get_hazard(session, hazard_id)])
        item["history"] = [{"at": e.at.isoformat(), "actor": e.actor, "from": e.from_status,
                            "to": e.to_status, "action": e.action, "note": e.note}
                           for e in ledger.history(session, hazard_id)]
        item["supervisions"] = [{"supervisor": r.supervisor, "outcome": r.outcome,
                                 "checked_at": r.checked_at.isoformat(), "note": r.note}
                                for r in ledger.supervisions(session, hazard_id)]
    click.echo(json.dumps(item, ensure_ascii=False, indent=2))


@hazards.command("transition")
@click.argument("hazard_id", type=int)
@click.argument("target")
@click.option("--as", "username", required=True, help="The user taking the step.")
@click.option("--version", type=int, help="The version you read (default: the current one).")
@click.option("--note", default="", help="Why (required to reject or reopen).")
@click.option("--deadline", type=click.DateTime(["%Y-%m-%d"]), help="Rectification deadline.")
@click.option("--supervision-note", help="Supervision record note (required to close).")
@_pass_obj
def transition(obj, hazard_id, target, username, version, note, deadline, supervision_note):
    """Move hazard HAZARD_ID to TARGET (rectifying, supervising, closed; or 整改/督导/销号)."""
    with session_scope(obj.ready_engine(), write=True) as session:
        actor = _actor(session, username)
        if version is None:
            version = ledger.get_hazard(session, hazard_id).version
        supervision = {"note": supervision_note} if supervision_note is not None else None
        hazard = ledger.transition(session, hazard_id, target, actor=actor,
                                   expected_version=version, note=note,
                                   deadline=deadline.date() if deadline else None,
                                   supervision=supervision)
        click.echo(f"{hazard.code}: {hazard.status} (version {hazard.version})")


@hazards.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--park", "park_code", help="Park code.")
@click.option("--status", help="Only this status.")
@click.option("--overdue", is_flag=True, help="Only overdue hazards.")
@_pass_obj
def export(obj, file, park_code, status, overdue):
    """Export the ledger (隐患台账) to FILE: .csv (UTF-8 with BOM) or .xlsx."""
    with session_scope(obj.ready_engine()) as session:
        count = export_ledger(session, file, today=date.today(),
                              **_filters(session, park_code, status, overdue))
    click.echo(f"exported {count} hazards to {file}")


_password_stdin = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of stdin instead of asking.")


def _new_password(from_stdin):
    """The first line of stdin, or a password asked for twice without echo."""
    if from_stdin:
        return click.get_text_stream("stdin").readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("users")
def users():
    """Accounts: add, list, set-role, set-password, disable, enable, token, revoke-token."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", help="Asked for (twice, hidden) when not given; a password on "
              "the command line can end up in the shell history.")
@_password_stdin
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--grid", "grids", multiple=True, help="Limit to this grid (repeatable).")
@click.option("--park", "park_code", help="Park of the --grid codes.")
@_pass_obj
def add(obj, username, role, password, password_stdin, display_name, grids, park_code):
    """Create an account (the password policy applies: see ``gridmap users set-password``)."""
    if password is None:
        password = _new_password(password_stdin)
    with session_scope(obj.ready_engine(), write=True) as session:
        park = get_park(session, park_code) if park_code else None
        user = add_user(session, username, password, role, display_name=display_name,
                        grid_codes=grids, park=park)
        click.echo(f"added {user.username} ({user.role})")


@users.command("list")
@_pass_obj
def list_accounts(obj):
    """List accounts: name, role, active, grid limits."""
    with session_scope(obj.ready_engine()) as session:
        for user in list_users(session):
            grids = ",".join(g.grid.code for g in user.grids) or "-"
            click.echo(f"{user.username}\t{user.role}\t"
                       f"{'active' if user.active else 'disabled'}\t{grids}")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@_pass_obj
def set_role_(obj, username, role):
    """Change USERNAME's role (their open sessions end)."""
    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_role(session, username, role)
        click.echo(f"{user.username} is now {user.role}")


@users.command("set-password")
@click.argument("username")
@_password_stdin
@_pass_obj
def set_password_(obj, username, password_stdin):
    """Give USERNAME a new password (asked twice, hidden); their open sessions end.

    Passwords need at least 10 characters, not only whitespace or one
    repeated character, not a common password and not the user name.
    """
    password = _new_password(password_stdin)
    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_password(session, username, password)
        click.echo(f"new password set for {user.username}; their sessions have ended")


@users.command("disable")
@click.argument("username")
@_pass_obj
def disable(obj, username):
    """Disable USERNAME: no login, and their sessions and API tokens stop working."""
    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_active(session, username, False)
        click.echo(f"{user.username} is disabled")


@users.command("enable")
@click.argument("username")
@_pass_obj
def enable(obj, username):
    """Enable USERNAME again (they log in anew; revoked tokens stay revoked)."""
    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_active(session, username, True)
        click.echo(f"{user.username} is enabled")


@users.command("revoke-token")
@click.argument("username")
@click.option("--name", help="Only the tokens with this name (default: all of them).")
@_pass_obj
def revoke_token(obj, username, name):
    """Revoke USERNAME's API tokens; their open sessions end too."""
    with session_scope(obj.ready_engine(), write=True) as session:
        count = revoke_tokens(session, username, name)
        click.echo(f"revoked {count} token(s) of {username}")


@users.command("token")
@click.argument("username")
@click.option("--name", default="", help="What the token is for.")
@click.option("--days", type=int, help="Expire after this many days (default: never).")
@_pass_obj
def token(obj, username, name, days):
    """Create an API token for USERNAME and print it (shown only once)."""
    if days is not None and days <= 0:
        raise ValidationError("--days must be positive", code="invalid_value")
    with session_scope(obj.ready_engine(), write=True) as session:
        text, _ = create_token(session, username, name, days=days)
    click.echo(text)


@users.command("demo-accounts")
@_pass_obj
def demo_accounts(obj):
    """Create the documented demo accounts, one per role (existing names are kept)."""
    with session_scope(obj.ready_engine(), write=True) as session:
        made = create_demo_accounts(session)
    click.echo(f"created {len(made)} demo accounts: {', '.join(made) or 'none needed'} "
               "(passwords in docs/ledger.md)")
