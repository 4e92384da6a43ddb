"""The fixed vocabularies of gridmap: layers, roles, hazard states and levels.

Plain constants with no imports, so the command line can offer them as
choices without loading SQLAlchemy (see :mod:`geodata.cli.context`).
"""

#: Layers that ``gridmap import`` and ``gridmap export`` read and write.
LAYERS = ("parks", "grids", "enterprises", "staff", "hazards")

#: Account roles, least privileged first.
ROLES = ("viewer", "inspector", "supervisor", "planner", "admin")

#: The hazard ledger's closed loop (排查 → 整改 → 督导 → 销号).
HAZARD_STATUSES = ("found", "rectifying", "supervising", "closed")
HAZARD_LEVELS = ("general", "major")
#: Graded handling (分级处置): who is handling the hazard, lowest first.
ESCALATION_LEVELS = ("grid", "park", "county", "city", "province")

STATE_NAMES = {"found": "排查", "rectifying": "整改", "supervising": "督导", "closed": "销号"}
ESCALATION_NAMES = {"grid": "网格", "park": "园区", "county": "县级", "city": "市级",
                    "province": "省级"}

#: Photo tags: before rectification (整改前), after it (整改后), taken on a visit (走访).
PHOTO_TAGS = ("before", "after", "visit")
PHOTO_TAG_NAMES = {"before": "整改前", "after": "整改后", "visit": "走访"}
#: Field records (:mod:`geodata.models.visit`): patrol 巡查, visit 走访, re-check 回头看.
VISIT_KINDS = ("patrol", "visit", "recheck")
#: Periods a visit rule counts in (Asia/Shanghai days and ISO weeks).
RULE_PERIODS = ("day", "week")
