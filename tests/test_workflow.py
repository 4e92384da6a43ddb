"""The workflow state machine, alone and through the ledger service on both backends."""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from geodata.errors import ConflictError, GridmapError, ValidationError
from geodata.models import HazardEvent, Supervision
from geodata.services import ledger
from geodata.services.parks import get_park
from geodata.storage import session_scope
from geodata.workflow import (PermissionDeniedError, allowed_targets, check_escalation,
                              is_overdue, plan_transition)
from tests.ledger_helpers import ACTORS, build_park, future, ledger_state, lonlat

TODAY = date(2025, 11, 30)


@pytest.mark.parametrize("state, target, role, kwargs, code", [
    ("found", "nowhere", "inspector", {}, "unknown_status"),
    ("found", "closed", "admin", {}, "illegal_transition"),
    ("rectifying", "found", "admin", {}, "illegal_transition"),
    ("supervising", "closed", "supervisor", {}, "supervision_required"),
    ("supervising", "closed", "inspector", {"supervision": {"note": "ok"}}, "forbidden"),
    ("found", "rectifying", "viewer", {"deadline": TODAY}, "forbidden"),
    ("found", "rectifying", "planner", {"deadline": TODAY}, "forbidden"),
    ("found", "rectifying", "inspector", {}, "deadline_required"),
    ("found", "rectifying", "inspector", {"deadline": TODAY - timedelta(1)}, "deadline_in_past"),
    ("supervising", "rectifying", "supervisor", {}, "note_required"),
    ("closed", "rectifying", "supervisor", {"note": "回头看发现反弹"}, "deadline_required"),
    ("closed", "rectifying", "inspector", {"note": "x", "deadline": TODAY}, "forbidden"),
])
def test_refused_steps(state, target, role, kwargs, code):
    with pytest.raises(GridmapError) as info:
        plan_transition(state, target, role, today=TODAY, **kwargs)
    assert info.value.code == code
    assert 400 <= info.value.http_status < 500


def test_allowed_steps_and_chinese_state_names():
    assert plan_transition("found", "整改", "inspector", deadline=TODAY,
                           today=TODAY).action == "start"
    assert allowed_targets("supervising", "supervisor") == ["rectifying", "closed"]
    assert allowed_targets("supervising", "inspector") == []
    assert allowed_targets("found", "viewer") == []


def test_escalation_only_goes_up_with_a_reason():
    assert check_escalation("grid", "county", "重大隐患") == "county"
    for current, target, reason, error in [("park", "grid", "x", ConflictError),
                                           ("park", "park", "x", ConflictError),
                                           ("grid", "nation", "x", ValidationError),
                                           ("grid", "park", " ", ValidationError)]:
        with pytest.raises(error):
            check_escalation(current, target, reason)


def test_overdue_is_derived():
    assert is_overdue("rectifying", TODAY - timedelta(1), TODAY)
    assert not is_overdue("closed", TODAY - timedelta(1), TODAY)
    assert not is_overdue("rectifying", TODAY, TODAY)
    assert not is_overdue("found", None, TODAY)


def _move(engine, hazard_id, target, role, version, **kwargs):
    with session_scope(engine, write=True) as session:
        h = ledger.transition(session, hazard_id, target, actor=ACTORS[role],
                              expected_version=version, **kwargs)
        return h.version


