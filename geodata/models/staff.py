"""Grid staff (网格员): the people responsible for a grid."""

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from geodata.models.base import Base

STAFF_ROLES = {
    "grid_chief": "网格长",
    "full_time": "专职网格员",
    "part_time": "兼职网格员",
    "party_instructor": "党建指导员",
}


class GridStaff(Base):
    """A grid chief, full-time or part-time member, or party-building instructor.

    ``published`` says whether their contact board (公示牌) is up.
    """

    __tablename__ = "grid_staff"
    __table_args__ = (CheckConstraint(
        "role IN ('grid_chief', 'full_time', 'part_time', 'party_instructor')",
        name="role_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(20))
    published: Mapped[bool] = mapped_column(Boolean, default=True)

    grid = relationship("Grid")
