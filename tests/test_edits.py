"""Grid edits on the demo park, on both backends: coverage kept, history kept, refusals clean."""

import json
import threading
from datetime import date

import pytest
import shapely
import sqlalchemy as sa

from geodata.crs import to_metric, to_storage
from geodata.errors import ConflictError, PreconditionFailedError, ValidationError
from geodata.models import Enterprise, Grid, GridStaff, Hazard
from geodata.services import edits
from geodata.services.demo_loader import load_demo
from geodata.services.grids import active_grids, grid_geometries
from geodata.services.parks import get_park
from geodata.storage import session_scope
from tests.conftest import stored_snapshot

PARK = "FGKFQ"
EPSG = 4547


@pytest.fixture
def demo(engine):
    """The demo park (60 level-1 grids, 25 workshop sub-grids) on the test backend."""
    load_demo(engine, today=date(2025, 11, 30))
    return engine


def edit(engine, operation, *args, **kwargs):
    """Run one edit service in its own write transaction."""
    with session_scope(engine, write=True) as session:
        return operation(session, get_park(session, PARK), *args, actor="planner-1",
                         reason="test", **kwargs)


def grids(engine, level=None):
    """``{code: (metric geometry, version)}`` of the active grids."""
    with session_scope(engine) as session:
        rows = active_grids(session, get_park(session, PARK), level=level)
        geoms = to_metric(grid_geometries(rows), EPSG)
        return {g.code: (geom, g.version) for g, geom in zip(rows, geoms)}


def assert_whole(runner, engine):
    """`gridmap check` passes and the level-1 areas still add up to the park's (1 m²)."""
    result = runner("check", "--park", PARK)
    assert result.exit_code == 0, result.output[-800:]
    with session_scope(engine) as session:
        park = get_park(session, PARK)
        total = sum(g.area_m2 for g in active_grids(session, park, level=1))
        assert total == pytest.approx(park.area_m2, abs=1.0)
        assert session.execute(sa.select(sa.func.count()).select_from(Enterprise).where(
            Enterprise.grid_id.is_(None))).scalar() == 0


def neighbours(cells, code):
    geom = cells[code][0]
    return [c for c, (g, _) in cells.items() if c != code and
            shapely.length(shapely.intersection(g.boundary, geom.buffer(0.01).boundary)) >= 0
            and g.buffer(0.01).intersection(geom).area > 1]


def with_children(engine):
    with session_scope(engine) as session:
        park = get_park(session, PARK)
        rows = active_grids(session, park)
        parents = {g.parent_id for g in rows if g.parent_id}
        return [g.code for g in rows if g.id in parents]


