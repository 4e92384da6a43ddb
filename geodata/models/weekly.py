"""The weekly routine's assignments (周交办) and the per-park assessment weights (考核权重)."""

from datetime import date, datetime, timezone
from typing import Optional

from sqlalchemy import (CheckConstraint, Date, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime

#: Metrics of the weighted assessment score (docs/weekly.md gives the formula).
ASSESSMENT_METRICS = ("visits", "closure", "resolution", "satisfaction", "overdue")


def _utcnow():
    return datetime.now(timezone.utc)


class WeeklyAssignment(Base):
    """One 周交办 item: a hazard task or a request given to an owner with a deadline.

    The assignment is linked to exactly one hazard (a hazard task, moved
    through the hazard ledger) or one request (moved through the request
    ledger, possibly created by the assignment); its progress is the linked
    item's state, derived on reading, never stored twice.
    """

    __tablename__ = "weekly_assignments"
    __table_args__ = (
        CheckConstraint("(hazard_id IS NULL) <> (request_id IS NULL)", name="one_target"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    week: Mapped[str] = mapped_column(String(8))
    hazard_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("hazards.id", ondelete="RESTRICT"), index=True)
    request_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("service_requests.id", ondelete="RESTRICT"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    deadline: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)

    owner = relationship("User")
    hazard = relationship("Hazard")
    request = relationship("ServiceRequest")


class AssessmentWeight(Base):
    """A park's weight of one assessment metric; a metric without a row uses the default."""

    __tablename__ = "assessment_weights"
    __table_args__ = (
        CheckConstraint("metric IN ('visits', 'closure', 'resolution', 'satisfaction', "
                        "'overdue')", name="metric_known"),
        CheckConstraint("weight >= 0 AND weight <= 100", name="weight_range"),
        UniqueConstraint("park_id", "metric"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    metric: Mapped[str] = mapped_column(String(16))
    weight: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
