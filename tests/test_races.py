"""Creates racing for one unique key answer as if they came one after the other.

Two clients send, at the same moment, creates that name the same
client-chosen key: a hazard's ledger number, a visit's ``client_id``.  On
PostgreSQL such creates run side by side (the park is locked shared), so both
pass the service's check and the second insert hits the unique constraint;
it must still get the answer a sequential request gets (409
``duplicate_hazard_code``; the visit's replay, 200), and exactly one row is
stored.  On SpatiaLite the writers queue, which must answer the same.
"""


import pytest

from geodata.periods import local_today
from tests.conftest import table_counts
from tests.ledger_helpers import at_once
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)
from tests.test_visits_api import visit_body


def _at_once(send):
    return sorted(at_once(lambda _i: send()), key=lambda r: r.status_code)


@pytest.mark.parametrize("attempt", range(3))
def test_two_hazards_with_one_ledger_number_one_is_409(api, engine, attempt):  # noqa: F811
    code = f"YH{local_today().year}-0777"
    before = table_counts(engine)["hazards"]
    first, second = _at_once(lambda: api.create(code=code))
    assert (first.status_code, second.status_code) == (201, 409), (first.json, second.json)
    assert second.json["error"]["code"] == "duplicate_hazard_code"
    assert table_counts(engine)["hazards"] == before + 1


@pytest.mark.parametrize("attempt", range(3))
def test_one_visit_sent_twice_at_once_is_stored_once_and_replayed(
        api, engine, attempt):  # noqa: F811
    body = visit_body()
    before = table_counts(engine)
    replay, created = _at_once(lambda: api.call("POST", "/api/parks/T/visits", "inspector",
                                                body))
    assert (replay.status_code, created.status_code) == (200, 201), (replay.json, created.json)
    assert replay.json == created.json
    after = table_counts(engine)
    assert (after["visits"], after["visit_events"]) == (before["visits"] + 1,
                                                        before["visit_events"] + 1)