def test_every_operation_keeps_the_grid_whole(demo, runner):
    engine = demo
    assert_whole(runner, engine)
    with session_scope(engine) as session:
        loaded = get_park(session, PARK).version  # after the demo's grid and site imports

    # Split into two strips of equal area: the grid retires, two new codes follow the sequence.
    out = edit(engine, edits.split_grid, "FGKFQ-002", parts=2)
    assert out.retired == ["FGKFQ-002"] and sorted(out.added) == ["FGKFQ-061", "FGKFQ-062"]
    areas = [g["area_m2"] for g in out.grids.values()]
    assert areas[0] == pytest.approx(areas[1], rel=1e-3)
    assert_whole(runner, engine)

    # Split a grid with workshop sub-grids by a line: the sub-grids follow their ground.
    parent = with_children(engine)[0]
    cells = grids(engine)
    c = cells[parent][0].centroid
    line = to_storage(shapely.LineString([(c.x, c.y - 5000), (c.x, c.y + 5000)]), EPSG)
    out = edit(engine, edits.split_grid, parent, line=line)
    assert parent in out.retired and len([a for a in out.added if a.count("-") == 1]) == 2
    assert any(a.count("-") == 2 for a in out.added)  # sub-grids under the new parts
    assert_whole(runner, engine)

    # Merge two neighbours: staff, enterprises and hazards follow.
    cells = grids(engine, level=1)
    a = "FGKFQ-003"
    b = next(n for n in neighbours(cells, a) if n not in with_children(engine))
    with session_scope(engine) as session:
        ids = [g.id for g in session.execute(sa.select(Grid).where(
            Grid.code.in_([a, b]))).scalars()]
        staff_before = session.execute(sa.select(sa.func.count()).select_from(GridStaff).where(
            GridStaff.grid_id.in_(ids))).scalar()
    out = edit(engine, edits.merge_grids, [a, b],
               expected_versions={a: cells[a][1], b: cells[b][1]})
    (merged,) = out.added
    assert sorted(out.retired) == sorted([a, b])
    with session_scope(engine) as session:
        new_id = session.execute(sa.select(Grid.id).where(Grid.code == merged)).scalar_one()
        assert session.execute(sa.select(sa.func.count()).select_from(GridStaff).where(
            GridStaff.grid_id == new_id)).scalar() == staff_before
        assert session.execute(sa.select(sa.func.count()).select_from(Enterprise).where(
            Enterprise.grid_id.in_(ids))).scalar() == 0
        assert session.execute(sa.select(sa.func.count()).select_from(Hazard).where(
            Hazard.grid_id.in_(ids), Hazard.status != "closed")).scalar() == 0
        lineage = edits.lineage(session, get_park(session, PARK), merged)
        assert sorted(r["source"] for r in lineage) == sorted([a, b])
    assert_whole(runner, engine)

    # Reshape: grow a grid 20 m into one neighbour, which gives the same ground.
    cells = grids(engine, level=1)
    a = "FGKFQ-001"
    b = neighbours(cells, a)[0]
    grown = shapely.union(cells[a][0], shapely.intersection(
        cells[b][0], cells[a][0].buffer(20, join_style="mitre")))
    out = edit(engine, edits.reshape_grid, a, to_storage(grown, EPSG), neighbours=[b],
               expected_version=cells[a][1])
    assert out.reshaped == sorted([a, b]) and out.grids[a]["version"] == cells[a][1] + 1
    assert_whole(runner, engine)

    # Retire: the ground goes to the neighbour with the longest shared border.
    out = edit(engine, edits.retire_grid, "FGKFQ-012")
    assert out.retired[0] == "FGKFQ-012" and len(out.reshaped) == 1
    assert_whole(runner, engine)

    # Restore the reshaped grid as it was before any edit: the neighbour takes back its ground.
    out = edit(engine, edits.restore_grid, a, 0)
    with session_scope(engine) as session:
        history = edits.grid_history(session, get_park(session, PARK), a)
    assert [h["operation"] for h in history] == ["initial", "reshape", "restore"]
    moved = shapely.symmetric_difference(history[-1]["geometry"], history[0]["geometry"])
    assert shapely.area(to_metric(moved, EPSG)) < 0.01
    assert_whole(runner, engine)

    # Draw over ground left uncovered (a grid retired outside the editor, as a raw database
    # write would): the drawing is clipped to the gap and fills it.
    with session_scope(engine, write=True) as session:
        gone = session.execute(sa.select(Grid).where(Grid.code == "FGKFQ-030")).scalar_one()
        geom = grid_geometries([gone])[0]
        gone.active_to = date(2025, 12, 1)
        for kid in session.execute(sa.select(Grid).where(Grid.parent_id == gone.id)).scalars():
            kid.active_to = date(2025, 12, 1)
        session.execute(sa.update(Enterprise).where(Enterprise.grid_id == gone.id)
                        .values(grid_id=None))
    assert runner("check", "--park", PARK).exit_code == 1
    drawn = to_storage(to_metric(geom, EPSG).buffer(60), EPSG)
    out = edit(engine, edits.draw_grid, drawn)
    assert out.grids[out.added[0]]["area_m2"] == pytest.approx(
        shapely.area(to_metric(geom, EPSG)), abs=1.0)
    assert_whole(runner, engine)

    with session_scope(engine) as session:
        park = get_park(session, PARK)
        history = edits.park_history(session, park)
        assert [h["operation"] for h in history][::-1] == [
            "split", "split", "merge", "reshape", "retire", "restore", "draw"]
        # one version per edit after the demo's imports
        assert park.version == loaded + len(history) and history[0]["park_version"] == park.version
        # FGKFQ-030 was retired outside the editor: history cannot see it.
        assert len(edits.grids_at(session, park, 0)) == 60 + 25 - 1


def test_restore_the_whole_park_as_a_new_edit(demo, runner):
    engine = demo
    before = grids(engine)
    edit(engine, edits.split_grid, "FGKFQ-007", parts=3)
    edit(engine, edits.merge_grids, ["FGKFQ-061", "FGKFQ-062"])
    out = edit(engine, edits.restore_park, 0)
    assert sorted(out.retired) == ["FGKFQ-063", "FGKFQ-064"] and "FGKFQ-007" in out.reshaped
    after = grids(engine)
    assert set(after) == set(before)
    assert all(after[c][0].equals_exact(before[c][0], 1e-6) for c in before)
    assert_whole(runner, engine)
    # Codes are never reused: the next split continues after 064.
    assert sorted(edit(engine, edits.split_grid, "FGKFQ-008", parts=2).added) == [
        "FGKFQ-065", "FGKFQ-066"]


