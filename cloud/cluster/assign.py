"""Which partitions a replica should hold: fair shares and a stable preference. Pure.

Every live replica computes the same shares from the same list of live replicas (sorted ids): with
P partitions and N replicas each holds P // N, and the first P % N replicas one more. A replica
claims free partitions in the order of its own preference (rendezvous hashing: the highest
hash(replica, partition) first), so after a restart it tends to get the same ones back and replicas
rarely want the same partition at the same moment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def share(partitions: int, live: Iterable[str], me: str) -> int:
    """How many partitions `me` should hold while `live` (which includes `me`) are alive."""
    ids = sorted(set(live) | {me})
    base, extra = divmod(partitions, len(ids))
    return base + (1 if ids.index(me) < extra else 0)


def preference(me: str, partitions: int) -> list[int]:
    """`me`'s partitions, most wanted first (rendezvous hashing)."""

    def score(p: int) -> bytes:
        return hashlib.blake2b(f"{me}/{p}".encode(), digest_size=8).digest()

    return sorted(range(partitions), key=score, reverse=True)


def to_claim(held: set[int], free: Iterable[int], want: int, me: str, partitions: int) -> list[int]:
    """Free partitions to claim, in preference order, to reach `want`."""
    need = want - len(held)
    if need <= 0:
        return []
    free_set = set(free) - held
    return [p for p in preference(me, partitions) if p in free_set][:need]


def to_release(held: set[int], want: int, me: str, partitions: int, starving: bool) -> list[int]:
    """Partitions to hand back: beyond `want`, least wanted first, and only while another live
    replica holds fewer than its share (`starving`): without a taker, giving one up only pauses it."""
    extra = len(held) - want
    if extra <= 0 or not starving:
        return []
    return [p for p in reversed(preference(me, partitions)) if p in held][:extra]
