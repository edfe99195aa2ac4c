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
    "sev_critical": ("critical", "火警/紧急"),
    "sev_major": ("major", "监管"),
    "sev_minor": ("minor", "故障"),
    "sev_warning": ("warning", "提示"),
    "sev_info": ("info", "信息"),
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
