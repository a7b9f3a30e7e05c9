"""Where a pack's shards go: n distinct members, never the owner, spread over failure domains.

Each candidate is ranked by ``blake3(pack id ‖ node id)``: rendezvous hashing, so the
choice is deterministic (any node computes the same placement from the same roster),
spreads load evenly, and changes little when a member joins or leaves (only shards the
newcomer outranks move). Members that are unhealthy or lack room for the shard are
skipped; among the rest, members of a failure domain (a house, a power circuit) not yet
used come first, so two shards share a domain only when there is no other way.

Pure: the caller says who is healthy and how much room each has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import blake3

from peerbak.core.errors import InputError

#: (k, n) by number of members other than the owner, from docs/durability.md: n leaves
#: one friend free from 4 friends on, so a lost shard can be rebuilt at once (with n =
#: friends it waits for a new friend); n − k = 2 up to n = 5, then 3. Yearly loss at
#: 0.185 member losses a year: 5.4e-3 (2 friends), 2.4e-4 (3), 4.4e-5 (4), 8.3e-5
#: (5), 1.5e-4 (6), 2.7e-6 (7), 5.0e-6 (8), 8.4e-6 (9), 1.4e-5 (10).
DEFAULT_CODES: Final[dict[int, tuple[int, int]]] = {
    2: (1, 2),
    3: (1, 3),
    4: (1, 3),
    5: (2, 4),
    6: (3, 5),
    7: (3, 6),
    8: (4, 7),
    9: (5, 8),
    10: (6, 9),
}


def default_code(friends: int) -> tuple[int, int]:
    """(k, n) for a pool where the owner has ``friends`` other members.

    Beyond 10 friends: n = 10, k = 6 (more shards would cost more repair traffic than
    the added tolerance is worth for a friend pool: docs/durability.md).
    """
    if friends < 2:
        raise InputError(f"a pool needs at least 2 other members to spread shards, has {friends}")
    return DEFAULT_CODES.get(friends, (6, 10))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A member as placement sees it."""

    node: bytes
    domain: str = ""  # failure domain; "" = its own
    healthy: bool = True
    free: int = 1 << 62  # bytes it will still take from this owner


def rank(pack_id: bytes, node: bytes) -> bytes:
    return bytes(blake3.blake3(pack_id + node).digest())


def place(
    pack_id: bytes, n: int, candidates: Sequence[Candidate], owner: bytes, shard_size: int
) -> list[bytes]:
    """Up to ``n`` distinct holders in shard order (shard i goes to the i-th).

    Fewer than ``n`` come back when fewer members qualify; the caller decides whether
    that is enough (at least k + 1 for a backup to go on).
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    seen: set[bytes] = set()
    eligible = []
    for c in candidates:
        if c.node == owner or c.node in seen or not c.healthy or c.free < shard_size:
            continue
        seen.add(c.node)
        eligible.append(c)
    eligible.sort(key=lambda c: rank(pack_id, c.node))
    chosen: list[Candidate] = []
    used_domains: set[str] = set()
    # First pass: one member per failure domain; then fill from whoever is left.
    for c in eligible:
        domain = c.domain or c.node.hex()
        if domain not in used_domains and len(chosen) < n:
            chosen.append(c)
            used_domains.add(domain)
    for c in eligible:
        if len(chosen) >= n:
            break
        if c not in chosen:
            chosen.append(c)
    return [c.node for c in chosen]
