"""The device profile model: one YAML file per device model, validated by these pydantic classes.

A profile is the only place a register address, a scale factor or a line format is written down.
The edge agent decodes with it, the simulators encode with it, the cloud maps it to time series and
alarm rules. Addresses are zero-based, exactly as they travel on the wire (PDU addresses), because
"register 40001" vs "address 0" is the mistake installers make most often.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

KEY_RE = r"^[a-z][a-z0-9_]*$"
Key = Annotated[str, Field(pattern=KEY_RE, max_length=48)]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo like `scael:` must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Family(StrEnum):
    SPRINKLER = "sprinkler"
    CHARGER = "charger"
    PARKING = "parking"


class TransportKind(StrEnum):
    MODBUS_RTU = "modbus_rtu"
    MODBUS_TCP = "modbus_tcp"
    SERIAL_LINE = "serial_line"


class Table(StrEnum):
    """The four Modbus data tables; read with FC 1, 2, 4 and 3 respectively."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    INPUT = "input"
    HOLDING = "holding"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


class DataType(StrEnum):
    BOOL = "bool"  # a coil / discrete input, or a whole register that is 0 / non-zero
    BIT = "bit"  # one bit of a 16-bit register (needs `bit:`)
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    ENUM = "enum"  # an unsigned 16-bit register mapped through `enum:` labels
    STRING = "string"  # `length` registers of ASCII, two characters per register

    @property
    def is_bool(self) -> bool:
        return self in (DataType.BOOL, DataType.BIT)


REGISTER_COUNT: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.BIT: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.ENUM: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
}


class Order(StrEnum):
    """Byte order inside a register, or word order across the registers of a 32-bit value."""

    BIG = "big"
    LITTLE = "little"


class PollClass(StrEnum):
    """Safety points are read first and most often; slow points (firmware, serial) rarely."""

    SAFETY = "safety"
    ROUTINE = "routine"
    SLOW = "slow"


class EventSpec(_Strict):
    """Emit an event when this point changes; labels say what the change means to a person."""

    on_change: bool = True
    severity_hint: Literal["critical", "major", "minor", "warning", "info"] = "info"
    labels: dict[str, str] = Field(default_factory=dict)


