"""Export the request ledger (诉求台账) as CSV or XLSX with Chinese headers.

The writers are the hazard ledger's (:mod:`geodata.ledger_export`): UTF-8
CSV with a byte-order mark, one XLSX sheet ``诉求台账`` with a frozen header,
cells that a spreadsheet would run as a formula prefixed with ``'``.
"""

import functools
from datetime import datetime

from geodata.ledger_export import export_suffix, listed, write_export
from geodata.periods import local_now, local_today
from geodata.services import requests as service
from geodata.vocabulary import REQUEST_STATE_NAMES, SATISFACTION_NAMES, SOURCE_NAMES

#: (header, key) in column order.
COLUMNS = [
    ("序号", "seq"), ("诉求编号", "code"), ("园区", "park"), ("所属网格", "grid_code"),
    ("网格名称", "grid_name"), ("企业名称", "enterprise"), ("统一社会信用代码", "credit_code"),
    ("诉求类别", "category"), ("诉求内容", "description"), ("受理日期", "received_date"),
    ("诉求来源", "source"), ("交办单位", "department"), ("责任人", "responsible"),
    ("办理期限", "deadline"), ("当前状态", "status"), ("是否逾期", "overdue"),
    ("办理结果", "resolution"), ("办结时间", "resolved_at"), ("回访满意度", "satisfaction"),
]
TITLE = "诉求台账"
WIDTHS = (6, 14, 8, 14, 12, 24, 22, 10, 30, 12, 8, 16, 10, 12, 8, 8, 30, 16, 10)


def _local(moment):
    # Stored in UTC; the ledger reads Beijing time.
    return local_now(datetime.fromisoformat(moment)).strftime("%Y-%m-%d %H:%M") if moment else ""


def request_rows(session, *, today=None, window=None, **filters):
    """Return ``(rows, total)``: the ledger rows (dicts keyed as :data:`COLUMNS`) for the
    filters, all of them or one ``window`` (:func:`geodata.ledger_export.listed`).

    ``filters`` are those of :func:`geodata.services.requests.list_requests`.
    """
    today = today or local_today()
    items, total, first = listed(functools.partial(service.list_requests, session, today=today,
                                                   **filters), window)
    rows = []
    for seq, item in enumerate(service.request_dicts(session, items, today=today), first):
        grid = item["grid"] or {}
        rows.append({
            "seq": seq, "code": item["code"], "park": item["park"],
            "grid_code": grid.get("code", ""), "grid_name": grid.get("name", ""),
            "enterprise": item["enterprise"]["name"],
            "credit_code": item["enterprise"]["credit_code"],
            "category": item["category"], "description": item["description"],
            "received_date": item["received_date"], "source": SOURCE_NAMES[item["source"]],
            "department": item["department"] or "", "responsible": item["responsible"] or "",
            "deadline": item["deadline"] or "", "status": REQUEST_STATE_NAMES[item["status"]],
            "overdue": "是" if item["overdue"] else "否", "resolution": item["resolution"],
            "resolved_at": _local(item["resolved_at"]),
            "satisfaction": SATISFACTION_NAMES.get(item["satisfaction"], ""),
        })
    return rows, total


def export_requests(session, path, **filters):
    """Write the request ledger to ``path`` (``.csv`` or ``.xlsx``); return the number of rows.

    Raises
    ------
    ValidationError
        422 ``unsupported_format`` for another extension.
    """
    export_suffix(path)
    return write_export(path, request_rows(session, **filters)[0], columns=COLUMNS, title=TITLE,
                        widths=WIDTHS)
