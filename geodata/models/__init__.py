"""The gridmap data model (SQLAlchemy 2 + GeoAlchemy2), one module per concept."""

from geodata.models.base import Base
from geodata.models.counter import LedgerCounter
from geodata.models.edit import EDIT_OPERATIONS, GridEdit, GridEditItem, GridLineage
from geodata.models.enterprise import Enterprise
from geodata.models.grid import GRID_KINDS, Grid
from geodata.models.hazard import (ESCALATION_LEVELS, HAZARD_LEVELS, HAZARD_STATUSES, Hazard,
                                   HazardEvent)
from geodata.models.park import Park, ParkCoverageStamp, ParkSitesStamp
from geodata.models.request import RequestCategory, RequestEvent, ServiceRequest
from geodata.models.staff import STAFF_ROLES, GridStaff
from geodata.models.supervision import SUPERVISION_OUTCOMES, Photo, Supervision
from geodata.models.user import USER_ROLES, ApiToken, User, UserGrid
from geodata.models.visit import (RULE_PERIODS, VISIT_KINDS, EnterpriseLink, IdempotencyRecord,
                                  Visit, VisitEvent, VisitRule)
from geodata.models.weekly import ASSESSMENT_METRICS, AssessmentWeight, WeeklyAssignment

__all__ = ["Base", "EDIT_OPERATIONS", "Enterprise", "ESCALATION_LEVELS", "GRID_KINDS", "Grid",
           "GridEdit", "GridEditItem", "GridLineage", "HAZARD_LEVELS", "HAZARD_STATUSES",
           "Hazard", "HazardEvent", "LedgerCounter", "Park", "ParkCoverageStamp", "ParkSitesStamp",
           "RequestCategory",
           "RequestEvent",
           "ServiceRequest",
           "STAFF_ROLES", "GridStaff", "SUPERVISION_OUTCOMES",
           "Photo", "Supervision", "USER_ROLES", "ApiToken", "User", "UserGrid",
           "RULE_PERIODS", "VISIT_KINDS", "EnterpriseLink", "IdempotencyRecord", "Visit",
           "VisitEvent", "VisitRule", "ASSESSMENT_METRICS", "AssessmentWeight",
           "WeeklyAssignment"]
