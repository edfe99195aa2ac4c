"""People, their channels and per-site escalation policies (the `people:` and `escalation:` keys
of a site file). Plain pydantic models: loaded through device_profiles.located_yaml so a typo in
an apprise URL's key names file:line."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_profiles.model import KEY_RE

Role = Literal["volunteer", "manager", "installer", "resident"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(_Strict):
    """One way to reach a person: an apprise URL (`json://`, `mailto://`, `wecombot://`, `dingtalk://`,
    `feishu://`, `ntfy://`, `tgram://`, an SMS gateway...). `limit_per_min` caps sends to this
    target; bursts beyond it are grouped into one message (WeCom and DingTalk bots allow 20/min,
    which is the default for those schemes)."""

    url: str = Field(min_length=4)
    name: str = ""
    limit_per_min: int | None = Field(default=None, ge=1, le=6000)

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()

    @property
    def effective_limit(self) -> int | None:
        if self.limit_per_min is not None:
            return self.limit_per_min
        return 20 if self.scheme in ("wecombot", "dingtalk") else None

    @model_validator(mode="after")
    def _has_scheme(self) -> Channel:
        if "://" not in self.url:
            raise ValueError("url must be an apprise URL like json://host/path or mailto://...")
        return self


class Person(_Strict):
    id: str = Field(pattern=KEY_RE)
    name: str
    role: Role = "volunteer"
    tier: int = Field(default=1, ge=1, le=9)
    lang: Literal["zh", "en", "both"] = "both"
    channels: list[Channel] = Field(min_length=1, description="tried in order: on failure, the next one")
    delivery: Literal["fallback", "all"] = Field(
        default="fallback", description="fallback: first channel that works; all: every channel at once"
    )


class Tier(_Strict):
    tier: int = Field(ge=1, le=9)
    after_s: float = Field(default=0, ge=0, alias="after", description="seconds after raise, unacknowledged")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EscalationPolicy(_Strict):
    """Tier 1 at once, each next tier `after` seconds unacknowledged; the last reached tiers are
    reminded every `repeat_s` until the alarm is acknowledged or cleared."""

    tiers: list[Tier] = Field(
        default_factory=lambda: [Tier.model_validate({"tier": 1, "after": 0})], min_length=1
    )
    repeat_s: float = Field(default=300, ge=5, alias="repeat")
    min_severity: Literal["critical", "major", "minor", "warning"] = "warning"
    notify_resolution: bool = True
    retries: int = Field(default=2, ge=0, le=10, description="retries per channel before the next channel")
    retry_delay_s: float = Field(default=1.0, ge=0, le=60, alias="retry_delay")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> EscalationPolicy:
        afters = [t.after_s for t in self.tiers]
        if afters != sorted(afters):
            raise ValueError("tiers must be listed in order of `after`")
        return self