def test_refused_edits_say_why_and_change_nothing(demo, runner):
    engine = demo
    cells = grids(engine, level=1)
    a = "FGKFQ-022"
    b = neighbours(cells, a)[0]
    into_b = shapely.union(cells[a][0], shapely.intersection(
        cells[b][0], cells[a][0].buffer(25, join_style="mitre")))
    with session_scope(engine) as session:
        park = get_park(session, PARK)
        boundary = to_metric(shapely.from_wkb(bytes(session.execute(
            sa.select(sa.func.ST_AsBinary(park.__class__.boundary))).scalar())), EPSG)
    edge = min(cells, key=lambda c: cells[c][0].distance(boundary.boundary))
    beyond = shapely.union(cells[edge][0], cells[edge][0].buffer(40).difference(boundary))
    cases = [
        ("grid_overlap", ValidationError, edits.reshape_grid,
         (a, to_storage(into_b, EPSG)), {"neighbours": ()}),
        ("outside_park", ValidationError, edits.reshape_grid,
         (edge, to_storage(beyond, EPSG)), {"neighbours": ()}),
        ("would_leave_gap", ValidationError, edits.reshape_grid,
         (a, to_storage(cells[a][0].buffer(-30), EPSG)), {"neighbours": ()}),
        ("would_leave_gap", ValidationError, edits.retire_grid, (a,), {"to": "FGKFQ-059"}),
        ("stale_version", ConflictError, edits.split_grid, (a,),
         {"parts": 2, "expected_version": cells[a][1] - 1 or 99}),
        ("precondition_failed", PreconditionFailedError, edits.split_grid, (a,),
         {"parts": 2, "if_match": 99}),
        ("not_adjacent", ValidationError, edits.merge_grids, (["FGKFQ-001", "FGKFQ-060"],), {}),
        ("empty_result", ValidationError, edits.draw_grid, (to_storage(cells[a][0], EPSG),), {}),
    ]
    snapshot = stored_snapshot(engine)
    for code, error, operation, args, kwargs in cases:
        with pytest.raises(error) as raised:
            edit(engine, operation, *args, **kwargs)
        assert raised.value.code == code, (code, raised.value.message)
        if isinstance(raised.value, ValidationError) and code in (
                "grid_overlap", "outside_park", "would_leave_gap"):
            assert raised.value.details["area_m2"] > 1
            assert "m²" in raised.value.message
            problem = raised.value.details["problems"][0]
            if operation is edits.reshape_grid:
                assert problem["geometry"]["type"] in ("Polygon", "MultiPolygon")
        assert stored_snapshot(engine) == snapshot, code
    assert runner("check", "--park", PARK).exit_code == 0


def test_stale_edit_after_a_concurrent_one(demo):
    engine = demo
    version = grids(engine)["FGKFQ-015"][1]
    with session_scope(engine) as session:
        etag = get_park(session, PARK).version
    edit(engine, edits.split_grid, "FGKFQ-020", parts=2, if_match=etag)
    with pytest.raises(PreconditionFailedError):
        edit(engine, edits.split_grid, "FGKFQ-015", parts=2, if_match=etag)
    edit(engine, edits.split_grid, "FGKFQ-015", parts=2, expected_version=version)
    with pytest.raises(ConflictError) as raised:
        edit(engine, edits.retire_grid, "FGKFQ-016", expected_version=version + 5)
    assert raised.value.details == {"grid": "FGKFQ-016", "expected": version + 5,
                                    "current": 1}
    with pytest.raises(PreconditionFailedError):  # an If-Match ETag of the grid
        edit(engine, edits.retire_grid, "FGKFQ-016", expected_version='W/"7"')
    edit(engine, edits.retire_grid, "FGKFQ-016", expected_version='"1"')


