"""The MQTT wire contract, schema version 1: topics, payloads, encoding and decoding.

Edge, cloud and simulators import this module and nothing else to speak MQTT, so a change here is
a change of the contract (docs/wire.md). Payloads are JSON, decoded and validated by msgspec in one
pass, because the ingester decodes tens of thousands of them a second.

Topics (the version is in the topic so v2 can run beside v1):

    sw/v1/<site>/<gateway>/status               retained birth / last will
    sw/v1/<site>/<gateway>/health               gateway health (buses, outbox)
    sw/v1/<site>/<gateway>/<device>/telemetry   readings (report by exception + snapshots)
    sw/v1/<site>/<gateway>/<device>/urgent      readings that crossed an alarm limit (safety lane)
    sw/v1/<site>/<gateway>/<device>/event       state changes, interlock actions
    sw/v1/<site>/<gateway>/<device>/health      device communication health
    sw/v1/<site>/<gateway>/<device>/cmd         downlink command
    sw/v1/<site>/<gateway>/<device>/cmd-result  the answer to one command
    sw/v1/time                                  the cloud's time beacon (gateways measure clock skew)
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1
PREFIX = "sw/v1"
MAX_PAYLOAD_BYTES = 64 * 1024
# A gateway clock further than this from the cloud's is wrong: its messages with a `ts` that far
# ahead are stored at receive time, and the cloud raises `gateway_clock` (docs/wire.md, "Time").
CLOCK_TOLERANCE_S = 10.0
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class WireError(ValueError):
    """A topic or payload that does not follow the contract. `reason` is a short stable label
    (used as a metrics label and dead-letter reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class Kind(StrEnum):
    STATUS = "status"
    GATEWAY_HEALTH = "gateway-health"
    TELEMETRY = "telemetry"
    # A telemetry message with a reading that crossed an alarm limit of its profile: the same payload
    # and seq counter, on the safety lane, so it never waits behind the telemetry backlog.
    URGENT = "urgent"
    EVENT = "event"
    HEALTH = "health"
    CMD = "cmd"
    CMD_RESULT = "cmd-result"


DEVICE_KINDS = (Kind.TELEMETRY, Kind.URGENT, Kind.EVENT, Kind.HEALTH, Kind.CMD, Kind.CMD_RESULT)


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    gateway: str
    kind: Kind
    device: str | None = None

    def __str__(self) -> str:
        base = f"{PREFIX}/{self.site}/{self.gateway}"
        if self.kind is Kind.STATUS:
            return f"{base}/status"
        if self.kind is Kind.GATEWAY_HEALTH:
            return f"{base}/health"
        return f"{base}/{self.device}/{self.kind.value}"


def check_id(what: str, value: str) -> str:
    """Site, gateway and device ids become topic levels: no wildcards, slashes or capitals."""
    if not ID_RE.match(value):
        raise WireError("bad_id", f"{what} id {value!r} must match {ID_RE.pattern}")
    return value


def topic(site: str, gateway: str, kind: Kind, device: str | None = None) -> str:
    check_id("site", site)
    check_id("gateway", gateway)
    if kind in DEVICE_KINDS:
        if device is None:
            raise WireError("bad_topic", f"{kind.value} needs a device")
        check_id("device", device)
    elif device is not None:
        raise WireError("bad_topic", f"{kind.value} is a gateway topic; no device expected")
    return str(Topic(site, gateway, kind, device))


_DEVICE_KIND = {k.value: k for k in DEVICE_KINDS}


def parse_topic(name: str) -> Topic:
    """Topic string → its parts, or WireError('bad_topic')."""
    parts = name.split("/")
    if len(parts) < 5 or parts[0] != "sw" or parts[1] != "v1":
        raise WireError("bad_topic", f"{name!r} is not under {PREFIX}/")
    site, gateway = parts[2], parts[3]
    if not (ID_RE.match(site) and ID_RE.match(gateway)):
        raise WireError("bad_topic", f"{name!r}: bad site or gateway id")
    if len(parts) == 5:
        if parts[4] == "status":
            return Topic(site, gateway, Kind.STATUS)
        if parts[4] == "health":
            return Topic(site, gateway, Kind.GATEWAY_HEALTH)
    elif len(parts) == 6 and parts[5] in _DEVICE_KIND and ID_RE.match(parts[4]):
        return Topic(site, gateway, _DEVICE_KIND[parts[5]], parts[4])
    raise WireError("bad_topic", f"{name!r} is not a v1 topic")


# The kinds whose payload is `Telemetry`: what one is stored and judged as, whichever lane it came on.
TELEMETRY_KINDS = frozenset({Kind.TELEMETRY, Kind.URGENT})


def safety_subscriptions(site: str = "+", gateway: str = "+") -> list[str]:
    """The low-volume, alarm-relevant uplink: gateway `status` (birth / last will), device `event`,
    `urgent` telemetry and device `health`. The ingester reads these on their own MQTT connection (the safety lane),
    so the broker queues them apart from telemetry and an alarm never waits behind a backlog."""
    b = f"{PREFIX}/{site}/{gateway}"
    return [f"{b}/status", f"{b}/+/event", f"{b}/+/urgent", f"{b}/+/health"]


def bulk_subscriptions(site: str = "+", gateway: str = "+") -> list[str]:
    """The high-volume rest of the uplink: telemetry, gateway health and command results."""
    b = f"{PREFIX}/{site}/{gateway}"
    return [f"{b}/+/telemetry", f"{b}/health", f"{b}/+/cmd-result"]


def subscriptions(site: str = "+", gateway: str = "+") -> list[str]:
    """Topic filters for everything a gateway sends upward (not the downlink `cmd`): both lanes."""
    return safety_subscriptions(site, gateway) + bulk_subscriptions(site, gateway)


def shared(topic_filter: str, group: str = "ingest") -> str:
    """MQTT 5 shared subscription: replicas in one group split the messages between them."""
    return f"$share/{group}/{topic_filter}"


def cmd_topic(site: str, gateway: str, device: str = "+") -> str:
    """What a gateway subscribes to (device `+`) or where the cloud sends one command."""
    return f"{PREFIX}/{site}/{gateway}/{device}/cmd"


# ---------------------------------------------------------------------------------------- payloads

UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**53)]  # a device's first message is seq 1
Epoch = Annotated[str, msgspec.Meta(max_length=32)]


