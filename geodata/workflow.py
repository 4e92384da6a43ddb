"""The hazard workflow (隐患闭环): an explicit state machine, free of any database.

States and the transitions between them::

    found (排查) ──start──────────▶ rectifying (整改) ──submit──▶ supervising (督导)
       │                               ▲      ▲                     │      │
       └─fixed_on_spot (立行立改)──────┼──────┼────────────────────▶│      │
                                       │      └──────reject─────────┘      │
                                       │                                   ▼
                                       └────────reopen (回头看)──── closed (销号) ◀─close─

* ``start`` sets the rectification deadline (整改期限), which must not be in
  the past.  ``reopen`` needs a new deadline too.
* ``close`` needs a supervision record (who checked, when, note, optional
  photo) with outcome ``passed``; ``reject`` stores one with ``rejected``
  and needs a note saying what is inadequate.
* ``reopen`` is what a re-check (回头看) does when it finds the hazard back;
  its note is required and it stores a ``recheck_failed`` record.
* Overdue is derived (:func:`is_overdue`), never stored.
* Escalation (分级处置) is separate from the state: grid → park → county →
  city → province, only upwards, always with a reason.

Who may do what (:data:`PERMISSIONS`): viewers and planners read;
inspectors log hazards and start, fix on the spot and submit; supervisors
also close, reject and reopen; admins may do everything.  Every refused
step raises a :class:`~geodata.errors.GridmapError` with a 4xx status, before
anything is written.
"""

from dataclasses import dataclass

from geodata.errors import ConflictError, GridmapError, ValidationError
from geodata.periods import local_today
from geodata.vocabulary import (  # noqa: F401  (re-exported)
    ESCALATION_LEVELS, ESCALATION_NAMES, HAZARD_STATUSES, ROLES, STATE_NAMES)

STATES = HAZARD_STATUSES


class PermissionDeniedError(GridmapError):
    """The user's role (or grid limit) does not allow this step (403)."""

    http_status = 403
    code = "forbidden"


class AuthenticationRequiredError(GridmapError):
    """No valid session or token (401)."""

    http_status = 401
    code = "authentication_required"


@dataclass(frozen=True)
class Transition:
    """One allowed move: its action name, states, roles and what it needs."""

    action: str
    source: str
    target: str
    roles: frozenset
    needs_deadline: bool = False
    needs_note: bool = False
    supervision: str = ""  # the outcome of the supervision record it stores, if any


_WORKERS = frozenset({"inspector", "supervisor", "admin"})
_SUPERVISORS = frozenset({"supervisor", "admin"})

TRANSITIONS = {
    ("found", "rectifying"): Transition("start", "found", "rectifying", _WORKERS,
                                        needs_deadline=True),
    ("found", "supervising"): Transition("fixed_on_spot", "found", "supervising", _WORKERS),
    ("rectifying", "supervising"): Transition("submit", "rectifying", "supervising", _WORKERS),
    ("supervising", "rectifying"): Transition("reject", "supervising", "rectifying",
                                              _SUPERVISORS, needs_note=True,
                                              supervision="rejected"),
    ("supervising", "closed"): Transition("close", "supervising", "closed", _SUPERVISORS,
                                          supervision="passed"),
    ("closed", "rectifying"): Transition("reopen", "closed", "rectifying", _SUPERVISORS,
                                         needs_deadline=True, needs_note=True,
                                         supervision="recheck_failed"),
}

#: Non-transition actions and the roles allowed to take them.
PERMISSIONS = {
    "read": frozenset(ROLES),
    "create": _WORKERS,
    "move": _WORKERS,
    "escalate": _WORKERS,
    "manage_users": frozenset({"admin"}),
}


def allowed_targets(state, role):
    """Return the states ``role`` may move a hazard from ``state`` to, in workflow order."""
    return [t.target for (s, _), t in TRANSITIONS.items() if s == state and role in t.roles]


def require(role, action):
    """Raise :class:`PermissionDeniedError` unless ``role`` may take ``action``."""
    if role not in PERMISSIONS.get(action, ()):
        raise PermissionDeniedError(f"role {role!r} may not {action.replace('_', ' ')}",
                                    details={"role": role, "action": action})


