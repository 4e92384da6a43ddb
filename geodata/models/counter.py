"""Ledger counters (台账编号计数): the highest number given out per park, ledger and year."""

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from geodata.models.base import Base


class LedgerCounter(Base):
    """The highest sequence number of ``<ledger><year>-<seq>`` stored in a park.

    ``ledger`` is the number's prefix (``YH`` hazards, ``SQ`` requests, see
    :data:`geodata.domains.LEDGER_PREFIXES`).  ``last`` equals the highest
    sequence number of that year among the park's stored numbers, generated
    or given: :mod:`geodata.services.numbering` keeps it so, and taking the
    next number is one ``UPDATE ... RETURNING`` on this row.
    """

    __tablename__ = "ledger_counters"
    __table_args__ = (
        CheckConstraint("ledger IN ('YH', 'SQ')", name="ledger_known"),
        CheckConstraint("last >= 0", name="last_not_negative"),
    )

    park_id: Mapped[int] = mapped_column(ForeignKey("parks.id", ondelete="RESTRICT"),
                                         primary_key=True)
    ledger: Mapped[str] = mapped_column(String(2), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)
