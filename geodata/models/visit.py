"""Field work: visits (走访), patrols (巡查) and re-checks (回头看), their schedules.

* :class:`Visit` is one record made in the field, usually on a phone.
* :class:`VisitEvent` is its append-only history (triggers refuse UPDATE
  and DELETE on both backends, as for ``hazard_events``).
* :class:`EnterpriseLink` is a cadre's linked enterprise (联系企业).
* :class:`VisitRule` sets how often a park's enterprises are visited or
  patrolled, and when a closed hazard is re-checked
  (:mod:`geodata.services.visits` explains the defaults).
* :class:`IdempotencyRecord` keeps the answer of a create or transition
  sent with an ``Idempotency-Key`` (:mod:`geodata.services.idempotency`).
"""

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import (CheckConstraint, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime, geometry_column
from geodata.vocabulary import RULE_PERIODS, VISIT_KINDS  # noqa: F401  (re-exported)


def _utcnow():
    return datetime.now(timezone.utc)


class Visit(Base):
    """One patrol, visit or re-check at a point (EPSG:4326).

    ``occurred_at`` is the device's time (what the user says happened),
    ``recorded_at`` the server's time of storing it; both UTC.
    ``accuracy_m`` is the GPS accuracy in metres, when the device gave one.
    ``grid_id`` and ``enterprise_id`` are resolved from the point like a
    hazard's (:func:`geodata.services.hazards.locate`) unless the enterprise
    is named.  ``client_id`` is the phone's UUID for the record: sending it
    again never makes a second visit.  ``user_id`` and ``actor`` are who
    logged it (the name is kept as written evidence).
    """

    __tablename__ = "visits"
    __table_args__ = (
        CheckConstraint("kind IN ('patrol', 'visit', 'recheck')", name="kind_known"),
        CheckConstraint("accuracy_m IS NULL OR (accuracy_m >= 0 AND accuracy_m <= 10000)",
                        name="accuracy_range"),
        UniqueConstraint("client_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    grid_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    enterprise_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    hazard_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("hazards.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    location = geometry_column("POINT")
    accuracy_m: Mapped[Optional[float]] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    findings: Mapped[str] = mapped_column(Text, default="")
    client_id: Mapped[str] = mapped_column(String(36))

    grid = relationship("Grid")
    enterprise = relationship("Enterprise")
    events = relationship("VisitEvent", order_by="VisitEvent.id", back_populates="visit")


class VisitEvent(Base):
    """One step in a visit's life: logged, a photo added.  Append-only (triggers)."""

    __tablename__ = "visit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(
        ForeignKey("visits.id", ondelete="RESTRICT"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")

    visit = relationship("Visit", back_populates="events")


class EnterpriseLink(Base):
    """A cadre's linked enterprise (联系企业): the user visits it (by default weekly)."""

    __tablename__ = "enterprise_links"
    __table_args__ = (UniqueConstraint("user_id", "enterprise_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)

    user = relationship("User")
    enterprise = relationship("Enterprise")


class VisitRule(Base):
    """How often field work is expected in a park, or at one enterprise.

    ``kind`` ``visit`` or ``patrol``: ``times`` records of that kind per
    ``period`` (day or ISO week, Asia/Shanghai).  A rule without
    ``enterprise_id`` is the park's default for its linked enterprises;
    one with it applies to that enterprise only.  ``kind`` ``recheck``
    (回头看): a closed hazard is due for a re-check ``after_days`` days after
    it was closed.
    """

    __tablename__ = "visit_rules"
    __table_args__ = (
        CheckConstraint("kind IN ('patrol', 'visit', 'recheck')", name="kind_known"),
        CheckConstraint(
            "(kind = 'recheck' AND after_days IS NOT NULL AND after_days BETWEEN 0 AND 3650 "
            "AND period IS NULL AND times IS NULL) OR (kind <> 'recheck' AND after_days IS NULL"
            " AND period IN ('day', 'week') AND times BETWEEN 1 AND 48)", name="shape"),
        UniqueConstraint("park_id", "enterprise_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    enterprise_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    period: Mapped[Optional[str]] = mapped_column(String(8))
    times: Mapped[Optional[int]] = mapped_column(Integer)
    after_days: Mapped[Optional[int]] = mapped_column(Integer)
    #: Periods that ended before the rule was set are not owed under it.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)

    enterprise = relationship("Enterprise")


class IdempotencyRecord(Base):
    """The stored answer of one write sent with an ``Idempotency-Key``, per user.

    ``request_hash`` is the SHA-256 of the method, path and body; ``response``
    is the JSON envelope written by the server (status, body, headers).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    method_path: Mapped[str] = mapped_column(String(300))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
