"""Grid edits (网格调整): who changed which grids, when, why, and from what to what."""

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base, UTCDateTime

EDIT_OPERATIONS = ("draw", "reshape", "set_geometry", "split", "merge", "absorb_slivers",
                   "retire", "restore", "import", "adopt_proposal")


def _utcnow():
    return datetime.now(timezone.utc)


class GridEdit(Base):
    """One edit of a park's grids, applied in one transaction.

    ``park_version`` is the park's version after the edit (every edit bumps
    it, so it works as an ``ETag`` of the park's grid layer).  ``problems``
    holds the JSON of coverage problems accepted with ``--allow-problems``
    (empty otherwise).  The table is append-only (database triggers).
    """

    __tablename__ = "grid_edits"

    id: Mapped[int] = mapped_column(primary_key=True)
    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    operation: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    park_version: Mapped[int] = mapped_column(Integer)
    problems: Mapped[str] = mapped_column(Text, default="")

    items = relationship("GridEditItem", order_by="GridEditItem.id", back_populates="edit")


class GridEditItem(Base):
    """The state of one grid before and after an edit.

    Geometries are WKB of EPSG:4326 MultiPolygons, so a restore is exact;
    ``before_wkb`` is NULL for a grid the edit created.  ``before_active`` and
    ``after_active`` say whether the grid was active (not retired).
    """

    __tablename__ = "grid_edit_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    edit_id: Mapped[int] = mapped_column(
        ForeignKey("grid_edits.id", ondelete="RESTRICT"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    before_wkb: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    after_wkb: Mapped[bytes] = mapped_column(LargeBinary)
    before_active: Mapped[bool] = mapped_column(default=False)
    after_active: Mapped[bool] = mapped_column(default=True)
    before_version: Mapped[Optional[int]] = mapped_column(Integer)
    after_version: Mapped[int] = mapped_column(Integer)

    edit = relationship("GridEdit", back_populates="items")


class GridLineage(Base):
    """Which grid a grid came from: one row per (grid, source) pair.

    ``relation`` is the operation that made the link (``split``, ``merge``,
    ``absorb``, ``retire``, ``reparent``...).
    """

    __tablename__ = "grid_lineage"

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    source_id: Mapped[int] = mapped_column(
        ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    edit_id: Mapped[int] = mapped_column(
        ForeignKey("grid_edits.id", ondelete="RESTRICT"), index=True)
    relation: Mapped[str] = mapped_column(String(32))
