"""Enterprise (企业), including hidden units inside a host's premises (厂中厂/园中园)."""

from typing import Optional

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, geometry_column


class Enterprise(Base):
    """An enterprise site.

    ``site`` is a Polygon (the parcel) or a Point (only the gate is known),
    EPSG:4326.  ``host_id`` points at the enterprise whose premises this unit
    sits in.  ``grid_id`` is the level-1 grid the site lies in, resolved
    spatially on import.
    """

    __tablename__ = "enterprises"
    __table_args__ = (UniqueConstraint("park_id", "credit_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    grid_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    host_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("enterprises.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18))
    industry: Mapped[Optional[str]] = mapped_column(String(100))
    employees: Mapped[Optional[int]] = mapped_column(Integer)
    contact_name: Mapped[Optional[str]] = mapped_column(String(100))
    contact_phone: Mapped[Optional[str]] = mapped_column(String(32))
    registered: Mapped[bool] = mapped_column(Boolean, default=True)
    site = geometry_column("GEOMETRY")
    version: Mapped[int] = mapped_column(Integer, default=1)

    host = relationship("Enterprise", remote_side=[id])
    grid = relationship("Grid")

    __mapper_args__ = {"version_id_col": version}
