"""Roles and what each may do. One table, so reviewers can read the whole policy at once.

A role says *what* a user may do; the user's sites say *where*. Both are checked on every request
(`Principal.can` and `Principal.sees`), so a volunteer of estate A never sees estate B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    MANAGER = "manager"      # runs the estate: sees everything of their sites, switches ports, acks alarms
    VOLUNTEER = "volunteer"  # answers alarms: alarm console, acknowledges, estate overview
    INSTALLER = "installer"  # enrols gateways and checks that devices answer
    RESIDENT = "resident"    # read-only: parking availability of their estate


class Perm(StrEnum):
    VIEW_PARKING = "view_parking"
    VIEW_ESTATE = "view_estate"      # sites, gateways, devices, ports, last values
    VIEW_HEALTH = "view_health"      # device communication health
    VIEW_ALARMS = "view_alarms"      # alarms with their audit trail and notification attempts
    ACK_ALARMS = "ack_alarms"
    RESOLVE_ALARMS = "resolve_alarms"  # close an alarm by hand (edge actions clear no other way)
    SILENCE_ALARMS = "silence_alarms"  # pause an alarm's pushes until a time
    VIEW_WINDOWS = "view_windows"    # sprinkler inspection windows
    MANAGE_WINDOWS = "manage_windows"  # open / end one (pushes of sprinkler alarms are held back)
    VIEW_PEOPLE = "view_people"      # who is notified, how (channels redacted) and the escalation
    COMMAND = "command"              # remote port on/off, main cut
    ENROL = "enrol"                  # create gateways and their MQTT credentials
    CONFIGURE = "configure"          # gateway configs: read, edit, diff, roll back, roll out


POLICY: dict[Role, frozenset[Perm]] = {
    Role.MANAGER: frozenset(Perm),
    Role.VOLUNTEER: frozenset({Perm.VIEW_PARKING, Perm.VIEW_ESTATE, Perm.VIEW_ALARMS, Perm.ACK_ALARMS,
                               Perm.RESOLVE_ALARMS, Perm.VIEW_WINDOWS}),
    Role.INSTALLER: frozenset({Perm.VIEW_PARKING, Perm.VIEW_ESTATE, Perm.VIEW_HEALTH, Perm.ENROL,
                               Perm.VIEW_WINDOWS, Perm.CONFIGURE}),
    Role.RESIDENT: frozenset({Perm.VIEW_PARKING}),
}

ALL_SITES = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: resolved from a session cookie or an API token on every request."""

    user_id: int
    username: str
    role: Role
    sites: frozenset[str] = field(default_factory=frozenset)
    display_name: str = ""
    via_token: bool = False

    def can(self, perm: Perm) -> bool:
        return perm in POLICY[self.role]

    def sees(self, site: str) -> bool:
        return ALL_SITES in self.sites or site in self.sites

    def visible(self, sites: list[str]) -> list[str]:
        """The subset of `sites` this user may see, in the given order."""
        return [s for s in sites if self.sees(s)]