def check_step(transitions, names, state, target, role, noun):
    """Return the :class:`Transition` from ``state`` to ``target`` that ``role`` may take.

    The checks every ledger's workflow shares; ``names`` maps states to their
    Chinese names, which are accepted for ``target`` too.

    Raises
    ------
    ValidationError
        422 ``unknown_status``.
    ConflictError
        409 ``illegal_transition``.
    PermissionDeniedError
        403 ``forbidden``.
    """
    target = {v: k for k, v in names.items()}.get(target, target)
    states = tuple(names)
    if target not in states:
        raise ValidationError(f"unknown status {target!r}; expected one of {', '.join(states)}",
                              code="unknown_status", details={"field": "to", "allowed": states})
    step = transitions.get((state, target))
    if step is None:
        raise ConflictError(
            f"a {state} {noun} cannot move to {target}", code="illegal_transition",
            details={"from": state, "to": target,
                     "allowed": [t for (s, t) in transitions if s == state]})
    if role not in step.roles:
        raise PermissionDeniedError(
            f"role {role!r} may not {step.action} a {noun} ({state} → {target})",
            details={"role": role, "action": step.action, "roles": sorted(step.roles)})
    return step


def check_deadline(deadline, today, action, what="a deadline"):
    """422 ``deadline_required`` when ``deadline`` is None, ``deadline_in_past`` before ``today``.

    ``today`` defaults to the server's date; the request ledger passes the
    Asia/Shanghai date (:func:`geodata.periods.local_today`).
    """
    if deadline is None:
        raise ValidationError(f"{action} needs {what}", code="deadline_required",
                              details={"field": "deadline"})
    if deadline < (today or local_today()):
        raise ValidationError(f"deadline {deadline.isoformat()} is in the past",
                              code="deadline_in_past", details={"field": "deadline"})


def plan_transition(state, target, role, *, note="", deadline=None, supervision=None,
                    today=None):
    """Check one step and return its :class:`Transition`; nothing is changed.

    Parameters
    ----------
    state, target : str
        Current and wanted state (English names or 排查/整改/督导/销号).
    role : str
        The acting user's role.
    note : str
        Why; required for ``reject`` and ``reopen``.
    deadline : datetime.date, optional
        Rectification deadline; required for ``start`` and ``reopen``.
    supervision : dict, optional
        ``{"note", "checked_at", "photo_id"}``; required for ``close``.
    today : datetime.date, optional
        For the deadline check (default: today).

    Raises
    ------
    ValidationError
        422 ``unknown_status``, ``deadline_required``, ``deadline_in_past``,
        ``note_required``, ``supervision_required``, or ``unknown_property`` for a
        supervision record sent with a step that keeps none.
    ConflictError
        409 ``illegal_transition`` when the workflow has no such step from
        the current state.
    PermissionDeniedError
        403 when the role may not take the step.
    """
    step = check_step(TRANSITIONS, STATE_NAMES, state, target, role, "hazard")
    if step.needs_note and not (note or "").strip():
        raise ValidationError(f"{step.action} needs a note saying why", code="note_required",
                              details={"field": "note"})
    if step.needs_deadline:
        check_deadline(deadline, today, step.action, "a rectification deadline")
    # A record sent with a step that keeps none would be dropped with a 200: the sender
    # believes it was stored.
    if supervision is not None and not step.supervision:
        raise ValidationError(f"{step.action} ({step.source} → {step.target}) records no "
                              "supervision (督导记录): leave supervision out",
                              code="unknown_property", details={"field": "supervision"})
    # None alone is absent: {} is a record without its note (missing_field supervision.note).
    if step.action == "close" and supervision is None:
        raise ValidationError("closing (销号) needs a supervision record: who checked, when "
                              "and a note", code="supervision_required",
                              details={"field": "supervision"})
    return step


def check_escalation(current, target, reason):
    """Check raising a hazard's escalation level; return the new level.

    Raises
    ------
    ValidationError
        422 ``unknown_escalation`` or ``reason_required``.
    ConflictError
        409 ``illegal_escalation`` when ``target`` is not above ``current``.
    """
    if target not in ESCALATION_LEVELS:
        raise ValidationError(
            f"unknown escalation level {target!r}; expected one of "
            f"{', '.join(ESCALATION_LEVELS)}", code="unknown_escalation",
            details={"field": "to", "allowed": ESCALATION_LEVELS})
    if ESCALATION_LEVELS.index(target) <= ESCALATION_LEVELS.index(current):
        raise ConflictError(f"escalation can only go up: {current} → {target}",
                            code="illegal_escalation", details={"from": current, "to": target})
    if not (reason or "").strip():
        raise ValidationError("escalation needs a reason", code="reason_required",
                              details={"field": "reason"})
    return target


def is_overdue(status, deadline, today=None):
    """True when an open hazard's deadline has passed (derived, never stored)."""
    return status != "closed" and deadline is not None and deadline < (today or local_today())
