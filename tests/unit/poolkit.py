"""What the pool tests share: fixed keys and pools, records with defaults, a founded roster."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, settings

from peerbak.core import pool as P
from peerbak.core.crypto import NodeKeys
from peerbak.core.pool import (
    Roster,
    RosterRecord,
    SignedRecord,
    found_pool,
    ssh_public_key,
)

POOL = bytes(range(16))
OTHER_POOL = bytes(range(16, 32))
KEYS = [NodeKeys.derive(bytes(range(32 * i, 32 * i + 32))) for i in range(6)]
A, B, C, D, E, F = KEYS
STRANGER = NodeKeys.derive(bytes(range(192, 224)))
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
fast = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def nid(keys: NodeKeys) -> bytes:
    return bytes(keys.node_id)


def rec(keys: NodeKeys, *, added_by: NodeKeys | None = None, **fields: Any) -> RosterRecord:
    """A live record for ``keys`` with sensible defaults; override any field."""
    base: dict[str, Any] = {
        "pool": POOL,
        "node": nid(keys),
        "ssh_key": ssh_public_key(keys),
        "name": f"node-{nid(keys).hex()[:4]}",
        "addresses": ("10.0.0.1:4022",),
        "added_by": nid(added_by or keys),
        "version": 1,
        "removed": False,
    }
    base.update(fields)
    return RosterRecord(**base)


def raw_sign(record: RosterRecord, signer: NodeKeys, domain: bytes = P.ROSTER_DOMAIN) -> bytes:
    """Sign without any field check: how a hostile peer makes records."""
    body = msgspec.msgpack.encode(record)
    sig = signer.identity.sign(domain + body).signature
    return msgspec.msgpack.encode(SignedRecord(body, nid(signer), sig))


def founded(*members: NodeKeys) -> tuple[Roster, dict[bytes, bytes]]:
    """A pool founded by A, with each of ``members`` admitted by A; returns the blobs too."""
    roster = Roster(POOL)
    blobs = {nid(A): found_pool(A, POOL, "alice", ["a.example:22"], ssh_public_key(A))}
    assert roster.apply(blobs[nid(A)])
    for keys in members:
        blobs[nid(keys)] = roster.admit(A, rec(keys))
        assert roster.apply(blobs[nid(keys)]), roster.last_rejection
    return roster, blobs


def names(roster: Roster) -> list[bytes]:
    return [r.node for r in roster.members()]
