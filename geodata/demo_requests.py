"""A month of enterprise requests (诉求) for the demo park, deterministic from a seed.

The proportions follow the seed articles: recruiting (用工) is what parks
help with most (46 firms at the spring job fair, 4 000 hires helped),
financing (融资: 52 firms matched with 8 banks) next, then policy support
(政策扶持: tech-firm and 专精特新 applications), land (用地: 标准地,
property certificates), roads and commuting (道路出行: traffic lights,
road repairs, bus lines) and industrial gas (工业用燃气).  Most requests
come from grid visits (走访: every cadre visits weekly), then the
platform (周企通), the phone line and walk-ins.

Most requests of the month are resolved and followed up; a few are past
their deadline; a few follow-ups were 不满意 and reopened them.  Pure data:
:func:`geodata.services.requests.import_requests` stores it.
"""

from datetime import datetime, time, timedelta, timezone

import numpy as np

CST = timezone(timedelta(hours=8), "CST")  # history timestamps are Beijing time

#: category: (share, days to the deadline, departments, (request, resolution) pairs)
_CATEGORIES = {
    "用工": (0.30, 15, ["县人社局", "县就业服务中心"], [
        ("订单增加，急需招聘缝纫工30名", "组织专场招聘会，已招聘到岗"),
        ("缺少数控技术工人，希望对接职业院校", "对接县职教中心，签订校企合作协议"),
        ("希望参加春风行动招聘会，发布岗位信息", "已安排参加招聘会，岗位信息已发布"),
        ("新招员工岗前培训补贴如何申请", "指导企业提交培训补贴申请材料，已受理"),
        ("旺季用工缺口约50人，请协助发布招聘信息", "通过微信群发布招聘信息，协助招工")]),
    "融资": (0.18, 15, ["县金融工作局", "县农商银行", "区国投担保公司"], [
        ("流动资金紧张，希望申请贷款500万元", "对接银行完成授信，贷款已发放"),
        ("贷款即将到期，希望对接担保公司办理续贷", "担保公司出具担保函，续贷已办理"),
        ("技改项目申请贴息贷款", "贴息申请材料已报送，资金已拨付"),
        ("希望了解科技型企业信用贷款产品", "组织银企对接会，企业已提交贷款申请")]),
    "政策扶持": (0.16, 15, ["县工信局", "县科技局", "县发改委"], [
        ("申报高新技术企业认定需要指导", "上门开展政策宣讲，指导完成申报"),
        ("咨询省级专精特新企业申报条件", "一对一辅导，申报材料已提交"),
        ("技改补贴资金拨付进度缓慢", "协调财政部门，补贴资金已拨付"),
        ("科技型中小企业评价材料准备", "帮办代办完成评价入库")]),
    "用地": (0.10, 30, ["县自然资源局", "园区规划建设局"], [
        ("扩建厂房需新增用地约20亩", "用地预审已完成，纳入供地计划"),
        ("不动产权证办理进度缓慢", "开辟绿色通道，不动产权证已办结"),
        ("咨询标准地出让手续", "讲解标准地出让流程，代办材料已提交"),
        ("厂区红线与道路规划冲突", "组织规划部门现场核实，调整方案已批复")]),
    "道路出行": (0.09, 30, ["县交通运输局", "市政管理处", "县公交公司"], [
        ("厂区门前道路破损，货车进出困难", "市政部门完成路面破损修补"),
        ("上下班高峰路口缺少交通信号灯", "交通信号灯已架设并投入使用"),
        ("员工通勤希望增加公交线路", "公交公司已调整线路，增设园区站点"),
        ("园区道路夜间照明不足", "路灯已修复并增设")]),
    "工业用燃气": (0.07, 15, ["县燃气公司", "县城市管理局"], [
        ("天然气管道未接入，生产用气靠罐车", "燃气管道已接入并通气"),
        ("用气高峰期管网压力不足", "燃气公司调压后供气稳定"),
        ("新建车间申请燃气报装", "报装已受理，完成验收通气")]),
    "其他": (0.10, 7, ["园区综合办公室", "县市场监管局", "县供电公司"], [
        ("厂区周边排水不畅，雨季积水", "组织排水疏通，积水问题已解决"),
        ("生产线扩能需要电力增容", "供电公司完成增容"),
        ("员工子女入学咨询", "协调教育部门，已妥善安排")]),
}
_SOURCES = {"visit": 0.55, "platform": 0.15, "phone": 0.20, "walk_in": 0.10}
_SURNAMES = list("王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华建国红梅志")
DAYS = 30


def _stamp(day, rng, after=None):
    """A Beijing-time timestamp on ``day`` in working hours, later than ``after``."""
    at = datetime.combine(day, time(8), tzinfo=CST) + timedelta(minutes=int(rng.integers(0, 540)))
    if after is not None and at <= after:
        at = after + timedelta(minutes=int(rng.integers(10, 120)))
    return at


