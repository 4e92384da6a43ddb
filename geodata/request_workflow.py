"""The request workflow (诉求办理): 受理 → 交办 → 办理 → 办结 → 回访, free of any database.

::

    accepted (受理) ─assign─▶ assigned (交办) ─start─▶ in_progress (办理) ─resolve─▶ resolved (办结)
                                                        ▲                              │
                                                        └──── 回访 不满意 (reopen) ◀────┤
                                                                                       ▼
                                                                     followed_up (回访) ◀─follow_up─

* ``assign`` (交办) hands the request to a department (交办单位) with a
  deadline, which must not be before today in Asia/Shanghai, and the person
  responsible.
* ``resolve`` (办结) needs a note saying what was done (the resolution).
* ``follow_up`` (回访) records the enterprise's satisfaction: 满意, 基本满意
  or 不满意.  不满意 needs a note and reopens the request: it goes back to
  ``in_progress``, and the history holds the follow-up and a ``reopen``
  step.  A new deadline may be given then.
* Overdue is derived (:func:`is_overdue`): a deadline before local today
  and not yet resolved or followed up.

Who may do what: grid workers (inspectors), supervisors and admins take
requests (受理), start them and mark them resolved; supervisors and admins
hand them over (交办, the park decides which department) and record the
follow-up (回访): the satisfaction is what grid workers are assessed on, so
they do not record it themselves.  Viewers and planners read.
"""

from geodata.errors import ValidationError
from geodata.vocabulary import (REQUEST_STATE_NAMES, REQUEST_STATUSES, SATISFACTION_LEVELS,
                                SATISFACTION_NAMES)
from geodata.workflow import Transition, check_deadline, check_step

STATES = REQUEST_STATUSES
#: Requests count as done (never overdue) in these states.
DONE = ("resolved", "followed_up")

_WORKERS = frozenset({"inspector", "supervisor", "admin"})
_SUPERVISORS = frozenset({"supervisor", "admin"})

TRANSITIONS = {
    ("accepted", "assigned"): Transition("assign", "accepted", "assigned", _SUPERVISORS,
                                         needs_deadline=True),
    ("assigned", "in_progress"): Transition("start", "assigned", "in_progress", _WORKERS),
    ("in_progress", "resolved"): Transition("resolve", "in_progress", "resolved", _WORKERS,
                                            needs_note=True),
    ("resolved", "followed_up"): Transition("follow_up", "resolved", "followed_up",
                                            _SUPERVISORS),
}
#: Taken by the server after a 回访 answered 不满意, never asked for directly.
REOPEN = Transition("reopen", "followed_up", "in_progress", _SUPERVISORS, needs_note=True)
#: Who may take a request (受理).
CREATORS = _WORKERS


def allowed_targets(state, role):
    """Return the states ``role`` may move a request from ``state`` to."""
    return [t.target for (s, _), t in TRANSITIONS.items() if s == state and role in t.roles]


def satisfaction_level(value, field="satisfaction"):
    """Return the satisfaction key for ``value`` (``satisfied`` or 满意 ...), or None if None.

    Raises
    ------
    ValidationError
        422 ``unknown_satisfaction``.
    """
    if value is None:
        return None
    found = {**{k: k for k in SATISFACTION_LEVELS},
             **{v: k for k, v in SATISFACTION_NAMES.items()}}.get(value) if isinstance(
        value, str) else None
    if found is None:
        raise ValidationError(
            f"unknown satisfaction {str(value)[:40]!r}; expected one of "
            f"{', '.join(SATISFACTION_NAMES.values())} ({', '.join(SATISFACTION_LEVELS)})",
            code="unknown_satisfaction",
            details={"field": field, "allowed": list(SATISFACTION_LEVELS)})
    return found


def plan_transition(state, target, role, *, note="", department=None, deadline=None,
                    responsible=None, satisfaction=None, today=None):
    """Check one step; return ``(transition, reopens)``; nothing is changed.

    Parameters
    ----------
    state, target : str
        Current and wanted state (English names or 受理/交办/办理/办结/回访).
    role : str
        The acting user's role.
    note : str
        Required to resolve (the resolution) and for a 不满意 follow-up.
    department, responsible : str
        Required to assign (交办单位, 责任人), already cleaned text.
    deadline : datetime.date
        Required to assign; optional for a reopening follow-up; never before
        ``today``.
    satisfaction : str
        A key of :data:`SATISFACTION_LEVELS`, required to follow up.
    today : datetime.date
        Local today (Asia/Shanghai) for the deadline check.

    Raises
    ------
    ValidationError
        422 ``unknown_status``, ``missing_field``, ``deadline_required``,
        ``deadline_in_past``, ``note_required``, ``satisfaction_required``.
    ConflictError
        409 ``illegal_transition``.
    PermissionDeniedError
        403 when the role may not take the step.
    """
    step = check_step(TRANSITIONS, REQUEST_STATE_NAMES, state, target, role, "request")
    reopens = False
    if step.action == "assign":
        for field, value in (("department", department), ("responsible", responsible)):
            if not value:
                raise ValidationError(f"assigning (交办) needs the {field}", code="missing_field",
                                      details={"field": field})
    if step.needs_deadline:
        check_deadline(deadline, today, step.action)
    if step.action == "follow_up":
        if satisfaction is None:
            raise ValidationError("a follow-up (回访) records the satisfaction: 满意, 基本满意 or "
                                  "不满意", code="satisfaction_required",
                                  details={"field": "satisfaction"})
        reopens = satisfaction == "unsatisfied"
        if reopens and deadline is not None:
            check_deadline(deadline, today, "reopen")
    if (step.needs_note or reopens) and not (note or "").strip():
        raise ValidationError(
            "不满意 reopens the request: say why in the note" if reopens else
            f"{step.action} needs a note saying what was done", code="note_required",
            details={"field": "note"})
    return step, reopens


def is_overdue(status, deadline, today):
    """True when a request not yet resolved is past its deadline (``today`` is local)."""
    return status not in DONE and deadline is not None and deadline < today
