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

#: The request ledger (诉求台账): 受理 → 交办 → 办理 → 办结 → 回访.
REQUEST_STATUSES = ("accepted", "assigned", "in_progress", "resolved", "followed_up")
REQUEST_STATE_NAMES = {"accepted": "受理", "assigned": "交办", "in_progress": "办理",
                       "resolved": "办结", "followed_up": "回访"}
#: How a request reached the park: 走访 (a grid visit), 电话, 上门, 平台 (e.g. 周企通).
REQUEST_SOURCES = ("visit", "phone", "walk_in", "platform")
SOURCE_NAMES = {"visit": "走访", "phone": "电话", "walk_in": "上门", "platform": "平台"}
#: The enterprise's answer at 回访; ``unsatisfied`` reopens the request.
SATISFACTION_LEVELS = ("satisfied", "basically_satisfied", "unsatisfied")
SATISFACTION_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意",
                      "unsatisfied": "不满意"}
#: Every park's request categories; a park may add its own (``gridmap requests categories``).
DEFAULT_REQUEST_CATEGORIES = ("用工", "用地", "融资", "政策扶持", "道路出行", "工业用燃气", "其他")
#: Photo tags: before rectification (整改前), after it (整改后), taken on a visit (走访).
PHOTO_TAGS = ("before", "after", "visit")
PHOTO_TAG_NAMES = {"before": "整改前", "after": "整改后", "visit": "走访"}
#: Field records (:mod:`geodata.models.visit`): patrol 巡查, visit 走访, re-check 回头看.
VISIT_KINDS = ("patrol", "visit", "recheck")
#: Periods a visit rule counts in (Asia/Shanghai days and ISO weeks).
RULE_PERIODS = ("day", "week")
