"""Property: nothing a client can write makes a later read fail (both backends).

Hypothesis sends random values (any Unicode text with NUL, surrogates and
controls, very long strings, code-like strings, dates and date-times with
any year and offset, huge integers) through the hazard create, transition,
supervision and escalation endpoints and through grid edits.  Each write
must answer 2xx or a JSON 4xx, and afterwards the ledger page, its CSV and
XLSX, every hazard's history, the dashboard, the map page and the map API
must all answer 200.  The database accumulates across examples, so a bad
value stored by one example would break the reads of all later ones.
"""

from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger_helpers import lonlat
from tests.test_hazards_api import api  # noqa: F401  (the hazard API fixture)

YEAR = date.today().year

texts = st.one_of(st.none(), st.text(max_size=40), st.text(min_size=190, max_size=2100),
                  st.sampled_from(["a\x00b", "\ud800", "\u202e", "x\r\ny", "😀<b>&'\"",
                                   "长" * 2001]))
codes = st.one_of(
    st.none(), st.text(max_size=40),
    st.from_regex(r"\A[Yy][Hh]-?[0-9]{0,5}-?[0-9]{0,30}\Z"),
    st.builds(lambda y, n: f"YH{y}-{n}", st.integers(0, 9999), st.integers(0, 10**30)))
days = st.one_of(st.none(), st.dates().map(date.isoformat), st.text(max_size=12),
                 st.integers(-2**70, 2**70))
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.one_of(
    st.none(), st.datetimes(timezones=st.just(None)).map(datetime.isoformat),
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets),
    st.text(max_size=30))
numbers = st.one_of(st.none(), st.integers(), st.integers(2**62, 2**80), st.booleans(),
                    st.floats(allow_nan=False))


def _check(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if response.status_code >= 400:
        assert {"code", "message"} <= set(response.json["error"])
    return response


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(cell=st.sampled_from(["T-001", "T-002", "T-003", "T-004"]), code=codes, description=texts,
       found=days, deadline=days, note=texts, checked_at=moments, supervisor=texts,
       photo_id=numbers, reason=texts, offset=numbers, split=st.booleans())
def test_random_values_never_break_a_read(api, cell, code, description, found,  # noqa: F811
                                          deadline, note, checked_at, supervisor, photo_id,
                                          reason, offset, split):
    lon, lat = lonlat(cell)
    body = {"lon": lon, "lat": lat, "category": "消防安全", "code": code,
            "description": description, "found_date": found}
    created = _check(api.call("POST", "/api/parks/T/hazards", "inspector",
                              {k: v for k, v in body.items() if v is not None}))
    if created.status_code == 201:
        hid, version = created.json["id"], created.json["version"]
        steps = [("rectifying", "inspector", {"deadline": deadline, "note": note}),
                 ("rectifying", "inspector", {"deadline": date.today().isoformat()}),
                 ("supervising", "inspector", {"note": note}),
                 ("closed", "supervisor", {"supervision": {
                     "note": note or "ok", "checked_at": checked_at, "supervisor": supervisor,
                     "photo_id": photo_id}}),
                 ("closed", "supervisor", {"supervision": {"note": "复核合格"}})]
        for to, role, fields in steps:
            moved = _check(api.move(hid, to, version, role, **fields))
            if moved.status_code == 200:
                version = moved.json["version"]
        _check(api.call("POST", f"/api/hazards/{hid}/escalations", "inspector",
                        {"to": "park", "reason": reason, "version": version}))
    if split:
        grids = api.call("GET", "/api/parks/T/edits/state", "planner").json["grids"]
        first = grids["features"][0]["properties"]
        _check(api.call("POST", "/api/parks/T/edits/split", "planner", {
            "code": first["code"], "parts": 2, "reason": reason}))
    _check(api.call("GET", f"/api/hazards?park=T&offset={offset}", "viewer"))
    # Lone surrogates cannot be UTF-8: send their bytes as a client could.
    q = quote((note or "").encode("utf-8", "surrogatepass"))
    _check(api.call("GET", f"/api/parks/T/search?q={q}", "viewer"))
    for url in ("/parks/T/ledger", "/parks/T/ledger.csv", "/parks/T/ledger.xlsx",
                "/parks/T/dashboard", "/parks/T/map", "/parks/T/edit", "/api/parks/T",
                "/api/parks/T/hazards", "/api/parks/T/grids", "/api/parks/T/summaries",
                "/api/parks/T/dashboard", "/api/parks/T/edits", "/api/parks/T/edits/state"):
        response = api.call("GET", url, "planner")
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
    listed = api.call("GET", "/api/hazards?park=T&limit=1000", "viewer")
    assert listed.status_code == 200
    for hazard in listed.json["hazards"]:
        for url in (f"/api/hazards/{hazard['id']}", f"/api/hazards/{hazard['id']}/history"):
            response = api.call("GET", url, "viewer")
            assert response.status_code == 200, (url, response.get_data(as_text=True)[:500])
