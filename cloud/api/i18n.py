"""Chinese and English for the pages. Language from `?lang=`, then the `lang` cookie, then
Accept-Language, then English. Missing translations fall back to English, never to a key."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("en", "zh")

TEXT: dict[str, tuple[str, str]] = {
    "app": ("Shelterwatch", "车棚卫士"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "username": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "bad_login": ("Wrong user name or password.", "用户名或密码错误。"),
    "too_many": ("Too many attempts. Try again in {s} s.", "尝试次数过多，请 {s} 秒后再试。"),
    "alarms": ("Alarms", "报警"),
    "active_alarms": ("Active alarms", "当前报警"),
    "history": ("History", "历史"),
    "no_alarms": ("No active alarms.", "没有报警。"),
    "ack": ("Acknowledge", "确认"),
    "acked_by": ("acknowledged by {who}", "{who} 已确认"),
    "cleared": ("cleared", "已恢复"),
    "resolve": ("Resolve", "处理完毕"),
    "resolve_note": ("what was done (optional)", "处理说明（可选）"),
    "resolved_by": ("resolved by {who}", "{who} 已处理"),
    "edge_action": ("Edge action", "网关已执行"),
    "again": ("occurrence {n}", "第 {n} 次"),
    "not_notified": ("nobody notified", "未通知"),
    "active": ("active", "进行中"),
    "estate": ("Estate", "小区概况"),
    "gateways": ("Gateways", "网关"),
    "online": ("online", "在线"),
    "offline": ("offline", "离线"),
    "unknown": ("unknown", "未知"),
    "chargers": ("Charger ports", "充电口"),
    "port": ("Port", "端口"),
    "state": ("State", "状态"),
    "power": ("Power", "功率"),
    "temperature": ("Temp.", "温度"),
    "energy_today": ("Today", "今日电量"),
    "switch_on": ("On", "开启"),
    "switch_off": ("Off", "关闭"),
    "main_cut": ("Cut main power", "切断总电源"),
    "main_restore": ("Restore main power", "恢复总电源"),
    "in_use": ("in use", "使用中"),
    "cut_off": ("cut off", "已断电"),
    "sprinklers": ("Sprinklers", "喷淋"),
    "parking": ("Parking", "停车"),
    "free": ("free", "空位"),
    "of_total": ("of {n}", "共 {n}"),
    "zone": ("Zone", "区域"),
    "fire_lane": ("Fire lane", "消防通道"),
    "fire_lane_clear": ("clear", "畅通"),
    "fire_lane_blocked": ("BLOCKED", "被占用"),
    "fire_lane_none": ("—", "—"),
    "health": ("Device health", "设备状态"),
    "answering": ("answering", "正常"),
    "not_answering": ("not answering", "无响应"),
    "comm_errors": ("Comm errors", "通信错误"),
    "battery_low": ("Low battery: bay {bays}", "低电量：车位 {bays}"),
    "last_seen": ("Last seen", "最近上报"),
    "seconds_ago": ("{s} s ago", "{s} 秒前"),
    "clock_off": ("clock {s} s off", "时钟偏差 {s} 秒"),
    "clock_rebased": ("{n} messages stored at arrival time", "{n} 条消息按接收时间存储"),
    "never": ("never", "从未"),
    "storage_ok": ("Time series: up to date ({n} points waiting, {s} s)",
                   "时序数据：已及时写入（{n} 个点待写，{s} 秒）"),
    "storage_late": ("Time series: {s} s behind, {n} points waiting ({b} batches on disk)",
                     "时序数据：落后 {s} 秒，{n} 个点待写（磁盘上 {b} 批）"),
    "enrol": ("Enrol a gateway", "注册网关"),
    "site": ("Site", "小区"),
    "gateway_id": ("Gateway id", "网关编号"),
    "name": ("Name", "名称"),
    "devices_help": ("Devices, one per line: id profile [address]", "设备，每行一个：编号 型号 [地址]"),
    "create": ("Create", "创建"),
    "enrolled": ("Gateway {gw} enrolled", "网关 {gw} 已注册"),
    "password_once": ("MQTT password (shown only now):", "MQTT 密码（仅显示这一次）："),
    "download_config": ("Download edge config", "下载网关配置"),
    "commands": ("Recent commands", "最近命令"),
    "asked_by": ("by {who}", "由 {who}"),
    "forbidden": ("You may not open this page.", "您无权访问此页面。"),
    "language": ("中文", "English"),
    "updated": ("live", "实时"),
    "session": ("Charge session", "本次充电"),
    "ended": ("ended", "已结束"),
    "peak": ("max", "最高"),
    "phase_cc": ("constant current", "恒流充电"),
    "phase_taper": ("tapering", "涓流充电"),
    "phase_full": ("full", "已充满"),
    "phase_stopped": ("stopped", "已停止"),
    "abnormal_charge": ("Abnormal charge", "充电异常"),
    "sev_critical": ("critical", "火警/紧急"),
    "sev_major": ("major", "监管"),
    "sev_minor": ("minor", "故障"),
    "sev_warning": ("warning", "提示"),
    "sev_info": ("info", "信息"),
    "configs": ("Gateway configs", "网关配置"),
    "config_of": ("Config of gateway {gw}", "网关 {gw} 的配置"),
    "gateway": ("Gateway", "网关"),
    "desired": ("Desired", "目标版本"),
    "running": ("Running", "运行版本"),
    "agent": ("Agent", "网关软件"),
    "drift_in_sync": ("in sync", "已同步"),
    "drift_pending": ("sent, waiting", "已下发，等待中"),
    "drift_applying": ("applying", "正在应用"),
    "drift_rolled_back": ("rolled back", "已回滚"),
    "drift_refused": ("refused", "被拒绝"),
    "drift_drift": ("differs", "不一致"),
    "drift_unmanaged": ("not managed", "未托管"),
    "drift_unknown": ("not reported", "未上报"),
    "edit_config": ("Edit and send", "编辑并下发"),
    "config_help": ("Checked like `edge-agent check` before it is kept. The gateway keeps it only if its devices "
                    "answer (and a new uplink is confirmed); otherwise it rolls back by itself. No password here: "
                    "the gateway keeps its own.",
                    "保存前按 `edge-agent check` 校验。网关只有在设备应答（新上行链路经确认）后才保留，否则自动回滚。"
                    "此处不填密码，网关保留自己的密码。"),
    "config_send": ("Check and send", "校验并下发"),
    "config_saved": ("Version {v} accepted and sent.", "版本 {v} 已通过校验并下发。"),
    "line": ("line", "行"),
    "comment": ("Comment", "说明"),
    "versions": ("Versions", "版本"),
    "who": ("Who", "操作人"),
    "when": ("When", "时间"),
    "diff_running": ("diff with running", "与运行版本比较"),
    "diff_previous": ("diff with previous", "与上一版本比较"),
    "rollback_to": ("roll back to this", "回滚到此版本"),
    "back": ("back", "返回"),
    "no_difference": ("No difference.", "没有差异。"),
    "rollout": ("Roll out a change", "批量下发"),
    "rollouts": ("Rollouts", "批量下发记录"),
    "rollout_help": ("One change (a YAML merge patch, e.g. `snapshot_s: 120`) to the chosen gateways, one at a "
                     "time; it stops at the first gateway that refuses it, rolls back or does not answer.",
                     "同一修改（YAML 合并补丁，如 `snapshot_s: 120`）逐个下发到所选网关；"
                     "任一网关拒绝、回滚或无应答即停止。"),
    "patch": ("Change (YAML)", "修改内容（YAML）"),
    "rollout_start": ("Check all, then start", "全部校验后开始"),
}


def pick(query: str | None, cookie: str | None, accept: str | None) -> str:
    for cand in (query, cookie):
        if cand in LANGS:
            return str(cand)
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(lang: str) -> Callable[..., str]:
    i = 1 if lang == "zh" else 0

    def t(key: str, **kw: object) -> str:
        pair = TEXT.get(key)
        text = pair[i] if pair else key
        return text.format(**kw) if kw else text

    return t
