"""When a shard counts as healthy, when a member counts as lost, and which packs to repair first.

Pure: the daemon, ``peerbak status`` and the durability simulator (``simulations/``) all
decide with these functions, so the figures the simulator gives are the figures of the
policy that runs. Times are seconds; the caller passes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from peerbak.core.errors import InputError

DAY: Final = 86400.0
#: Challenges per holder per day (docs/durability.md: loss and traffic are the same
#: from 6 to 288 a day; 48 find a 1 % loss in about 2 days for ~216 KiB a day).
CHALLENGES_PER_DAY: Final = 48.0
#: A margin that repairs at the first missing shard, whatever the code.
AT_FIRST_LOSS: Final = 64


class MemberState(StrEnum):
    """How the owner rates a member, from its own observations."""

    OK = "ok"
    #: missed its last probes (about three), within the grace: its shards still count
    UNREACHABLE = "unreachable"
    LOST = "lost"  # offline longer than the grace: its shards are repaired elsewhere
    FAILING = "failing"  # failed a storage challenge: repaired away from first


@dataclass(frozen=True, slots=True)
class RepairPolicy:
    """The knobs of repair; defaults justified in protocol/security.md and simulations/.

    - ``margin``: repair a pack once its healthy shards fall to ``k + margin``, so a
      pack still survives ``margin`` more losses while it is being repaired. The
      default repairs at the first missing shard: docs/durability.md (6-of-9: 10-year
      loss 0.33 % at margin 1, 0.01 % at the first loss, for twice the traffic).
    - ``lost_after``: a member silent this long counts as lost. Shorter repairs sooner
      but moves data for every holiday; 7 days finds a dead disk 5 days sooner than 14
      for the same traffic and a third of the loss (docs/durability.md, vacation).
    - ``offline_after``: silence before a member counts as unreachable: about three
      missed probes (the daemon probes every few minutes), so a dead friend shows within
      minutes, not days. It changes what ``status`` says, not what is repaired.
    """

    margin: int = AT_FIRST_LOSS
    lost_after: float = 7 * DAY
    offline_after: float = 15 * 60.0

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise InputError(f"repair margin cannot be negative: {self.margin}")
        if not 0 < self.offline_after <= self.lost_after:
            raise InputError("offline_after must be positive and at most lost_after")

    def member_state(self, last_seen: float | None, failed: bool, now: float) -> MemberState:
        """A member's state from when it last answered and whether it failed a challenge."""
        if failed:
            return MemberState.FAILING
        if last_seen is None:
            return MemberState.OK  # never tried yet: no evidence against it
        silent = now - last_seen
        if silent > self.lost_after:
            return MemberState.LOST
        if silent > self.offline_after:
            return MemberState.UNREACHABLE
        return MemberState.OK

    def effective_margin(self, k: int, n: int) -> int:
        """The margin as it applies to a k-of-n pack (at most n − k − 1)."""
        return max(0, min(self.margin, n - k - 1))

    def needs_repair(self, healthy: int, k: int, n: int) -> bool:
        """Whether a pack with ``healthy`` good shards of ``n`` (any ``k`` rebuild it)
        is repaired now."""
        return healthy < n and healthy <= k + self.effective_margin(k, n)

    @staticmethod
    def shard_counts(state: MemberState) -> bool:
        """Whether a stored shard on a member in ``state`` counts as healthy.

        An offline member's shards still count (it is probably asleep); a lost one's do
        not. A failing member's do, except those found bad: a failed challenge leads
        to an audit of everything the member should hold, and only what is missing or
        damaged is repaired (docs/durability.md: 3-of-5 with one friend silently losing
        shards loses a pack in 10 years in 39 % of runs when the whole member is
        written off, 2.2 % when only its bad shards are).
        """
        return state is not MemberState.LOST


def repair_order(packs: Iterable[tuple[bytes, int, int]]) -> list[bytes]:
    """Pack ids in the order to repair them: fewest spare shards (healthy − k) first.

    ``packs`` yields ``(pack_id, healthy, k)``; ties keep id order so a resumed run
    picks up where it stopped.
    """
    return [p for p, _, _ in sorted(packs, key=lambda t: (t[1] - t[2], t[0]))]


def detection_probability(lost_fraction: float, challenges: int) -> float:
    """Chance that ``challenges`` uniform challenges hit at least one of the lost shards.

    A holder that dropped a fraction ``x`` of our shards passes one challenge of a
    uniformly chosen shard with probability ``1 − x``; N independent challenges all
    pass with ``(1 − x)^N``.
    """
    if not 0 <= lost_fraction <= 1 or challenges < 0:
        raise InputError("need 0 ≤ lost_fraction ≤ 1 and challenges ≥ 0")
    return 1 - (1 - lost_fraction) ** challenges


def challenges_to_detect(lost_fraction: float, confidence: float) -> int:
    """Smallest N with detection probability at least ``confidence``."""
    if not 0 < lost_fraction <= 1 or not 0 < confidence < 1:
        raise InputError("need 0 < lost_fraction ≤ 1 and 0 < confidence < 1")
    if lost_fraction == 1:
        return 1
    return math.ceil(math.log(1 - confidence) / math.log(1 - lost_fraction))
