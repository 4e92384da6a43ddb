"""Ledger numbers (台账编号) of both ledgers: hazards ``YH<year>-<seq>``, requests ``SQ...``.

A generated number is the park's highest of its year plus one, so a ledger
has no gaps.  The highest is kept per park, ledger and year in
``ledger_counters`` (:class:`~geodata.models.LedgerCounter`), and a number is
taken with one ``UPDATE ... SET last = last + 1 ... RETURNING last``: the row
lock it takes serialises the creates of one park and year, and on PostgreSQL
(READ COMMITTED) a waiting update re-reads the row the holder committed, so
two creates never get the same number; a create that fails rolls its number
back with it.  Creates therefore need no park-wide exclusive lock, only a
shared one that keeps grid edits out (:func:`geodata.services.ledger.lock_park`).

Every writer of ledger numbers goes through :func:`reserve`, given numbers
included, so the counter never falls behind what is stored.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from geodata import domains
from geodata.models import Hazard, LedgerCounter, ServiceRequest
from geodata.storage import backend_name

_LEDGERS = {"YH": Hazard, "SQ": ServiceRequest}
_COUNTERS = LedgerCounter.__table__


def reserve(session, park, prefix, year, *, count=1, at_least=0):
    """Raise the park's ``prefix``/``year`` counter to ``at_least``, take ``count`` numbers.

    Returns the new highest sequence number: the numbers taken are the
    ``count`` ones up to it (none for ``count=0``, which only records given
    numbers up to ``at_least``).  The counter row stays locked until the
    transaction ends; a missing row (a new year) starts from the highest
    number of that year already stored.
    """
    key = {"park_id": park.id, "ledger": prefix, "year": year}
    params = {"the_park": park.id, "the_ledger": prefix, "the_year": year, "at_least": at_least,
              "count": count}
    got = session.execute(_TAKE, params).scalar()
    if got is None:
        # ON CONFLICT: a concurrent create of the same new year inserted the row first.
        insert = (postgresql if backend_name(session) == "postgresql" else sqlite).insert
        session.execute(insert(_COUNTERS).values(
            **key, last=stored_highest(session, park, prefix, year)).on_conflict_do_nothing())
        got = session.execute(_TAKE, params).scalar_one()
    return got


def _take():
    # Built once (every create runs it): raise ``last`` to ``at_least``, add ``count``.
    c = _COUNTERS.c
    at_least = sa.bindparam("at_least", type_=sa.Integer)
    return (_COUNTERS.update()
            .where(c.park_id == sa.bindparam("the_park", type_=sa.Integer),
                   c.ledger == sa.bindparam("the_ledger", type_=sa.String),
                   c.year == sa.bindparam("the_year", type_=sa.Integer))
            .values(last=sa.case((c.last >= at_least, c.last), else_=at_least)
                    + sa.bindparam("count", type_=sa.Integer))
            .returning(c.last))


_TAKE = _take()


def stored_highest(session, park, prefix, year):
    """The highest sequence number of ``<prefix><year>-`` among the park's stored numbers."""
    model = _LEDGERS[prefix]
    codes = session.execute(sa.select(model.code).where(
        model.park_id == park.id, model.code.startswith(f"{prefix}{year}-"))).scalars()
    return max({domains.ledger_sequence(c, year, prefix) for c in codes} - {None}, default=0)


def next_number(session, park, prefix, year):
    """Take the park's next ``<prefix><year>-<seq>`` number (the year's highest plus one).

    Raises
    ------
    ConflictError
        409 ``ledger_numbers_exhausted`` past ``<prefix><year>-999999``.
    """
    return domains.ledger_number(prefix, year, reserve(session, park, prefix, year), park.code)
