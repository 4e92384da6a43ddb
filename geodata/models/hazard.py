"""Hazard (隐患) and its append-only history."""

from datetime import date, datetime, timezone
from typing import Optional

from sqlalchemy import (CheckConstraint, Date, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime, geometry_column
from geodata.vocabulary import ESCALATION_LEVELS, HAZARD_LEVELS, HAZARD_STATUSES  # noqa: F401


def _utcnow():
    return datetime.now(timezone.utc)


class Hazard(Base):
    """A safety hazard at a point (EPSG:4326).

    ``code`` is the ledger number (台账编号, ``YH<year>-<seq>``), unique per park.

    ``grid_id`` (deepest grid containing the point) and ``enterprise_id`` are
    resolved spatially when not given.  Overdue is derived from ``deadline``
    and ``status``, never stored.
    """

    __tablename__ = "hazards"
    __table_args__ = (
        CheckConstraint("status IN ('found', 'rectifying', 'supervising', 'closed')",
                        name="status_known"),
        CheckConstraint("level IN ('general', 'major')", name="level_known"),
        UniqueConstraint("park_id", "code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    grid_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    enterprise_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    location = geometry_column("POINT")
    category: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16), default="general")
    description: Mapped[str] = mapped_column(Text, default="")
    found_date: Mapped[date] = mapped_column(Date)
    deadline: Mapped[Optional[date]] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="found")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Added by migration 0002 (the ledger); values checked by a trigger/constraint.
    escalation: Mapped[str] = mapped_column(String(16), default="grid")
    closed_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())

    park = relationship("Park")
    grid = relationship("Grid")
    enterprise = relationship("Enterprise")
    events = relationship("HazardEvent", order_by="HazardEvent.id", back_populates="hazard")

    __mapper_args__ = {"version_id_col": version}


class HazardEvent(Base):
    """One change of a hazard: who, when, from which status to which, and why.

    The table is append-only: database triggers (see the first migration)
    refuse UPDATE and DELETE on both backends.
    """

    __tablename__ = "hazard_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    hazard_id: Mapped[int] = mapped_column(
        ForeignKey("hazards.id", ondelete="RESTRICT"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    from_status: Mapped[Optional[str]] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    # Added by migration 0002: the workflow action (NULL for imported history)
    # and the escalation step, e.g. ``grid>park``.
    action: Mapped[Optional[str]] = mapped_column(String(24))
    escalation: Mapped[Optional[str]] = mapped_column(String(40))

    hazard = relationship("Hazard", back_populates="events")