class ModbusPoint(_Strict):
    """One named value read from a Modbus table."""

    key: Key
    name: str = ""
    table: Table
    address: int = Field(ge=0, le=65535)
    type: DataType = DataType.UINT16
    bit: int | None = Field(default=None, ge=0, le=15)
    length: int | None = Field(default=None, ge=1, le=64)
    byte_order: Order | None = None
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    enum: dict[int, str] | None = None
    deadband: float = Field(default=0.0, ge=0)
    poll: PollClass = PollClass.ROUTINE
    event: EventSpec | None = None
    writable: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:
        if self.table.is_bit and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table.value} holds single bits: type must be bool, got {self.type.value}")
        if self.type is DataType.BIT and self.bit is None:
            raise ValueError("type bit needs `bit:` (0-15)")
        if self.type is not DataType.BIT and self.bit is not None:
            raise ValueError("`bit:` is only valid with type bit")
        if self.type is DataType.ENUM and not self.enum:
            raise ValueError("type enum needs `enum:` labels")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("type string needs `length:` (registers)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("point runs past address 65535")
        return self

    @property
    def register_count(self) -> int:
        if self.table.is_bit:
            return 1
        if self.type is DataType.STRING:
            return self.length or 1
        return REGISTER_COUNT[self.type]


class Block(_Strict):
    """A repeated group, e.g. one charging port × 10: point addresses are for index `first`, and
    each further index adds `stride` (per table, so coils and registers can use different strides)."""

    key: Key
    count: int = Field(ge=1, le=512)
    first: int = Field(default=1, ge=0, description="number of the first instance, as printed on the device")
    stride: int = Field(ge=1)
    coil_stride: int | None = Field(default=None, ge=1)
    points: list[ModbusPoint] = Field(min_length=1)

    def stride_for(self, table: Table) -> int:
        if table.is_bit and self.coil_stride is not None:
            return self.coil_stride
        return self.stride


class Command(_Strict):
    """A write the cloud (or an interlock) may ask for. Anything not declared here is refused."""

    key: Key
    name: str = ""
    table: Literal[Table.COIL, Table.HOLDING]
    address: int = Field(ge=0, le=65535)
    block: Key | None = None
    value: bool | int | None = Field(default=None, description="fixed value; otherwise the caller gives one")
    value_type: Literal["bool", "uint16"] = "bool"
    safety: bool = Field(default=False, description="safety writes jump the bus queue")


class Condition(_Strict):
    point: Key
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float | bool | str


class Interlock(_Strict):
    """Acts at the edge, at once, cloud or no cloud: `when` holds → write `command`."""

    key: Key
    name: str = ""
    block: Key | None = None
    when: Condition
    command: Key
    value: bool | int | None = None
    reason: str = ""


class TimeSeries(_Strict):
    """Maps decoded points onto a measurement. Site, gateway and device tags are always added;
    a block measurement also gets a tag named after the block holding the instance number."""

    measurement: Key
    block: Key | None = None
    fields: list[Key] = Field(min_length=1)
    tags: dict[Key, str] = Field(default_factory=dict)


class AlarmKind(StrEnum):
    THRESHOLD = "threshold"
    STATE = "state"
    RATE_OF_RISE = "rate_of_rise"
    OFFLINE = "offline"
    COMPOSITE = "composite"
    EVENT = "event"


Severity = Literal["critical", "major", "minor", "warning"]


class AlarmRule(_Strict):
    """A default alarm rule; evaluated in the cloud, overridable per site and per device.

    Durations are seconds. `threshold`: raise at `raise_at`, clear at `clear_at` (hysteresis),
    condition held `for_s`. `state`: point equals `value` for `for_s` (the waterflow retard).
    `rate_of_rise`: rises faster than `rate` per minute. `offline`: no message for `for_s`.
    `composite`: every rule in `all_of` active at once. `event`: an edge event of `event_kind`.
    """

    key: Key
    name: str = ""
    name_zh: str = ""
    kind: AlarmKind
    severity: Severity
    block: Key | None = None
    point: Key | None = None
    raise_at: float | None = Field(default=None, alias="raise")
    clear_at: float | None = Field(default=None, alias="clear")
    direction: Literal["above", "below"] = "above"
    value: float | bool | str | None = None
    for_s: float = Field(default=0.0, ge=0, le=86400, alias="for")
    rate: float | None = None
    all_of: list[Key] = Field(default_factory=list)
    event_kind: str | None = None
    sprinkler: bool = Field(default=False, description="silenced (still recorded) during inspection windows")
    only_tagged: Key | None = Field(default=None, description="applies only to instances the site tags so")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _complete(self) -> AlarmRule:
        k = self.kind
        if k in (AlarmKind.THRESHOLD, AlarmKind.STATE, AlarmKind.RATE_OF_RISE) and not self.point:
            raise ValueError(f"a {k.value} rule needs `point:`")
        if k is AlarmKind.THRESHOLD:
            if self.raise_at is None or self.clear_at is None:
                raise ValueError("a threshold rule needs both `raise:` and `clear:`")
            above = self.direction == "above"
            if (above and self.clear_at > self.raise_at) or (not above and self.clear_at < self.raise_at):
                raise ValueError("`clear:` must be on the safe side of `raise:` (hysteresis)")
        if k is AlarmKind.STATE and self.value is None:
            raise ValueError("a state rule needs `value:`")
        if k is AlarmKind.RATE_OF_RISE and self.rate is None:
            raise ValueError("a rate_of_rise rule needs `rate:` (units per minute)")
        if k is AlarmKind.OFFLINE and self.for_s <= 0:
            raise ValueError("an offline rule needs `for:` > 0 seconds")
        if k is AlarmKind.COMPOSITE and len(self.all_of) < 2:
            raise ValueError("a composite rule needs at least two rules in `all_of:`")
        if k is AlarmKind.EVENT and not self.event_kind:
            raise ValueError("an event rule needs `event_kind:`")
        return self


class IdentifyRead(_Strict):
    """One read `edge-agent scan` makes to recognise the model of a device that answered.

    `expect` fixes what this model answers (a vendor or model code: a signature); `exception`
    says the model answers this read with that Modbus exception code (e.g. 2, illegal data
    address, just past the end of its register map: the signature of a simple I/O module that has
    no identification registers). A read with neither is reported (firmware, serial number) and
    must merely be answered. The read keyed `firmware` is checked against the profile's
    `firmware:` range. `example` is what a real device answers (the simulators answer it, and it
    documents the register for people)."""

    key: Key
    table: Table
    address: int = Field(ge=0, le=65535)
    type: DataType = DataType.UINT16
    length: int | None = Field(default=None, ge=1, le=64)
    byte_order: Order | None = None
    word_order: Order | None = None
    expect: bool | int | float | str | None = None
    exception: int | None = Field(default=None, ge=1, le=255)
    example: bool | int | float | str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> IdentifyRead:
        if self.exception is not None and (self.expect is not None or self.example is not None):
            raise ValueError("`exception:` means the device answers no value here: drop `expect:` / `example:`")
        if self.type is DataType.ENUM or self.type is DataType.BIT:
            raise ValueError(f"type {self.type.value} cannot identify a device; read the register as uint16")
        self.point()  # the same rules as a point (string needs `length:`, …)
        return self

    def point(self) -> ModbusPoint:
        """The read as a point, to decode it with the profile's codec (coils and discrete inputs
        are single bits, whatever `type:` says)."""
        kind = DataType.BOOL if self.table.is_bit else self.type
        return ModbusPoint(key=self.key, table=self.table, address=self.address, type=kind,
                           length=self.length, byte_order=self.byte_order, word_order=self.word_order)

    @property
    def signature(self) -> bool:
        return self.expect is not None or self.exception is not None


class Identify(_Strict):
    """How a scan recognises this model. Modbus: `reads` (at least one with `expect:` or
    `exception:`). Serial line devices are recognised by their own line format: `min_lines` lines
    matching the profile's pattern (checksum included) within `listen_s` seconds."""

    reads: list[IdentifyRead] = Field(default_factory=list)
    listen_s: float = Field(default=30.0, gt=0, le=600)
    min_lines: int = Field(default=2, ge=1, le=100)


class SerialSettings(_Strict):
    baud: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    data_bits: Literal[7, 8] = 8


class ModbusTransport(_Strict):
    kind: Literal[TransportKind.MODBUS_RTU, TransportKind.MODBUS_TCP]
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    max_registers_per_read: int = Field(default=60, ge=1, le=125)
    max_bits_per_read: int = Field(default=200, ge=1, le=2000)
    serial: SerialSettings = Field(default_factory=SerialSettings)
    tcp_port: int = Field(default=502, ge=1, le=65535)


class LineField(_Strict):
    """A named group of the line pattern, converted to a value."""

    key: Key
    group: str
    type: Literal["int", "float", "bool", "str", "enum"] = "int"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    enum: dict[str, str] | None = None
    true_values: list[str] = Field(default_factory=lambda: ["1"])
    deadband: float = Field(default=0.0, ge=0)
    event: EventSpec | None = None

    @model_validator(mode="after")
    def _enum(self) -> LineField:
        if self.type == "enum" and not self.enum:
            raise ValueError("type enum needs `enum:` labels")
        return self


class LineTransport(_Strict):
    """A plain serial line protocol: one record per line, matched by a regular expression.

    `instance_group` names the group that says which instance (bay) a line is about, so the same
    fields are reported per bay like a Modbus block. `checksum` verifies a trailing checksum group.
    """

    kind: Literal[TransportKind.SERIAL_LINE]
    serial: SerialSettings = Field(default_factory=SerialSettings)
    encoding: Literal["ascii", "utf-8"] = "ascii"
    terminator: str = "\r\n"
    max_line: int = Field(default=256, ge=8, le=4096)
    pattern: str
    block: Key
    instance_group: str
    instance_count: int = Field(ge=1, le=4096)
    checksum: Literal["none", "nmea_xor"] = "none"
    checksum_group: str | None = None
    fields: list[LineField] = Field(min_length=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _groups(self) -> LineTransport:
        groups = set(re.compile(self.pattern).groupindex)
        wanted = [self.instance_group, *(f.group for f in self.fields)]
        if self.checksum != "none":
            if not self.checksum_group:
                raise ValueError("a checksum needs `checksum_group:`")
            wanted.append(self.checksum_group)
        missing = [g for g in wanted if g not in groups]
        if missing:
            raise ValueError(f"pattern has no named group(s) {', '.join(missing)}")
        return self


class Profile(_Strict):
    """One device model (vendor + model + firmware range)."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    vendor: str
    model: str
    firmware: str = "*"
    family: Family
    description: str = ""
    transport: ModbusTransport | LineTransport = Field(discriminator="kind")
    points: list[ModbusPoint] = Field(default_factory=list)
    blocks: list[Block] = Field(default_factory=list)
    commands: list[Command] = Field(default_factory=list)
    interlocks: list[Interlock] = Field(default_factory=list)
    timeseries: list[TimeSeries] = Field(min_length=1)
    alarms: list[AlarmRule] = Field(default_factory=list)
    identify: Identify | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _resolved: Any = PrivateAttr(default=None)  # cache of device_profiles.points.resolve_points

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references between sections, each with the key path it concerns.

        Kept out of pydantic validation so the loader can point at the exact line.
        """
        probs: list[tuple[tuple[str | int, ...], str]] = []
        is_line = isinstance(self.transport, LineTransport)
        if is_line and (self.points or self.blocks):
            probs.append((("points",), "a serial_line profile declares its values under transport.fields"))
        if not is_line and not (self.points or self.blocks):
            probs.append(((), "a Modbus profile needs `points:` or `blocks:`"))
        seen: set[str] = set()
        keyed = [(("points", i, "key"), p.key) for i, p in enumerate(self.points)]
        keyed += [(("blocks", i, "key"), b.key) for i, b in enumerate(self.blocks)]
        for path, key in keyed:
            if key in seen:
                probs.append((path, f"duplicate key {key!r}"))
            seen.add(key)
        for i, b in enumerate(self.blocks):
            inner: set[str] = set()
            for j, p in enumerate(b.points):
                if p.key in inner:
                    probs.append((("blocks", i, "points", j, "key"), f"duplicate key {p.key!r}"))
                inner.add(p.key)
        block_keys = self.block_keys()
        cmd_keys = {c.key for c in self.commands}
        for i, c in enumerate(self.commands):
            if c.block and c.block not in block_keys:
                probs.append((("commands", i, "block"), f"unknown block {c.block!r}"))
        for i, il in enumerate(self.interlocks):
            if il.command not in cmd_keys:
                probs.append((("interlocks", i, "command"), f"unknown command {il.command!r}"))
            if il.when.point not in self.point_keys(il.block):
                probs.append((("interlocks", i, "when", "point"), f"unknown point {il.when.point!r}"))
        for i, ts in enumerate(self.timeseries):
            if ts.block and ts.block not in block_keys:
                probs.append((("timeseries", i, "block"), f"unknown block {ts.block!r}"))
                continue
            known = self.point_keys(ts.block)
            for j, f in enumerate(ts.fields):
                if f not in known:
                    where = f"block {ts.block!r}" if ts.block else "the device"
                    probs.append((("timeseries", i, "fields", j), f"{where} has no point {f!r}"))
        rule_keys = {r.key for r in self.alarms}
        for i, r in enumerate(self.alarms):
            if r.block and r.block not in block_keys:
                probs.append((("alarms", i, "block"), f"unknown block {r.block!r}"))
            elif r.point and r.point not in self.point_keys(r.block):
                probs.append((("alarms", i, "point"), f"unknown point {r.point!r}"))
            for j, other in enumerate(r.all_of):
                if other not in rule_keys:
                    probs.append((("alarms", i, "all_of", j), f"unknown rule {other!r}"))
        probs += self._identify_problems(is_line)
        return probs

    def _identify_problems(self, is_line: bool) -> list[tuple[tuple[str | int, ...], str]]:
        if self.identify is None:
            return []
        probs: list[tuple[tuple[str | int, ...], str]] = []
        reads = self.identify.reads
        if is_line and reads:
            probs.append((("identify", "reads"), "a serial_line device is recognised by its lines; drop `reads:`"))
        if not is_line and not any(r.signature for r in reads):
            probs.append((("identify", "reads"), "needs a read with `expect:` or `exception:` (a signature)"))
        seen: set[str] = set()
        for i, r in enumerate(reads):
            if r.key in seen:
                probs.append((("identify", "reads", i, "key"), f"duplicate key {r.key!r}"))
            seen.add(r.key)
        return probs

    def block_keys(self) -> set[str]:
        if isinstance(self.transport, LineTransport):
            return {self.transport.block}
        return {b.key for b in self.blocks}

    def point_keys(self, block: str | None) -> set[str]:
        """Point keys at device level (block None) or inside one block."""
        if isinstance(self.transport, LineTransport):
            return {f.key for f in self.transport.fields} if block == self.transport.block else set()
        if block is None:
            return {p.key for p in self.points}
        for b in self.blocks:
            if b.key == block:
                return {p.key for p in b.points}
        return set()

    @property
    def is_modbus(self) -> bool:
        return isinstance(self.transport, ModbusTransport)

    def command(self, key: str) -> Command | None:
        return next((c for c in self.commands if c.key == key), None)

    def block(self, key: str) -> Block | None:
        return next((b for b in self.blocks if b.key == key), None)

    def instance_range(self, block: str) -> range:
        """Instance numbers as printed on the device (port 1..10, bay 1..48)."""
        if isinstance(self.transport, LineTransport) and block == self.transport.block:
            return range(1, self.transport.instance_count + 1)
        b = self.block(block)
        if b is None:
            raise KeyError(block)
        return range(b.first, b.first + b.count)


def point_id(key: str, block: str | None = None, index: int | None = None) -> str:
    """The name a value travels under on the wire: `smoke`, or `port.3.temp` inside a block."""
    if block is None:
        return key
    return f"{block}.{index}.{key}"


def split_point_id(pid: str) -> tuple[str | None, int | None, str]:
    """Inverse of point_id: `port.3.temp` → ("port", 3, "temp"); `smoke` → (None, None, "smoke")."""
    parts = pid.split(".")
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return None, None, pid


def dump_schema() -> dict[str, Any]:
    """JSON Schema of the profile format, for editors and docs."""
    return Profile.model_json_schema(by_alias=True)
