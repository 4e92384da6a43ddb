"""``gridmap users disable|enable|set-password|revoke-token`` and the password policy, on
both backends: errors exit 2 with the reason and change nothing."""

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from geodata.cli import main
from geodata.models import ApiToken, User
from geodata.services.users import verify_password
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.ledger_helpers import PASSWORDS, build_park


def _accounts(engine):
    """Everything about the accounts a refused command must leave unchanged."""
    with session_scope(engine) as session:
        users = session.execute(sa.select(
            User.username, User.password_hash, User.active, User.role, User.session_version)
            .order_by(User.id)).all()
        tokens = session.execute(sa.select(ApiToken.id, ApiToken.revoked)
                                 .order_by(ApiToken.id)).all()
    return [tuple(u) for u in users], [tuple(t) for t in tokens], table_counts(engine)


def _user(engine, name):
    with session_scope(engine) as session:
        user = session.execute(sa.select(User).where(User.username == name)).scalar_one()
        session.expunge(user)
        return user


@pytest.fixture
def accounts(engine):
    build_park(engine)
    return engine


def _stdin(db_url, *args, text):
    return CliRunner().invoke(main, ["--db", db_url, "users", *args], input=text)


def test_set_password_prompts_twice_hidden(accounts, db_url):
    before = _user(accounts, "viewer")
    result = _stdin(db_url, "set-password", "viewer",
                    text="first-try-pass\nsecond-try-pass\nnew-viewer-pass\nnew-viewer-pass\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and "new-viewer-pass" not in result.output
    after = _user(accounts, "viewer")
    assert verify_password("new-viewer-pass", after.password_hash)
    assert not verify_password(PASSWORDS["viewer"], after.password_hash)
    assert after.session_version == before.session_version + 1


def test_set_password_from_stdin(accounts, db_url):
    result = _stdin(db_url, "set-password", "admin", "--password-stdin",
                    text="  spaces count too  \nignored second line\n")
    assert result.exit_code == 0, result.output
    assert verify_password("  spaces count too  ", _user(accounts, "admin").password_hash)


@pytest.mark.parametrize("password, message", [
    ("short", "at least 10 characters"),
    ("            ", "only whitespace"),
    ("password123", "common passwords"),
    ("QWERTYUIOP", "common passwords"),
    ("viewer", "at least 10"),
    ("Viewer-Pass", None),
])
def test_set_password_policy(accounts, db_url, password, message):
    before = _accounts(accounts)
    result = _stdin(db_url, "set-password", "viewer", "--password-stdin", text=password + "\n")
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert _accounts(accounts) == before


def test_add_reads_the_password_from_stdin(engine, db_url):
    result = CliRunner().invoke(main, ["--db", db_url, "users", "add", "zhao", "--role",
                                       "viewer", "--password-stdin"], input="zhao-pass-2025\n")
    assert result.exit_code == 0, result.output
    assert verify_password("zhao-pass-2025", _user(engine, "zhao").password_hash)


def test_user_name_is_not_a_password(engine, runner):
    before = _accounts(engine)
    result = runner("users", "add", "wang.xiaoming", "--role", "viewer", "--password",
                    "Wang.Xiaoming")
    assert result.exit_code == 2 and "must not be the user name" in result.stderr
    assert _accounts(engine) == before


def test_disable_enable_and_list(accounts, runner):
    first = _user(accounts, "inspector")
    assert runner("users", "disable", "inspector").output == "inspector is disabled\n"
    assert "inspector\tinspector\tdisabled" in runner("users", "list").output
    disabled = _user(accounts, "inspector")
    assert not disabled.active and disabled.session_version == first.session_version + 1
    assert runner("users", "enable", "inspector").exit_code == 0
    enabled = _user(accounts, "inspector")
    assert enabled.active and enabled.session_version == disabled.session_version
    assert "inspector\tinspector\tactive" in runner("users", "list").output


def test_revoke_token_by_name(accounts, runner):
    runner("users", "token", "admin", "--name", "backup")
    before = _accounts(accounts)
    unknown = runner("users", "revoke-token", "admin", "--name", "nightly")
    assert unknown.exit_code == 2 and "no unrevoked token called 'nightly'" in unknown.stderr
    assert _accounts(accounts) == before
    done = runner("users", "revoke-token", "admin", "--name", "backup")
    assert done.exit_code == 0 and "revoked 1 token(s) of admin" in done.output
    with session_scope(accounts) as session:
        tokens = session.execute(sa.select(ApiToken.name, ApiToken.revoked).join(User).where(
            User.username == "admin").order_by(ApiToken.id)).all()
    assert [tuple(t) for t in tokens] == [("tests", False), ("backup", True)]
    again = runner("users", "revoke-token", "admin")
    assert again.exit_code == 0 and "revoked 1 token(s)" in again.output


@pytest.mark.parametrize("args", [("disable", "nobody"), ("enable", "nobody"),
                                  ("revoke-token", "nobody"),
                                  ("set-password", "nobody", "--password-stdin")])
def test_unknown_user_exits_2_and_changes_nothing(accounts, db_url, args):
    before = _accounts(accounts)
    result = _stdin(db_url, *args, text="good-password-1\n")
    assert result.exit_code == 2 and "no user 'nobody'" in result.stderr
    assert "Traceback" not in result.output
    assert _accounts(accounts) == before


@pytest.mark.parametrize("name", ["viewer", "Viewer", "VIEWER"])
def test_a_name_taken_in_any_case_is_refused(accounts, db_url, name):
    before = _accounts(accounts)
    result = _stdin(db_url, "add", name, "--role", "viewer", "--password-stdin",
                    text="a-long-enough-pass\n")
    assert result.exit_code == 2 and "user 'viewer' already exists" in result.output
    assert _accounts(accounts) == before
