"""What a push says: what, where (estate, shelter, device, port or bay), since when, in Chinese
and English, with the one-tap acknowledge link. Pure formatting, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from cloud.alarms.store import Alarm
from device_profiles.charge_session import describe

SEV_ZH = {"critical": "火警/紧急", "major": "监管", "minor": "故障", "warning": "提示"}
SEV_EN = {"critical": "CRITICAL", "major": "MAJOR", "minor": "TROUBLE", "warning": "WARNING"}
CST = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Text:
    title: str
    body: str


def _where(a: Alarm, site_name: str, site_name_zh: str) -> tuple[str, str]:
    lab = a.labels
    zh = [site_name_zh or site_name or a.site]
    en = [site_name or a.site]
    for key in ("building", "shelter", "zone", "location"):
        if lab.get(key):
            zh.append(lab[key])
            en.append(f"{key} {lab[key]}")
    dev = lab.get("name", a.device)
    zh.append(f"设备 {dev}")
    en.append(f"device {dev}")
    if a.instance:
        block = a.detail.get("block", "port")
        unit_zh = {"port": "充电口", "bay": "车位"}.get(block, block)
        zh.append(f"{unit_zh} {a.instance}")
        en.append(f"{block} {a.instance}")
    return " / ".join(zh), ", ".join(en)


def _when(ts: float) -> tuple[str, str]:
    d = datetime.fromtimestamp(ts, CST)
    return d.strftime("%Y-%m-%d %H:%M:%S (北京时间)"), datetime.fromtimestamp(ts, UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )


def alarm_text(a: Alarm, site_name: str, site_name_zh: str, ack_url: str | None, purpose: str) -> Text:
    where_zh, where_en = _where(a, site_name, site_name_zh)
    since_zh, since_en = _when(a.raised_at)
    name_en = a.name or a.rule
    name_zh = a.name_zh or name_en
    if purpose == "resolution":
        title = f"[已恢复 RESOLVED] {name_zh} {name_en}"
        lines = [
            f"已恢复：{name_zh}，{where_zh}",
            f"Resolved: {name_en} at {where_en}",
            f"报警开始 Since: {since_zh} / {since_en}",
        ]
        if a.cleared_at:
            lines.append(f"恢复时间 Cleared: {_when(a.cleared_at)[0]}")
        return Text(title, "\n".join(lines))
    prefix = "[提醒 REMINDER] " if purpose == "reminder" else ""
    sev = f"{SEV_ZH.get(a.severity, a.severity)} {SEV_EN.get(a.severity, a.severity)}"
    again = int(a.detail.get("occurrence", 1))
    title = f"{prefix}[{sev}] {name_zh} {name_en}" + (f" (第{again}次 ×{again})" if again > 1 else "")
    lines = [f"{name_zh}：{where_zh}", f"{name_en}: {where_en}", f"开始时间 Since: {since_zh} / {since_en}"]
    if again > 1:
        prev = a.detail.get("previous_alarm")
        lines.append(f"再次发生（上一次报警 #{prev} 未处理完）Again: occurrence {again}, previous alarm #{prev} "
                     "was still open")
    if a.value is not None:
        lines.append(f"数值 Value: {a.value}")
    data = a.detail.get("data")
    if a.kind == "event" and isinstance(data, dict) and "reason" in data:
        # an edge finding (abnormal_charge): say what was seen, in plain words; nothing was done yet
        lines.append(f"发现：{describe(data, lang='zh')}")
        lines.append(f"Seen: {describe(data)}")
    elif did := a.detail.get("edge_action"):
        lines.append(f"网关已执行 Edge action: {did}")
    if ack_url:
        lines.append(f"一键确认 Acknowledge: {ack_url}")
    return Text(title, "\n".join(lines))
