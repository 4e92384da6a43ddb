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

import functools

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from geodata import domains
from geodata.models import Hazard, LedgerCounter, ServiceRequest
from geodata.storage import (adopt_row, backend_name, child_insert, child_params, child_shape,
                             given_columns, returned_columns, with_python_defaults)

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


def insert_numbered(session, obj, park, prefix, year, *, child):
    """On PostgreSQL, number ``obj`` and INSERT it and its ``child`` row in one statement.

    The common create, a generated number from an existing counter row:
    the counter's ``UPDATE``, the ``INSERT`` of ``obj`` with its ``code``
    formatted as :func:`geodata.domains.ledger_number` formats it, and the
    ``INSERT`` of ``child`` = ``(table, key column, values)`` whose key
    column takes ``obj``'s new id.  Creates of one park and year queue on
    the counter's row lock until they commit: as three statements, the lock
    was also held while the client's thread waited to run between them, and
    waits for that lock were what the backends of an 8-client benchmark
    mostly did (``pg_stat_activity``, see docs/scaling.md).

    Returns ``obj``, now persistent with its number, or None: on SQLite
    (which lets one writer in at a time anyway), or when the year's counter
    row does not exist yet or has no numbers left.  The caller then takes
    the general path (:func:`reserve`), which creates the row or refuses
    the number.
    """
    if backend_name(session) != "postgresql":
        return None
    mapper, _, set_values = given_columns(obj)
    values = with_python_defaults(mapper, set_values)
    defaults = {k: v for k, v in values.items() if k not in set_values}
    given = tuple(sorted(values))
    statement, returned = _numbered_insert(mapper, given, child_shape(child))
    params = {f"row_{k}": v for k, v in values.items()}
    params.update(child_params(child))
    params.update(the_park=park.id, the_ledger=prefix, the_year=year, at_least=0, count=1,
                  code_head=f"{prefix}{year}-")
    row = session.execute(statement, params).first()
    if row is None:
        return None
    return adopt_row(session, obj, returned + tuple(defaults),
                     tuple(row) + tuple(defaults.values()))


def sql_ledger_number(head, seq):
    """SQL for ``head`` (``<prefix><year>-``) then ``seq`` padded to 4 digits, as ``:04d`` pads."""
    text = sa.cast(seq, sa.Text)
    return head + sa.case((seq < 10000, sa.func.lpad(text, 4, "0")), else_=text)


@functools.cache
def _numbered_insert(mapper, given, child):
    # Built once per shape: WITH taken AS (UPDATE counter), inserted AS (INSERT obj SELECT …
    # FROM taken), child AS (INSERT child SELECT … FROM inserted) SELECT … FROM inserted.
    taken = _TAKE.where(_COUNTERS.c.last < domains.LEDGER_SEQ_MAX).cte("taken")
    table, columns = mapper.local_table, mapper.columns
    code = sql_ledger_number(sa.bindparam("code_head", type_=sa.String), taken.c.last)
    rows = sa.select(*(sa.bindparam(f"row_{k}", type_=columns[k].type) for k in given),
                     code).select_from(taken)
    returned = returned_columns(mapper, given)
    inserted = table.insert().from_select(
        [columns[k] for k in given] + [columns["code"]], rows, include_defaults=False).returning(
            *(columns[k] for k in returned)).cte("inserted")
    (primary,) = mapper.primary_key
    child = child_insert(child, inserted.c[primary.name]).cte("child")
    return sa.select(*(inserted.c[columns[k].name] for k in returned)).add_cte(child), returned


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