def _quota(values, shares, n):
    """``n`` values in the given shares exactly (largest remainders), in order."""
    exact = np.array(shares) * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[:n - counts.sum()]] += 1
    return np.repeat(np.array(values, dtype=object), counts)


def build_requests(firms, staff, today, seed=20251130, n=None):
    """Return request rows for :func:`geodata.services.requests.import_requests`.

    Parameters
    ----------
    firms : list of (credit_code, grid_code, contact_name)
        The park's enterprises in a stable order; those without a grid are skipped.
    staff : dict
        ``grid_code -> (chief, member)``: who hands over (the grid chief, a
        包企干部) and who takes, runs and closes requests (a full-time member).
    today : datetime.date
        Local today; requests are received in the :data:`DAYS` days before it.
    n : int, optional
        Number of requests (default: one for every five enterprises).
    """
    rng = np.random.default_rng(seed)
    firms = [f for f in firms if f[1] in staff]
    n = n or max(1, len(firms) // 5)
    names = list(_CATEGORIES)
    category = rng.permutation(_quota(names, [v[0] for v in _CATEGORIES.values()], n))
    source = rng.permutation(_quota(list(_SOURCES), list(_SOURCES.values()), n))
    # older requests first: ledger numbers follow the date received
    age = np.sort(rng.integers(0, DAYS, size=n))[::-1]
    firm = rng.choice(len(firms), size=n)
    # 2 of every 60 requests run late, 2 are reopened after a 不满意 follow-up
    old = np.flatnonzero(age >= 18)
    special = rng.permutation(old)
    late = set(special[:max(1, n // 30)].tolist())
    reopened = set(special[max(1, n // 30):max(2, n // 15)].tolist())
    rows = []
    for i in range(n):
        share, days, departments, pairs = _CATEGORIES[category[i]]
        ask, answer = pairs[int(rng.integers(len(pairs)))]
        credit, grid, contact = firms[firm[i]]
        chief, member = staff[grid]
        received = today - timedelta(days=int(age[i]))
        department = str(rng.choice(departments))
        responsible = str(rng.choice(_SURNAMES)) + "".join(rng.choice(_GIVEN, size=2))
        deadline = received + timedelta(days=days if i not in late else 7)
        taker = member if source[i] == "visit" else chief
        row = dict(credit_code=credit, category=str(category[i]),
                   description=ask, received_date=received,
                   source=str(source[i]), department=None, deadline=None, responsible=None,
                   status="accepted", resolution="", satisfaction=None)
        t = _stamp(received, rng)
        history = [dict(at=t, actor=taker, from_status=None, to_status="accepted",
                        action="accept", note=row["description"])]

        def step(at, actor, to, action, note="", satisfaction=None):
            history.append(dict(at=at, actor=actor, from_status=row["status"], to_status=to,
                                action=action, note=note, satisfaction=satisfaction))
            row["status"] = to

        # how far it got by today: fresh requests are still being handled
        reach = (1 if age[i] == 0 else 2 if age[i] == 1 else 3 if age[i] <= 4 or i in late
                 else 4 if age[i] <= 6 else 5)
        if reach >= 2:
            t = _stamp(received + timedelta(days=int(rng.integers(0, 2))), rng, after=t)
            row.update(department=department, deadline=deadline, responsible=responsible)
            step(t, chief, "assigned", "assign", f"交办{department}，{responsible}负责")
        if reach >= 3:
            t = _stamp(t.date() + timedelta(days=int(rng.integers(0, 2))), rng, after=t)
            step(t, member, "in_progress", "start", f"{department}已接办")
        # half of the reopened ones are resolved again and followed up; half still run
        rounds = 2 if i in reopened and i % 2 == 0 else 1
        for attempt in range(rounds):
            if reach < 4:
                break
            span = max(1, min((deadline - t.date()).days, (today - t.date()).days - 2))
            t = _stamp(t.date() + timedelta(days=int(rng.integers(1, span + 1))), rng, after=t)
            row["resolution"] = answer
            step(t, member, "resolved", "resolve", answer)
            if reach < 5 or t.date() >= today:
                break
            t = _stamp(min(t.date() + timedelta(days=int(rng.integers(1, 4))), today), rng,
                       after=t)
            if attempt == 0 and i in reopened:
                row["satisfaction"] = "unsatisfied"
                step(t, chief, "followed_up", "follow_up", "企业反映问题未根本解决",
                     "unsatisfied")
                step(t, chief, "in_progress", "reopen", "企业反映问题未根本解决，重新办理")
                continue
            level = "satisfied" if rng.random() < 0.85 else "basically_satisfied"
            row["satisfaction"] = level
            step(t, chief, "followed_up", "follow_up", f"回访{contact or '企业负责人'}", level)
        # nothing happens after today: a stamp drawn later is pulled back to today
        now = datetime.combine(today, time(18), tzinfo=CST)
        for event in history:
            event["at"] = min(event["at"], now)
        row["history"] = history
        rows.append(row)
    return rows
