"""The request workflow (受理 → 交办 → 办理 → 办结 → 回访) as a table, without a database."""

from datetime import date, datetime, timedelta, timezone

import pytest

from geodata.errors import ConflictError, ValidationError
from geodata.periods import iso_week, local_day_bounds_utc, local_today, week_bounds
from geodata.request_workflow import (STATES, TRANSITIONS, allowed_targets, is_overdue,
                                      plan_transition, satisfaction_level)
from geodata.vocabulary import ROLES
from geodata.workflow import PermissionDeniedError

TODAY = date(2026, 11, 30)
#: Everything any step could need, so only the table decides.
FULL = {"note": "办理情况", "department": "县人社局", "responsible": "李四",
        "deadline": TODAY + timedelta(days=7), "satisfaction": "satisfied", "today": TODAY}
#: (from, to) → roles allowed; every other pair is 409.
TABLE = {
    ("accepted", "assigned"): {"supervisor", "admin"},
    ("assigned", "in_progress"): {"inspector", "supervisor", "admin"},
    ("in_progress", "resolved"): {"inspector", "supervisor", "admin"},
    ("resolved", "followed_up"): {"supervisor", "admin"},
}


@pytest.mark.parametrize("source", STATES)
@pytest.mark.parametrize("target", STATES)
@pytest.mark.parametrize("role", ROLES)
def test_every_pair_of_states_for_every_role(source, target, role):
    allowed = TABLE.get((source, target))
    if allowed is None:
        with pytest.raises(ConflictError) as error:
            plan_transition(source, target, role, **FULL)
        assert error.value.code == "illegal_transition"
    elif role not in allowed:
        with pytest.raises(PermissionDeniedError):
            plan_transition(source, target, role, **FULL)
    else:
        step, reopens = plan_transition(source, target, role, **FULL)
        assert (step.source, step.target, reopens) == (source, target, False)
    assert set(TRANSITIONS) == set(TABLE)


def test_allowed_targets_follow_the_table():
    assert allowed_targets("accepted", "inspector") == []
    assert allowed_targets("accepted", "supervisor") == ["assigned"]
    assert allowed_targets("resolved", "inspector") == []
    assert allowed_targets("resolved", "admin") == ["followed_up"]
    assert allowed_targets("followed_up", "admin") == []


def test_chinese_state_names_are_accepted():
    step, _ = plan_transition("accepted", "交办", "admin", **FULL)
    assert step.target == "assigned"


@pytest.mark.parametrize("source, target, change, code, field", [
    ("accepted", "assigned", {"department": None}, "missing_field", "department"),
    ("accepted", "assigned", {"responsible": ""}, "missing_field", "responsible"),
    ("accepted", "assigned", {"deadline": None}, "deadline_required", "deadline"),
    ("accepted", "assigned", {"deadline": TODAY - timedelta(days=1)}, "deadline_in_past",
     "deadline"),
    ("in_progress", "resolved", {"note": "  "}, "note_required", "note"),
    ("resolved", "followed_up", {"satisfaction": None}, "satisfaction_required",
     "satisfaction"),
    ("resolved", "followed_up", {"satisfaction": "unsatisfied", "note": ""}, "note_required",
     "note"),
    ("resolved", "followed_up", {"satisfaction": "unsatisfied",
                                 "deadline": TODAY - timedelta(days=1)}, "deadline_in_past",
     "deadline"),
    ("accepted", "closed", {}, "unknown_status", "to"),
])
def test_missing_values_are_422_naming_the_field(source, target, change, code, field):
    with pytest.raises(ValidationError) as error:
        plan_transition(source, target, "admin", **{**FULL, **change})
    assert (error.value.http_status, error.value.code) == (422, code)
    assert error.value.details["field"] == field


def test_unsatisfied_follow_up_reopens():
    step, reopens = plan_transition("resolved", "followed_up", "supervisor",
                                    **{**FULL, "satisfaction": "unsatisfied"})
    assert step.action == "follow_up" and reopens
    _, reopens = plan_transition("resolved", "followed_up", "supervisor",
                                 **{**FULL, "satisfaction": "basically_satisfied"})
    assert not reopens


@pytest.mark.parametrize("value, key", [("满意", "satisfied"), ("基本满意", "basically_satisfied"),
                                        ("不满意", "unsatisfied"), ("unsatisfied", "unsatisfied")])
def test_satisfaction_in_chinese_or_english(value, key):
    assert satisfaction_level(value) == key


@pytest.mark.parametrize("value", ["很满意", "", 3, ["满意"], "SATISFIED"])
def test_unknown_satisfaction_is_422(value):
    with pytest.raises(ValidationError) as error:
        satisfaction_level(value)
    assert error.value.code == "unknown_satisfaction"


@pytest.mark.parametrize("status, overdue", [
    ("accepted", True), ("assigned", True), ("in_progress", True), ("resolved", False),
    ("followed_up", False)])
def test_overdue_is_derived_from_status_and_deadline(status, overdue):
    assert is_overdue(status, TODAY - timedelta(days=1), TODAY) is overdue
    assert not is_overdue(status, TODAY, TODAY)
    assert not is_overdue(status, None, TODAY)


def test_local_today_turns_at_midnight_in_shanghai():
    # 2026-11-29 23:59:59 in Shanghai is 15:59:59 UTC; one second later it is the 30th.
    before = datetime(2026, 11, 29, 15, 59, 59, tzinfo=timezone.utc)
    assert local_today(before) == date(2026, 11, 29)
    assert local_today(before + timedelta(seconds=1)) == date(2026, 11, 30)
    deadline = date(2026, 11, 29)
    assert not is_overdue("in_progress", deadline, local_today(before))
    assert is_overdue("in_progress", deadline, local_today(before + timedelta(seconds=1)))
    assert local_today(datetime(2026, 11, 29, 16)) == date(2026, 11, 30)  # naive is UTC


def test_weeks_are_iso_monday_to_sunday():
    assert iso_week(date(2026, 11, 29)) == "2026-W48"
    assert week_bounds("2026-W48") == (date(2026, 11, 23), date(2026, 11, 29))
    assert iso_week(date(2027, 1, 1)) == "2026-W53"
    start, end = local_day_bounds_utc(date(2026, 11, 30))
    assert (start.isoformat(), end.isoformat()) == ("2026-11-29T16:00:00+00:00",
                                                    "2026-11-30T16:00:00+00:00")
    for bad in ("2026-48", "2026-W54", "W48", ""):
        with pytest.raises(ValidationError):
            week_bounds(bad)


def test_export_shows_resolution_times_in_beijing_time():
    from geodata.request_export import _local

    assert _local("2026-11-29T16:30:00") == "2026-11-30 00:30"  # SQLite: naive UTC
    assert _local("2026-11-29T16:30:00+00:00") == "2026-11-30 00:30"
    assert _local(None) == ""