class WireTime(datetime):
    """A UTC instant that encodes exactly as the contract writes it: RFC 3339, milliseconds, `Z`
    (`2026-11-25T03:12:45.120Z`). msgspec writes a plain datetime with no or six fraction digits,
    so every time the code puts on the wire is one of these (`now()`, `at()`, `wire_time()`);
    `encode` turns them into text. Decoded payloads hold plain datetimes (same instant)."""

    def wire(self) -> str:
        t = self.astimezone(UTC)
        return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


def wire_time(t: datetime) -> WireTime:
    """Any aware datetime → the same instant (to the millisecond) as a WireTime."""
    t = t.astimezone(UTC)
    return WireTime(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond // 1000 * 1000, UTC)


def at(seconds: float) -> WireTime:
    """Unix seconds → WireTime (e.g. a `time.time()` kept by the gateway)."""
    return wire_time(datetime.fromtimestamp(seconds, UTC))
Scalar = bool | int | float | str
Severity = Literal["critical", "major", "minor", "warning", "info"]
PointId = Annotated[str, msgspec.Meta(min_length=1, max_length=96)]


class _Msg(msgspec.Struct, kw_only=True):
    v: Literal[1] = 1
    ts: UtcTime


class DeviceInfo(msgspec.Struct, omit_defaults=True):
    id: str
    profile: str
    labels: dict[str, str] = {}


class Status(_Msg, kw_only=True):
    """Retained on `…/status`. Birth says online; the last will (set at connect) says offline.
    A birth names the running config: `config_version` (the cloud version it applied; 0 = a
    config written on site) and `config_digest` (`edge_agent.remote.digest` of its content)."""

    state: Literal["online", "offline"]
    reason: str = ""
    agent: str = ""
    devices: list[DeviceInfo] = []
    config_version: Annotated[int, msgspec.Meta(ge=0)] = 0
    config_digest: str = ""


class Telemetry(_Msg, kw_only=True):
    """Readings of one device. `snapshot` true means every point is present (periodic full report);
    otherwise only points that moved by at least their deadband. Points that could not be read are
    absent. `seq` counts within `epoch` (docs/wire.md, "Sequence numbers")."""

    seq: Seq
    values: dict[PointId, Scalar]
    snapshot: bool = False
    epoch: Epoch = ""


class Event(_Msg, kw_only=True):
    """Something happened once: a state change, an interlock action, a command outcome.

    `id` is unique (UUID) so replays are recognised; `kind` says what produced it."""

    seq: Seq
    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    kind: Literal["state", "interlock", "command", "fault", "agent", "abnormal_charge"]
    severity: Severity = "info"
    point: str | None = None
    value: Scalar | None = None
    previous: Scalar | None = None
    text: str = ""
    data: dict[str, Scalar] = {}
    epoch: Epoch = ""


class DeviceHealth(_Msg, kw_only=True):
    """Communication health of one device as the gateway sees it; counters are since agent start."""

    seq: Seq
    online: bool
    breaker: Literal["closed", "open", "half_open"] = "closed"
    polls: int = 0
    ok: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    exceptions: int = 0
    retries: int = 0
    last_ok: UtcTime | None = None
    latency_ms: float | None = None
    poll_rate_hz: float | None = None
    detail: str = ""
    epoch: Epoch = ""


class BusHealth(msgspec.Struct, omit_defaults=True):
    name: str
    utilisation: float
    transactions: int = 0
    budget_ok: bool = True


class GatewayHealth(_Msg, kw_only=True):
    uptime_s: float
    buses: list[BusHealth] = []
    outbox_pending: int = 0
    outbox_bytes: int = 0
    outbox_dropped: int = 0
    backlog_oldest: UtcTime | None = None
    # The gateway's clock minus the cloud's, in seconds, measured from the time beacon; None until
    # the gateway has heard one.
    clock_skew_s: float | None = None


class Command(_Msg, kw_only=True):
    """Downlink: do `command` (declared by the device's profile) on one instance, with a value.
    The gateway answers every command with one CommandResult carrying the same id."""

    id: Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
    command: Annotated[str, msgspec.Meta(min_length=1, max_length=48)]
    index: int | None = None
    value: bool | int | None = None
    by: str = ""
    expires: UtcTime | None = None


class CommandResult(_Msg, kw_only=True):
    id: str
    status: Literal["done", "refused", "failed", "expired"]
    detail: str = ""


PAYLOAD_TYPES: dict[Kind, type[_Msg]] = {
    Kind.STATUS: Status,
    Kind.GATEWAY_HEALTH: GatewayHealth,
    Kind.TELEMETRY: Telemetry,
    Kind.URGENT: Telemetry,
    Kind.EVENT: Event,
    Kind.HEALTH: DeviceHealth,
    Kind.CMD: Command,
    Kind.CMD_RESULT: CommandResult,
}

class TimeBeacon(_Msg, kw_only=True):
    """Published by the cloud on `sw/v1/time` (QoS 0, not retained) every few seconds: `ts` is the
    cloud's clock when it was sent. A gateway's clock skew is its own clock at arrival minus `ts`
    (an upper bound: the delivery delay is included; the smallest of recent samples is taken)."""

    source: str = ""


TIME_TOPIC = f"{PREFIX}/time"

Payload = Status | GatewayHealth | Telemetry | Event | DeviceHealth | Command | CommandResult
T = TypeVar("T", bound=_Msg)

def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, WireTime):
        return obj.wire()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoders: dict[Kind, msgspec.json.Decoder[Any]] = {k: msgspec.json.Decoder(t) for k, t in PAYLOAD_TYPES.items()}
