"""The SQL statements one hazard create and one transition send, pinned by count.

A change that adds a round trip to either path fails here (count, not time; see
docs/scaling.md, "API throughput").  The commit is not a statement.
"""

import sqlalchemy as sa

from tests.ledger_helpers import future
from tests.test_hazards_api import api  # noqa: F401 -- the fixture

#: Per backend: the statements' first words, in order.
CREATE = {
    "sqlite": ["BEGIN", "SELECT api_tokens", "SELECT parks", "SELECT anon_1",  # grids, sites
               "BEGIN IMMEDIATE", "SELECT parks.version",
               "UPDATE ledger_counters", "INSERT INTO hazards", "INSERT INTO hazard_events",
               "SELECT hazards"],
    "postgresql": ["SELECT api_tokens", "SELECT parks", "SELECT anon_1",  # grids and sites
                   "UPDATE ledger_counters", "INSERT INTO hazards",
                   "INSERT INTO hazard_events", "SELECT hazards"],
}
TRANSITION = {
    "sqlite": ["BEGIN", "SELECT api_tokens", "BEGIN IMMEDIATE", "SELECT hazards",
               "UPDATE hazards", "INSERT INTO hazard_events"],
    "postgresql": ["SELECT api_tokens", "SELECT hazards", "UPDATE hazards",
                   "INSERT INTO hazard_events"],
}


def _statements(api, call):  # noqa: F811
    engine = api.app.extensions["gridmap.engine"]
    sent = []

    def count(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        response = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert response.status_code in (200, 201), response.json
    return response, sent


def _starts(sent, expected):
    return [s for s, e in zip(sent, expected) if not s.lstrip().startswith(e)]


def test_a_create_and_a_transition_send_these_statements(api):  # noqa: F811
    backend = api.app.extensions["gridmap.engine"].dialect.name
    api.create("T-001")  # warm: the first request of a process also reads the schema state
    created, sent = _statements(api, lambda: api.create("T-004"))
    assert len(sent) == len(CREATE[backend]) and not _starts(sent, CREATE[backend]), sent
    assert created.json["grid"]["code"] == "T-004" and created.json["code"].startswith("YH")
    moved, sent = _statements(api, lambda: api.move(
        created.json["id"], "rectifying", 1, deadline=future().isoformat()))
    assert len(sent) == len(TRANSITION[backend]) and not _starts(sent, TRANSITION[backend]), sent
    assert moved.json["status"] == "rectifying" and moved.json["version"] == 2
