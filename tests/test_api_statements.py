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
               "UPDATE ledger_counters", "INSERT INTO hazards", "INSERT INTO hazard_events"],
    # The number, the hazard and its first event: one statement (numbering.insert_numbered).
    "postgresql": ["SELECT api_tokens", "SELECT parks", "SELECT anon_1",  # grids and sites
                   "WITH taken AS"],
}
TRANSITION = {
    "sqlite": ["BEGIN", "SELECT api_tokens", "BEGIN IMMEDIATE", "SELECT hazards",
               "UPDATE hazards", "INSERT INTO hazard_events"],
    # The update and its history event: one statement (storage.update_row's child).
    "postgresql": ["SELECT api_tokens", "SELECT hazards", "WITH updated AS"],
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


def test_a_create_answers_the_names_a_read_shows(api):  # noqa: F811
    """The create's answer takes its names from the placement, not from a query: the
    same as a read of the hazard shows, with an enterprise and without one."""
    for where, grid, firm in (((150, 150), "T-003", "甲公司"), ("T-004", "T-004", None)):
        created = api.create(where)
        assert created.status_code == 201, created.json
        read = api.call("GET", f"/api/hazards/{created.json['id']}")
        assert created.json == read.json and created.headers["ETag"] == read.headers["ETag"]
        assert created.json["grid"] == {"code": grid, "name": f"第{grid[-1]}网格"}
        assert (created.json["enterprise"] or {}).get("name") == firm


def test_names_kept_from_the_placement_are_not_shown_once_the_hazard_moved(engine):
    """A created hazard moved to another grid in the same session shows the new grid's
    names (queried), not those it was placed with."""
    from geodata.models import Grid
    from geodata.services import ledger
    from geodata.services.parks import get_park
    from geodata.storage import session_scope
    from tests.ledger_helpers import ACTORS, build_park, lonlat

    build_park(engine, users=False)
    with session_scope(engine) as session:
        hazard = ledger.create_hazard(session, get_park(session, "T"),
                                      point=ledger.parse_point(*lonlat("T-001")),
                                      category="其他", actor=ACTORS["inspector"])
        assert ledger.hazard_dicts(session, [hazard])[0]["grid"]["code"] == "T-001"
        hazard.grid_id = session.execute(sa.select(Grid.id).where(
            Grid.code == "T-002")).scalar_one()
        session.flush()
        shown = ledger.hazard_dicts(session, [hazard])[0]["grid"]
        assert shown == {"code": "T-002", "name": "第2网格"}