_beacon_decoder = msgspec.json.Decoder(TimeBeacon)


def encode(msg: _Msg) -> bytes:
    return _encoder.encode(msg)


def decode_beacon(data: bytes) -> TimeBeacon:
    """A time beacon, or WireError (same reasons as `decode`)."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("oversized", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return _beacon_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as e:
        raise WireError("bad_schema" if isinstance(e, msgspec.ValidationError) else "bad_json", str(e)) from None


def decode(kind: Kind, data: bytes) -> Any:
    """Validate and decode one payload of `kind`; WireError with reason oversized / not_utf8 /
    bad_json / bad_schema otherwise."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("oversized", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return _decoders[kind].decode(data)
    except UnicodeDecodeError:  # msgspec raises this for bad UTF-8 inside a JSON string
        raise WireError("not_utf8", "payload is not UTF-8") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        # Only on the error path: bad UTF-8 elsewhere surfaces as a schema or JSON error.
        if not _is_utf8(data):
            raise WireError("not_utf8", "payload is not UTF-8") from None
        reason = "bad_schema" if isinstance(e, msgspec.ValidationError) else "bad_json"
        raise WireError(reason, str(e)) from None


def _is_utf8(data: bytes) -> bool:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_as(cls: type[T], data: bytes) -> T:
    kind = next(k for k, t in PAYLOAD_TYPES.items() if t is cls)
    result: T = decode(kind, data)
    return result


