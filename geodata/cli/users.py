"""``gridmap users ...``: accounts and API tokens from the shell."""

import sys

import click

from geodata.cli.context import PARK_CODE, PlainIntRange, emit_table, format_option, pass_context
from geodata.vocabulary import ROLES


_password_stdin = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of stdin instead of asking.")


def _new_password(from_stdin):
    """The first line of stdin, or a password asked for twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
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
@click.option("--park", "park_code", type=PARK_CODE, help="Park of the --grid codes.")
@pass_context
def add(obj, username, role, password, password_stdin, display_name, grids, park_code):
    """Create an account (the password policy applies: see ``gridmap users set-password``)."""
    if password is None:
        password = _new_password(password_stdin)
    from geodata.services.parks import get_park
    from geodata.services.users import add_user
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        park = get_park(session, park_code) if park_code else None
        user = add_user(session, username, password, role, display_name=display_name,
                        grid_codes=grids, park=park)
        click.echo(f"added {user.username} ({user.role})")


@users.command("list")
@format_option()
@pass_context
def list_accounts(obj, fmt):
    """List accounts: name, role, active, grid limits."""
    from geodata.services.users import list_users
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine()) as session:
        rows = [{"username": u.username, "role": u.role, "display_name": u.display_name,
                 "active": u.active, "grids": [g.grid.code for g in u.grids]}
                for u in list_users(session)]
    if fmt != "json":
        rows = [{**r, "active": "active" if r["active"] else "disabled",
                 "grids": ",".join(r["grids"])} for r in rows]
    emit_table(rows, [("username", "用户 user"), ("role", "角色 role"),
                      ("active", "状态 state"), ("grids", "网格 grids")], fmt)


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@pass_context
def set_role_(obj, username, role):
    """Change USERNAME's role (their open sessions end)."""
    from geodata.services.users import set_role
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_role(session, username, role)
        click.echo(f"{user.username} is now {user.role}")


@users.command("set-password")
@click.argument("username")
@_password_stdin
@pass_context
def set_password_(obj, username, password_stdin):
    """Give USERNAME a new password (asked twice, hidden); their open sessions end.

    Passwords need at least 10 characters, not only whitespace or one
    repeated character, not a common password and not the user name.
    """
    from geodata.services.users import set_password
    from geodata.storage import session_scope

    password = _new_password(password_stdin)
    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_password(session, username, password)
        click.echo(f"new password set for {user.username}; their sessions have ended")


def _set_active(obj, username, active):
    from geodata.services.users import set_active
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        user = set_active(session, username, active)
        click.echo(f"{user.username} is {'enabled' if active else 'disabled'}")


@users.command("disable")
@click.argument("username")
@pass_context
def disable(obj, username):
    """Disable USERNAME: no login, and their sessions and API tokens stop working."""
    _set_active(obj, username, False)


@users.command("enable")
@click.argument("username")
@pass_context
def enable(obj, username):
    """Enable USERNAME again (they log in anew; revoked tokens stay revoked)."""
    _set_active(obj, username, True)


@users.command("revoke-token")
@click.argument("username")
@click.option("--name", help="Only the tokens with this name (default: all of them).")
@pass_context
def revoke_token(obj, username, name):
    """Revoke USERNAME's API tokens; their open sessions end too."""
    from geodata.services.users import revoke_tokens
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        count = revoke_tokens(session, username, name)
        click.echo(f"revoked {count} token(s) of {username}")


@users.command("token")
@click.argument("username")
@click.option("--name", default="", help="What the token is for.")
@click.option("--days", type=PlainIntRange(1, 36_500), help="Expire after this many days "
              "(default: never).")
@pass_context
def token(obj, username, name, days):
    """Create an API token for USERNAME and print it (shown only once)."""
    from geodata.services.users import create_token
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        text, _ = create_token(session, username, name, days=days)
    click.echo(text)


@users.command("demo-accounts")
@pass_context
def demo_accounts(obj):
    """Create the documented demo accounts, one per role (existing names are kept)."""
    from geodata.services.users import create_demo_accounts
    from geodata.storage import session_scope

    with session_scope(obj.ready_engine(), write=True) as session:
        made = create_demo_accounts(session)
    click.echo(f"created {len(made)} demo accounts: {', '.join(made) or 'none needed'} "
               "(passwords in docs/ledger.md)")


COMMANDS = (users,)