def test_whole_loop_with_rejection_and_reopen(engine):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        lon, lat = lonlat("T-004")
        h = ledger.create_hazard(session, park, point=ledger.parse_point(lon, lat),
                                 category="消防安全", description="灭火器过期",
                                 actor=ACTORS["inspector"])
        hid, v = h.id, h.version
        assert h.status == "found" and h.grid.code == "T-004" and h.escalation == "grid"
    v = _move(engine, hid, "rectifying", "inspector", v, deadline=future(), note="限期整改")
    v = _move(engine, hid, "supervising", "inspector", v, note="已更换")
    v = _move(engine, hid, "rectifying", "supervisor", v, note="标签未更新，退回")
    v = _move(engine, hid, "supervising", "inspector", v, note="已补标签")
    v = _move(engine, hid, "closed", "supervisor", v,
              supervision={"note": "现场核查合格", "checked_at": "2025-11-30T10:00:00+08:00"})
    v = _move(engine, hid, "rectifying", "supervisor", v, note="回头看：又过期",
              deadline=future(20))
    with session_scope(engine, write=True) as session:
        ledger.escalate(session, hid, "park", actor=ACTORS["inspector"], reason="反复出现",
                        expected_version=v)
    with session_scope(engine) as session:
        events = ledger.history(session, hid)
        assert [(e.from_status, e.to_status, e.action) for e in events] == [
            (None, "found", "log"), ("found", "rectifying", "start"),
            ("rectifying", "supervising", "submit"), ("supervising", "rectifying", "reject"),
            ("rectifying", "supervising", "submit"), ("supervising", "closed", "close"),
            ("closed", "rectifying", "reopen"), ("rectifying", "rectifying", "escalate")]
        assert events[-1].escalation == "grid>park"
        assert [e.actor for e in events][:3] == ["inspector"] * 3
        records = ledger.supervisions(session, hid)
        assert [r.outcome for r in records] == ["rejected", "passed", "recheck_failed"]
        assert records[1].supervisor == "supervisor" and records[1].note == "现场核查合格"
        h = ledger.get_hazard(session, hid)
        assert (h.status, h.deadline, h.escalation, h.closed_at) == (
            "rectifying", future(20), "park", None)


@pytest.mark.parametrize("target, role, kwargs, code", [
    ("closed", "supervisor", {}, "supervision_required"),
    ("closed", "supervisor", {"supervision": {"note": "ok"}, "version": 99}, "stale_version"),
    ("rectifying", "viewer", {"deadline": future()}, "forbidden"),
    ("done", "admin", {}, "unknown_status"),
    ("found", "admin", {}, "illegal_transition"),
    ("rectifying", "supervisor", {"note": "\x00bad"}, "invalid_text"),
    ("rectifying", "supervisor", {"note": "x" * 5000}, "text_too_long"),
])
def test_illegal_transition_changes_nothing(engine, target, role, kwargs, code):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        h = ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-001")),
                                 category="用电安全", actor=ACTORS["inspector"])
        hid = h.id
    v = _move(engine, hid, "rectifying", "inspector", 1, deadline=future())
    v = _move(engine, hid, "supervising", "inspector", v)
    before = ledger_state(engine)
    kwargs = dict(kwargs)  # the table is shared by both backends
    with pytest.raises(GridmapError) as info:
        with session_scope(engine, write=True) as session:
            ledger.transition(session, hid, target, actor=ACTORS[role],
                              expected_version=kwargs.pop("version", v), **kwargs)
    assert info.value.code == code
    assert ledger_state(engine) == before


def test_history_is_append_only_through_the_orm(engine):
    build_park(engine, users=False)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-001")),
                             category="用电安全", actor=ACTORS["inspector"])
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with session_scope(engine, write=True) as session:
            session.execute(sa.update(HazardEvent).values(note="rewritten"))
    with session_scope(engine) as session:
        assert session.execute(sa.select(HazardEvent.note)).scalars().all() == [""]
        assert session.execute(sa.select(sa.func.count()).select_from(Supervision)).scalar() == 0


def test_grid_member_is_limited_to_their_grids(engine):
    build_park(engine, users=False)
    member = ledger.Actor("member", "inspector", grid_ids=None)
    with session_scope(engine, write=True) as session:
        park = get_park(session, "T")
        from geodata.services.grids import get_grid
        member.grid_ids = {get_grid(session, park, "T-003").id}
        ledger.create_hazard(session, park, point=ledger.parse_point(*lonlat("T-003")),
                             category="用电安全", actor=member)
    with pytest.raises(PermissionDeniedError):
        with session_scope(engine, write=True) as session:
            ledger.create_hazard(session, get_park(session, "T"),
                                 point=ledger.parse_point(*lonlat("T-001")),
                                 category="用电安全", actor=member)
