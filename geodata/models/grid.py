"""Grid (网格) and sub-grid: the cells of a park, nested by ``parent``."""

from datetime import date
from typing import Optional

from sqlalchemy import (CheckConstraint, Date, Float, ForeignKey, Integer, String,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, geometry_column

GRID_KINDS = ("area", "enterprise", "workshop")


class Grid(Base):
    """A grid cell.

    ``code`` is unique within its park for ever: a retired grid keeps its row
    (``active_to`` set), so the unique constraint stops its code being reused.
    Codes follow the national unit-grid pattern ``<park>-<seq>[-<sub>]``
    (:mod:`geodata.gridcodes`).  ``geom`` is a MultiPolygon in EPSG:4326;
    ``area_m2`` is measured in the park's metric CRS.
    """

    __tablename__ = "grids"
    __table_args__ = (
        UniqueConstraint("park_id", "code"),
        CheckConstraint("level >= 1", name="level_positive"),
        CheckConstraint("kind IN ('area', 'enterprise', 'workshop')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    parent_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16), default="area")
    geom = geometry_column("MULTIPOLYGON")
    area_m2: Mapped[float] = mapped_column(Float)
    active_from: Mapped[date] = mapped_column(Date, default=date.today)
    active_to: Mapped[Optional[date]] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, default=1)

    park = relationship("Park")
    parent = relationship("Grid", remote_side=[id])

    __mapper_args__ = {"version_id_col": version}
