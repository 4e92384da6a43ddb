"""Park (开发区/园区): the area that grids must tile edge to edge."""

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, Float, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from geodata.models.base import Base, UTCDateTime, geometry_column


class Park(Base):
    """A development zone.

    ``boundary`` is a MultiPolygon in EPSG:4326 (holes are rivers, lakes or
    excluded land).  ``metric_epsg`` is the projected CRS in which its areas
    and tolerances are measured (CGCS2000 3-degree Gauss-Krüger by longitude,
    see :mod:`geodata.crs`); ``area_m2`` is the boundary's area there.
    ``require_after_photo``: a major (重大) hazard of this park is closed only
    once it has a photo tagged ``after`` (整改后), see ``gridmap parks set``.
    """

    __tablename__ = "parks"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    division_code: Mapped[str] = mapped_column(String(6))
    boundary = geometry_column("MULTIPOLYGON")
    metric_epsg: Mapped[int] = mapped_column(Integer)
    area_m2: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=lambda: datetime.now(timezone.utc))
    version: Mapped[int] = mapped_column(Integer, default=1)
    require_after_photo: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())

    __mapper_args__ = {"version_id_col": version}


class ParkSitesStamp(Base):
    """A park's sites stamp: the key of the cached hidden-unit detection (:mod:`geodata.hidden`).

    Database triggers set ``stamp`` to a fresh random value whenever an
    enterprise of the park is inserted or deleted or its site, host or park
    changes (migrations 0010, 0011); nothing else writes it.  A park without
    a row has had no enterprise written (stamp 0).  Its own table, not a
    column of the park: the park row is the lock grid edits and ledger
    creates take, and an enterprise write waiting on it deadlocked.
    """

    __tablename__ = "park_sites_stamps"

    park_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stamp: Mapped[int] = mapped_column(BigInteger)


class ParkCoverageStamp(Base):
    """A park's coverage stamp: the key of the cached coverage report.

    Database triggers set ``stamp`` to a fresh random value whenever a grid
    of the park is inserted or deleted or its geometry, code, parent, level,
    retired state or park changes, and when the park is inserted or its
    boundary or metric CRS changes (migration 0013); nothing else writes it.
    See :func:`geodata.services.coverage.coverage_report`.
    """

    __tablename__ = "park_coverage_stamps"

    park_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stamp: Mapped[int] = mapped_column(BigInteger)
