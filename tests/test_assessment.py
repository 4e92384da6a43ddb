"""Staff assessment (考核) on both backends, on the scripted week of tests/test_weekly.py."""

import json
from datetime import date

import pytest
import sqlalchemy as sa

from geodata.services.assessment import assessment
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import table_counts
from tests.test_weekly import TODAY, script_week


def _people(engine, first="2026-11-23", last="2026-11-29"):
    with session_scope(engine) as session:
        result = assessment(session, get_park(session, "T"), first, last, today=TODAY)
    return result, {p["user"] or p["name"]: p for p in result["staff"]}


def test_one_person_by_hand(engine):
    script_week(engine)
    result, people = _people(engine)
    member = people["member"]
    # member serves T-003 and is linked to 甲公司: one 走访 due in W48, done Sunday 23:30
    # (the Monday 00:30 one is W49).  Responsible for SQ2026-0001 (received Monday,
    # 办结) and SQ2026-0003 (received the week before): 1 of 1 received is resolved.
    # Follow-ups in the week: SQ0001 满意, SQ0003 不满意 -> 1/2.  No hazard in T-003.
    assert (member["visits_done"], member["visits_due"]) == (1, 1)
    assert (member["hazards_found"], member["closure_rate"], member["hazards_overdue"]) == (
        0, None, 0)
    assert (member["requests"], member["resolution_rate"], member["requests_overdue"]) == (
        1, 1.0, 0)
    assert (member["follow_ups"], member["satisfaction_rate"]) == (2, 0.5)
    # Default weights: visits 30, closure 20 (no rate: left out), resolution 25,
    # satisfaction 25 -> 100 * (30*1 + 25*1 + 25*0.5) / 80 = 84.375.
    assert member["score"] == 84.4
    inspector = people["inspector"]
    # inspector has no grids: their hazards are the five they logged.  Found in W48: H1
    # (closed Sunday 23:30) and H3 (open) -> 1/2; H2 open past its deadline at week end.
    # SQ2026-0002 (theirs) is overdue; their only visit in W48 was a patrol: 0 of 1.
    assert (inspector["hazards_found"], inspector["closure_rate"],
            inspector["hazards_overdue"], inspector["requests_overdue"]) == (2, 0.5, 1, 1)
    assert (inspector["visits_done"], inspector["visits_due"]) == (0, 1)
    # 100 * (30*0 + 20*0.5) / 50 = 20, minus 2 points for each of 2 overdue items.
    assert inspector["score"] == 16.0
    # 王一 is T-001's grid chief without an account: T-001's hazards are theirs.  H1
    # (found and closed in W48) -> 1/1; H2 overdue at week end: 100 * 20*1 / 20 - 2.
    chief = people["王一"]
    assert (chief["kind"], chief["user"], chief["visits_due"], chief["hazards_found"]) == (
        "staff", "", 0, 0)
    assert (chief["closure_rate"], chief["hazards_overdue"], chief["score"]) == (1.0, 1, 98.0)
    # 王二 (T-002): H3 found in W48 and still open -> 0/1, nothing overdue.
    assert (people["王二"]["closure_rate"], people["王二"]["score"]) == (0.0, 0.0)
    assert result["weights"] == {"visits": 30.0, "closure": 20.0, "resolution": 25.0,
                                 "satisfaction": 25.0, "overdue": 2.0}


def test_weights_set_per_park_change_the_score(engine, runner):
    script_week(engine)
    result = runner("assessment-weights", "--park", "T", "--set", "satisfaction=75",
                    "--set", "overdue=0")
    assert result.exit_code == 0, result.output
    assert "satisfaction\t75" in result.output and "visits\t30 (default)" in result.output
    _, people = _people(engine)
    # 100 * (30*1 + 25*1 + 75*0.5) / 130 = 71.15...
    assert people["member"]["score"] == 71.2
    assert people["inspector"]["score"] == 20.0


@pytest.mark.parametrize("fmt", ["text", "json", "xlsx"])
def test_assessment_cli_formats(engine, runner, tmp_path, fmt):
    script_week(engine)
    args = ["assessment", "--park", "T", "--from", "2026-11-23", "--to", "2026-11-29",
            "--format", fmt]
    out = tmp_path / "a.xlsx"
    if fmt == "xlsx":
        args += ["--out", str(out)]
    result = runner(*args)
    assert result.exit_code == 0, result.output
    if fmt == "json":
        data = json.loads(result.output[:result.output.rindex("}") + 1])
        assert {p["user"] for p in data["staff"]} >= {"member", "inspector"}
    elif fmt == "xlsx":
        from openpyxl import load_workbook

        rows = list(load_workbook(out)["考核"].iter_rows(values_only=True))
        assert rows[0][0] == "用户 user" and "考核得分 score" in rows[0]
        assert any(r[0] == "member" and r[-1] == 84.4 for r in rows)
    else:
        assert "member" in result.output and "84.4" in result.output


@pytest.mark.parametrize("args, message", [
    (["--park", "NOPE", "--from", "2026-11-23", "--to", "2026-11-29"], "NOPE"),
    (["--park", "T", "--from", "2026-11-30", "--to", "2026-11-29"], "after"),
    (["--park", "T", "--from", "2026-02-30", "--to", "2026-11-29"], "2026-02-30"),
    (["--park", "T", "--from", "2020-01-01", "--to", "2026-11-29"], "longer"),
    (["--park", "T", "--from", "2026-11-23", "--to", "2026-11-29", "--format", "xlsx"],
     "--out"),
    (["--park", "T", "--from", "2026-11-23", "--to", "2026-11-29", "--format", "xlsx",
      "--out", "{tmp}/missing/a.xlsx"], "cannot write"),
])
def test_assessment_bad_input_exits_2(engine, runner, tmp_path, args, message):
    script_week(engine)
    before = table_counts(engine)
    result = runner("assessment", *[a.replace("{tmp}", str(tmp_path / "o")) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
    assert table_counts(engine) == before


@pytest.mark.parametrize("pair, message", [
    ("speed=3", "unknown assessment metric"), ("visits=101", "0 to 100"),
    ("visits=-1", "0 to 100"), ("visits=abc", "0 to 100"), ("visits=nan", "0 to 100"),
    ("visits", "METRIC=WEIGHT"), ("visits=inf", "0 to 100"), ("visits=1e400", "0 to 100"),
    ("visits=１０", "0 to 100"), ("visits=1_0", "0 to 100"),
    ("visits=0x10", "0 to 100"),
])
def test_bad_weights_exit_2_and_store_nothing(engine, runner, pair, message):
    script_week(engine)
    before = table_counts(engine)
    result = runner("assessment-weights", "--park", "T", "--set", "closure=10", "--set", pair)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert table_counts(engine) == before


def test_a_weight_of_minus_zero_reads_back_as_zero(engine, runner):
    """PostgreSQL keeps -0.0 and SQLite reads 0: the stored weight must be the same on both."""
    script_week(engine)
    assert runner("assessment-weights", "--park", "T", "--set", "visits=-0").exit_code == 0
    with engine.connect() as conn:
        weight = conn.execute(sa.text("SELECT weight FROM assessment_weights")).scalar_one()
    assert weight == 0 and str(weight) == "0.0"


def test_a_period_in_the_future_has_nothing_done_yet(engine):
    script_week(engine)
    _, people = _people(engine, "2027-01-04", "2027-01-10")
    assert people["member"]["visits_due"] == 0 and people["member"]["score"] is None
    assert date(2027, 1, 4) > TODAY