def json_schema(kind: Kind) -> dict[str, Any]:
    return msgspec.json.schema(PAYLOAD_TYPES[kind])


def now() -> WireTime:
    """UTC now, to the millisecond (what goes in `ts`)."""
    return wire_time(datetime.now(UTC))


def new_id() -> str:
    return uuid.uuid4().hex


def last_will(ts: datetime | None = None) -> Status:
    """The offline status a gateway registers as its MQTT last will when it connects."""
    return Status(ts=ts or now(), state="offline", reason="connection lost")


# ------------------------------------------------------------------------------ remote configuration
# Gateway-level topics (five levels, like `status`), so they can never be mistaken for a device's:
#   sw/v1/<site>/<gateway>/config          down, retained: the desired config (ConfigSet)
#   sw/v1/<site>/<gateway>/config-confirm  down: the cloud heard the gateway over its new uplink
#   sw/v1/<site>/<gateway>/config-result   up: what the gateway did with a version (ConfigResult)
#   sw/v1/<site>/<gateway>/config-running  up, retained: the config it runs, without secrets


class ConfigKind(StrEnum):
    DESIRED = "config"
    CONFIRM = "config-confirm"
    RESULT = "config-result"
    RUNNING = "config-running"
    LIMITS = "limits"


MAX_CONFIG_TEXT = 48 * 1024  # the YAML inside a ConfigSet / ConfigRunning (the payload stays under 64 KiB)


def config_topic(site: str, gateway: str, kind: ConfigKind) -> str:
    check_id("site", site)
    check_id("gateway", gateway)
    return f"{PREFIX}/{site}/{gateway}/{kind.value}"


_CONFIG_KIND = {k.value: k for k in ConfigKind}


def parse_config_topic(name: str) -> tuple[str, str, ConfigKind]:
    """`sw/v1/<site>/<gateway>/config…` → (site, gateway, kind), or WireError('bad_topic')."""
    parts = name.split("/")
    if (len(parts) != 5 or parts[0] != "sw" or parts[1] != "v1" or parts[4] not in _CONFIG_KIND
            or not (ID_RE.match(parts[2]) and ID_RE.match(parts[3]))):
        raise WireError("bad_topic", f"{name!r} is not a v1 config topic")
    return parts[2], parts[3], _CONFIG_KIND[parts[4]]


def config_subscriptions(site: str = "+", gateway: str = "+") -> list[str]:
    """What the cloud reads: every gateway's config results and running configs."""
    b = f"{PREFIX}/{site}/{gateway}"
    return [f"{b}/{ConfigKind.RESULT.value}", f"{b}/{ConfigKind.RUNNING.value}"]


def gateway_config_subscriptions(site: str, gateway: str) -> list[str]:
    """What a gateway reads: its own desired config, confirmations and alarm limits, nothing else's."""
    return [config_topic(site, gateway, k) for k in (ConfigKind.DESIRED, ConfigKind.CONFIRM, ConfigKind.LIMITS)]


