"""The demo park in the database, and the QGIS round trip of its grids."""

from datetime import date

import geopandas as gpd
import numpy as np
import sqlalchemy as sa
from click.testing import CliRunner

from geodata.cli import main
from geodata.models import Enterprise, Grid, GridStaff, Hazard, HazardEvent, Park
from geodata.services.demo_loader import load_demo
from geodata.services.hazards import is_overdue
from geodata.storage import session_scope
from tests.conftest import stored_snapshot

TODAY = date(2025, 11, 30)


def test_demo_loads_with_its_figures_and_is_idempotent(engine):
    load_demo(engine, today=TODAY)
    with session_scope(engine) as session:
        count = lambda model: session.execute(  # noqa: E731
            sa.select(sa.func.count()).select_from(model)).scalar()
        park = session.execute(sa.select(Park)).scalar_one()
        assert abs(park.area_m2 - 12.53e6) < 0.02 * 12.53e6
        assert park.metric_epsg == 4547
        assert count(Grid) == 85 and count(Enterprise) == 621 and count(Hazard) == 920
        hidden = session.execute(sa.select(sa.func.count()).where(
            Enterprise.host_id.is_not(None))).scalar()
        assert hidden == 117
        # Every non-hidden enterprise was assigned a grid spatially on import.
        assert session.execute(sa.select(sa.func.count()).where(
            Enterprise.grid_id.is_(None))).scalar() == 0
        chiefs = session.execute(sa.select(GridStaff.grid_id).where(
            GridStaff.role == "grid_chief")).scalars().all()
        level1 = session.execute(sa.select(Grid.id).where(Grid.level == 1)).scalars().all()
        assert sorted(chiefs) == sorted(level1)
        hazards = session.execute(sa.select(Hazard)).scalars().all()
        assert sum(h.status == "closed" for h in hazards) == 890
        assert sum(is_overdue(h, TODAY) for h in hazards) == 8
        # Closed hazards carry the whole loop in their history.
        assert count(HazardEvent) >= 4 * 890
    before = stored_snapshot(engine)
    assert "already loaded" in load_demo(engine, today=TODAY)
    assert stored_snapshot(engine) == before


def test_grids_round_trip_through_geopackage(engine, db_url, tmp_path):
    load_demo(engine, today=TODAY)
    cli = CliRunner()
    out = tmp_path / "grids.gpkg"
    assert cli.invoke(main, ["--db", db_url, "export", "grids", str(out)]).exit_code == 0
    park = tmp_path / "park.gpkg"
    assert cli.invoke(main, ["--db", db_url, "export", "parks", str(park)]).exit_code == 0
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    for args in (["init-db"], ["import", "parks", str(park)], ["import", "grids", str(out)],
                 ["export", "grids", str(tmp_path / "back.gpkg")]):
        result = cli.invoke(main, ["--db", fresh, *args])
        assert result.exit_code == 0, result.output
    original = gpd.read_file(out).set_index("code").sort_index()
    back = gpd.read_file(tmp_path / "back.gpkg").set_index("code").sort_index()
    assert list(back.index) == list(original.index)
    assert (back["parent_code"].fillna("") == original["parent_code"].fillna("")).all()
    distance = back.to_crs(4547).geometry.hausdorff_distance(original.to_crs(4547).geometry)
    assert np.nanmax(distance.to_numpy()) < 1e-3  # metres
