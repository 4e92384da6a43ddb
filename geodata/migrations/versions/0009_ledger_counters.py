"""Ledger counters: the highest ledger number per park, ledger (YH, SQ) and year.

Creates ``ledger_counters`` and fills it from the stored hazard and request
numbers, so the next generated number of an upgraded database is the same as
before (the year's highest plus one).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The ledger-number shape of geodata.domains, frozen here as this revision knew it.
_LEDGERS = {"YH": "hazards", "SQ": "service_requests"}


def upgrade():
    """Create ``ledger_counters`` and backfill it from ``hazards`` and ``service_requests``."""
    counters = op.create_table(
        "ledger_counters",
        sa.Column("park_id", sa.Integer, sa.ForeignKey(
            "parks.id", ondelete="RESTRICT", name="fk_ledger_counters_park_id_parks"),
            nullable=False),
        sa.Column("ledger", sa.String(2), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("last", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("park_id", "ledger", "year", name="pk_ledger_counters"),
        sa.CheckConstraint("ledger IN ('YH', 'SQ')", name="ck_ledger_counters_ledger_known"),
        sa.CheckConstraint("last >= 0", name="ck_ledger_counters_last_not_negative"),
    )
    bind = op.get_bind()
    last = {}
    for prefix, table in _LEDGERS.items():
        shape = re.compile(rf"^{prefix}(\d{{4}})-(\d{{1,6}})$")
        for park_id, code in bind.execute(sa.text(f"SELECT park_id, code FROM {table}")):
            match = shape.match(code or "")
            if match:
                key = (park_id, prefix, int(match.group(1)))
                last[key] = max(last.get(key, 0), int(match.group(2)))
    if last:
        op.bulk_insert(counters, [{"park_id": p, "ledger": ledger, "year": y, "last": n}
                                  for (p, ledger, y), n in sorted(last.items())])


def downgrade():
    """Drop the counters (only for throwaway databases)."""
    op.drop_table("ledger_counters")
