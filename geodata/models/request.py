"""Enterprise requests (企业诉求), their append-only history and each park's extra categories."""

from datetime import date, datetime, timezone
from typing import Optional

from sqlalchemy import (CheckConstraint, Date, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime
from geodata.vocabulary import REQUEST_SOURCES, REQUEST_STATUSES, SATISFACTION_LEVELS


def _utcnow():
    return datetime.now(timezone.utc)


def _within(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ServiceRequest(Base):
    """A problem an enterprise brings (用工, 用地, 融资 ...), from 受理 to 回访.

    ``code`` is the ledger number (``SQ<year>-<seq>``, the year of
    ``received_date``), unique per park.  ``grid_id`` is the enterprise's
    grid (企业有格: the matter is handled in that grid); grid edits move open
    requests with their enterprise, done ones keep theirs.  ``department``
    (交办单位), ``deadline`` and ``responsible`` are set when it is handed
    over (交办); ``resolution`` is the latest 办结 note and
    ``satisfaction`` the latest 回访 answer.  Overdue is derived, never stored.
    ``visit_id`` is the visit (走访) the request was raised on, if any.
    """

    __tablename__ = "service_requests"
    __table_args__ = (
        CheckConstraint(_within("status", REQUEST_STATUSES), name="status_known"),
        CheckConstraint(_within("source", REQUEST_SOURCES), name="source_known"),
        CheckConstraint(f"satisfaction IS NULL OR {_within('satisfaction', SATISFACTION_LEVELS)}",
                        name="satisfaction_known"),
        UniqueConstraint("park_id", "code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    grid_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    visit_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("visits.id", ondelete="RESTRICT"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    received_date: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    department: Mapped[Optional[str]] = mapped_column(String(200))
    deadline: Mapped[Optional[date]] = mapped_column(Date)
    responsible: Mapped[Optional[str]] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    resolution: Mapped[str] = mapped_column(Text, default="")
    resolved_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime())
    satisfaction: Mapped[Optional[str]] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    enterprise = relationship("Enterprise")
    grid = relationship("Grid")
    events = relationship("RequestEvent", order_by="RequestEvent.id", back_populates="request")

    __mapper_args__ = {"version_id_col": version}


class RequestEvent(Base):
    """One step of a request: who, when, from which status to which, the action and why.

    ``satisfaction`` is set on 回访 events.  The table is append-only:
    database triggers (migration 0007) refuse UPDATE and DELETE on both
    backends.
    """

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("service_requests.id", ondelete="RESTRICT"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    from_status: Mapped[Optional[str]] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")
    satisfaction: Mapped[Optional[str]] = mapped_column(String(24))

    request = relationship("ServiceRequest", back_populates="events")


class RequestCategory(Base):
    """A request category a park added to the defaults (:data:`DEFAULT_REQUEST_CATEGORIES`)."""

    __tablename__ = "request_categories"
    __table_args__ = (UniqueConstraint("park_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