ConfigText = Annotated[str, msgspec.Meta(max_length=MAX_CONFIG_TEXT)]
Version = Annotated[int, msgspec.Meta(ge=1, le=2**31)]


class ConfigSet(_Msg, kw_only=True):
    """The cloud's desired config for one gateway (retained). `config` is the edge config's YAML
    text without the uplink password (the gateway keeps its own); `digest` is its content's
    digest. The gateway tries a version newer than any it handled: devices must answer within
    `probe_s`, a changed uplink must be confirmed by the cloud within `confirm_s`, or it rolls back."""

    version: Version
    config: ConfigText
    digest: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    by: Annotated[str, msgspec.Meta(max_length=128)] = ""
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""
    probe_s: Annotated[float, msgspec.Meta(ge=1, le=120)] = 20.0
    confirm_s: Annotated[float, msgspec.Meta(ge=5, le=300)] = 30.0


class ConfigConfirm(_Msg, kw_only=True):
    """The cloud received `confirming` for `version` over the gateway's new uplink: keep it."""

    version: Version


class ConfigProblem(msgspec.Struct, omit_defaults=True):
    line: int
    key: str
    message: str


class ConfigResult(_Msg, kw_only=True):
    """One step of a version on the gateway: `applying`, `confirming` (new uplink connected,
    waiting for ConfigConfirm), then `applied`, `rolled_back` or `refused`. `running` is the
    version running after this step (0: a config written on site)."""

    version: Version
    status: Literal["applying", "confirming", "applied", "rolled_back", "refused"]
    running: Annotated[int, msgspec.Meta(ge=0)] = 0
    detail: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    problems: list[ConfigProblem] = []
    devices: dict[str, str] = {}


class ConfigRunning(_Msg, kw_only=True):
    """Retained: the config the gateway runs, without the uplink password."""

    version: Annotated[int, msgspec.Meta(ge=0)]
    digest: str
    config: ConfigText
    agent: str = ""


class LimitOverride(msgspec.Struct, forbid_unknown_fields=True):
    """A threshold rule of the device's profile (`rule`, its key) with the site's `raise` and `clear`."""

    rule: Annotated[str, msgspec.Meta(pattern="^[a-z0-9_]{1,64}$")]
    raise_at: float = msgspec.field(name="raise")
    clear_at: float = msgspec.field(name="clear")


class Limits(_Msg, kw_only=True):
    """The site's overrides of the alarm limits of this gateway's devices, by device id: the gateway
    sends a reading that crosses one of them on `urgent`, as it does for its profiles' own limits.
    The whole set each time (an empty `devices`: no overrides); the newest `ts` wins."""

    devices: dict[str, Annotated[list[LimitOverride], msgspec.Meta(max_length=64)]] = {}


CONFIG_PAYLOAD_TYPES: dict[ConfigKind, type[_Msg]] = {
    ConfigKind.DESIRED: ConfigSet,
    ConfigKind.CONFIRM: ConfigConfirm,
    ConfigKind.RESULT: ConfigResult,
    ConfigKind.RUNNING: ConfigRunning,
    ConfigKind.LIMITS: Limits,
}
_config_decoders = {k: msgspec.json.Decoder(t) for k, t in CONFIG_PAYLOAD_TYPES.items()}


def decode_config_message(topic: str, data: bytes) -> tuple[str, str, ConfigKind, Any]:
    """A gateway-level config message as received: (site, gateway, kind, payload); WireError if the
    topic or the payload is not one."""
    site, gateway, kind = parse_config_topic(topic)
    return site, gateway, kind, decode_config(kind, data)


def decode_config(kind: ConfigKind, data: bytes) -> Any:
    """Validate and decode a config payload; WireError as `decode`."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise WireError("oversized", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return _config_decoders[kind].decode(data)
    except UnicodeDecodeError:
        raise WireError("not_utf8", "payload is not UTF-8") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        reason = "bad_schema" if isinstance(e, msgspec.ValidationError) else "bad_json"
        raise WireError(reason, str(e)) from None