def test_edit_commands(demo, runner, tmp_path):
    out = runner("edit", "split", "FGKFQ-040", "--parts", "2", "--park", "FGKFQ",
                 "--actor", "张工", "--reason", "两家企业入驻", "--format", "json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["retired"] == ["FGKFQ-040"] and result["coverage"]["valid"]
    version = result["park_version"]
    stale = runner("edit", "merge", *result["added"], "--park", "FGKFQ", "--actor", "x",
                   "--if-match", version - 1)
    assert stale.exit_code == 2 and "changed since you read it" in stale.stderr
    merged = runner("edit", "merge", *result["added"], "--park", "FGKFQ", "--actor", "x",
                    "--if-match", version)
    assert merged.exit_code == 0 and "merge" in merged.output
    refused = runner("edit", "retire", "FGKFQ-041", "--to", "FGKFQ-001", "--park", "FGKFQ",
                     "--actor", "x")
    assert refused.exit_code == 2 and "would leave a gap of" in refused.stderr
    restored = runner("edit", "restore", "--edit", "0", "--park", "FGKFQ", "--actor", "x")
    assert restored.exit_code == 0, restored.output
    assert "reshaped FGKFQ-040" in restored.output
    history = runner("edit", "history", "--park", "FGKFQ")
    assert [line.split("\t")[3] for line in history.output.splitlines()] == [
        "restore", "merge", "split"]
    then = tmp_path / "then.geojson"
    assert runner("edit", "history", "--park", "FGKFQ", "--at", 1, "--out", then).exit_code == 0
    assert "FGKFQ-061" in then.read_text(encoding="utf-8")
    assert runner("check", "--park", "FGKFQ").exit_code == 0


def test_concurrent_edits_exactly_one_wins(demo):
    """Two planners edit from the same park version; the second waits for the lock, then 412."""
    import threading

    engine = demo
    with session_scope(engine) as session:
        etag = get_park(session, PARK).version
    outcome = {}

    def second():
        try:
            edit(engine, edits.split_grid, "FGKFQ-045", parts=2, if_match=etag)
            outcome["second"] = "applied"
        except PreconditionFailedError as exc:
            outcome["second"] = exc.code

    with session_scope(engine, write=True) as session:
        edits.split_grid(session, get_park(session, PARK), "FGKFQ-044", parts=2,
                         actor="planner-1", if_match=etag)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # blocked on the park lock until the first commits
    thread.join(30)
    assert outcome == {"second": "precondition_failed"}
    with session_scope(engine) as session:
        assert [h["operation"] for h in edits.park_history(session, get_park(session, PARK))] \
            == ["split"]


def test_absorb_a_sliver_grid(runner, engine, tmp_path):
    """A 0.5 m wide grid between two others goes to the neighbour with the longer border."""
    from tests.conftest import metric_box
    from tests.test_transfer import feature, write_geojson

    write_geojson(tmp_path / "park.geojson", [feature(
        metric_box(0, 0, 1000, 1000), code="TP", name="测试园区", division_code="411621")])
    assert runner("import", "parks", tmp_path / "park.geojson").exit_code == 0
    cells = [feature(metric_box(0, 0, 500, 1000), code="TP-001"),
             feature(metric_box(500, 0, 500.5, 1000), code="TP-002"),
             feature(metric_box(500.5, 0, 1000, 600), code="TP-003"),
             feature(metric_box(500.5, 600, 1000, 1000), code="TP-004")]
    path = write_geojson(tmp_path / "grids.geojson", cells)
    assert runner("import", "grids", path, "--park", "TP").exit_code == 0
    out = runner("edit", "absorb-slivers", "--park", "TP", "--actor", "x", "--format", "json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["retired"] == ["TP-002"] and result["reshaped"] == ["TP-001"]
    assert result["grids"]["TP-001"]["area_m2"] == pytest.approx(500.5 * 1000, abs=0.5)
    assert runner("check", "--park", "TP").exit_code == 0


class _Paused:
    """Wraps ``editing.split_equal_area``: the first call stops until the test says go.

    It makes "while the split computes" a state the test controls, with no
    timing: a write lock held during the computation would make the other
    connection's write fail at once (busy timeout 0, lock timeout).
    """

    def __init__(self, monkeypatch):
        from geodata import editing

        self.real = editing.split_equal_area
        self.computing, self.go = threading.Event(), threading.Event()
        monkeypatch.setattr(editing, "split_equal_area", self)

    def __call__(self, *args, **kwargs):
        if not self.computing.is_set():
            self.computing.set()
            self.go.wait(120)  # a safety net if the test failed before saying go
        return self.real(*args, **kwargs)

    def run(self, engine, code, **kwargs):
        """Split ``code`` in a thread, the way the API and CLI do (not a writer up front)."""
        outcome = {}

        def work():
            try:
                with session_scope(engine) as session:
                    outcome["edit"] = edits.split_grid(session, get_park(session, PARK), code,
                                                       parts=2, actor="planner-1", **kwargs)
            except Exception as exc:  # handed to the test thread, which asserts on it
                outcome["error"] = exc

        thread = threading.Thread(target=work)
        thread.start()
        assert self.computing.wait(120), "the split never started computing"
        return thread, outcome


def _impatient_engine(engine):
    """A second engine whose writers fail at once instead of waiting for a lock."""
    from geodata.storage import make_engine

    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        return make_engine(url, connect_args={"options": "-c lock_timeout=100"})
    return make_engine(url, busy_timeout_s=0)


def test_a_long_edit_computes_without_holding_the_write_lock(demo, monkeypatch):
    """While a split computes, another connection logs a hazard in that grid and commits.

    The split then writes, and the new hazard is re-located into a piece.
    """
    from geodata.models.base import to_shapes
    from geodata.services import ledger
    from geodata.services.grids import get_grid

    engine = demo
    with session_scope(engine) as session:
        grid = get_grid(session, get_park(session, PARK), "FGKFQ-044")
        spot = shapely.point_on_surface(to_shapes([grid.geom])[0])
    paused = _Paused(monkeypatch)
    thread, outcome = paused.run(engine, "FGKFQ-044")
    other = _impatient_engine(engine)
    try:
        with session_scope(other, write=True) as session:
            hazard_id = ledger.create_hazard(
                session, get_park(session, PARK), point=spot, category="消防安全",
                actor=ledger.Actor("inspector-1", "inspector"), description="拆分期间上报").id
    finally:
        paused.go.set()
        thread.join(120)
        other.dispose()
    assert "error" not in outcome, outcome
    added = outcome["edit"].added
    with session_scope(engine) as session:
        hazard = session.get(Hazard, hazard_id)
        assert hazard.grid.active_to is None
        assert hazard.grid.code.split("-")[:2] in [a.split("-")[:2] for a in added]


def test_an_edit_that_conflicts_while_computing_is_409_and_writes_nothing(demo, monkeypatch):
    """A split computed from version v; another planner splits the same grid meanwhile."""
    engine = demo
    version = grids(engine)["FGKFQ-044"][1]
    paused = _Paused(monkeypatch)
    thread, outcome = paused.run(engine, "FGKFQ-044", expected_version=version)
    other = _impatient_engine(engine)
    try:
        won = edit(other, edits.split_grid, "FGKFQ-044", parts=3)
    finally:
        paused.go.set()
        other.dispose()
    snapshot = stored_snapshot(engine)
    thread.join(120)
    error = outcome.get("error")
    assert isinstance(error, ConflictError) and error.http_status == 409, outcome
    assert error.code == "stale_version" and "FGKFQ-044" in error.message
    assert error.details == {"grid": "FGKFQ-044", "expected": version, "current": version + 1}
    assert stored_snapshot(engine) == snapshot
    with session_scope(engine) as session:
        history = edits.park_history(session, get_park(session, PARK))
        assert [h["operation"] for h in history] == ["split"]
        assert len(won.added) == 3


@pytest.mark.parametrize("length, ok", [(61, True), (62, False), (63, False)])
def test_generated_sub_grid_codes_stay_within_the_code_domain(runner, engine, tmp_path,
                                                              length, ok):
    """A sub-grid's new code is the parent's plus ``-NN``: 66 characters were stored (SQLite)
    that no lookup accepts and PostgreSQL's column refuses."""
    from tests.conftest import metric_box
    from tests.test_transfer import feature, write_geojson

    parent = "P" * length
    assert runner("import", "parks", write_geojson(tmp_path / "park.geojson", [feature(
        metric_box(0, 0, 1000, 1000), code="T", name="园区", division_code="411621")])
    ).exit_code == 0
    assert runner("import", "grids", write_geojson(tmp_path / "grids.geojson", [
        feature(metric_box(0, 0, 1000, 1000), code=parent),
        feature(metric_box(0, 0, 500, 500), code="C1", parent_code=parent)]),
        "--park", "T").exit_code == 0
    before = stored_snapshot(engine)
    result = runner("edit", "split", "C1", "--park", "T", "--parts", "2", "--actor", "t")
    if ok:
        assert result.exit_code == 0, result.output
        with session_scope(engine) as session:
            codes = set(session.execute(sa.select(Grid.code)).scalars())
        assert {parent + "-01", parent + "-02"} <= codes
        return
    assert result.exit_code == 2, result.output
    assert f"would have {length + 3} characters, more than the 64" in result.stderr
    assert stored_snapshot(engine) == before
