"""The gridmap data model (SQLAlchemy 2 + GeoAlchemy2), one module per concept."""

from geodata.models.base import Base
from geodata.models.edit import EDIT_OPERATIONS, GridEdit, GridEditItem, GridLineage
from geodata.models.enterprise import Enterprise
from geodata.models.grid import GRID_KINDS, Grid
from geodata.models.hazard import HAZARD_LEVELS, HAZARD_STATUSES, Hazard, HazardEvent
from geodata.models.park import Park
from geodata.models.staff import STAFF_ROLES, GridStaff

__all__ = ["Base", "EDIT_OPERATIONS", "Enterprise", "GRID_KINDS", "Grid", "GridEdit",
           "GridEditItem", "GridLineage", "HAZARD_LEVELS", "HAZARD_STATUSES", "Hazard",
           "HazardEvent", "Park", "STAFF_ROLES", "GridStaff"]
