"""Pool membership (protocol/pool.md): record format, every roster rule and the attacks on it,
convergence of gossip, invite tokens and the join proof."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbak.core import pool as P
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
    RemoteProtocolError,
)
from peerbak.core.pool import (
    Invite,
    JoinClaim,
    Roster,
    RosterRecord,
    SignedRecord,
    check_join_claim,
    check_join_proof,
    decode_join_claim,
    decode_token,
    encode_join_claim,
    encode_token,
    found_pool,
    invite_verifier,
    is_expired,
    join_claim,
    join_proof,
    new_invite,
    open_proposal,
    open_record,
    propose_join,
    sign_record,
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


# ------------------------------------------------------------------------ record format


def test_sign_and_open_round_trip() -> None:
    record = rec(A)
    blob = sign_record(record, A.identity)
    assert open_record(blob) == (record, nid(A))


def test_signature_covers_the_domain_and_the_body() -> None:
    blob = sign_record(rec(A), A.identity)
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    nacl.signing.VerifyKey(signed.signer).verify(
        b"peerbak roster v1\x00" + signed.body, signed.signature
    )
    assert msgspec.msgpack.decode(signed.body, type=RosterRecord) == rec(A)


@pytest.mark.parametrize("where", ["signature", "body", "signer"])
def test_forged_or_damaged_records_are_refused(where: str) -> None:
    blob = sign_record(rec(A), A.identity)
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    if where == "signature":
        bad = SignedRecord(signed.body, signed.signer, bytes(64))
    elif where == "body":
        forged = msgspec.msgpack.encode(msgspec.structs.replace(rec(A), name="mallory"))
        bad = SignedRecord(forged, signed.signer, signed.signature)
    else:
        bad = SignedRecord(signed.body, nid(B), signed.signature)
    with pytest.raises(IntegrityError):
        open_record(msgspec.msgpack.encode(bad))


def test_every_flipped_bit_is_refused() -> None:
    blob = sign_record(rec(A), A.identity)
    for bit in range(0, len(blob) * 8, 3):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((IntegrityError, RemoteProtocolError)):
            open_record(bytes(damaged))


def test_size_cap_is_checked_before_decoding() -> None:
    with pytest.raises(RemoteProtocolError, match="cap"):
        open_record(b"\x93" + b"\xff" * P.MAX_SIGNED_RECORD)


def test_the_largest_legal_record_fits_the_cap() -> None:
    big = rec(
        A,
        name="é" * 32,
        addresses=tuple("h" * 249 + ":65535" for _ in range(P.MAX_ADDRESSES)),
        version=P.MAX_VERSION,
    )
    blob = sign_record(big, A.identity)
    assert len(blob) == 4416 <= P.MAX_SIGNED_RECORD
    assert open_record(blob)[0] == big


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc0",
        b"\x93\xc4\x00\xc4\x00\xc4\x00",
        msgspec.msgpack.encode([1, 2, 3]),
    ],
)
def test_malformed_bytes_are_protocol_errors(blob: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        open_record(blob)


def test_non_canonical_encodings_are_refused() -> None:
    blob = sign_record(rec(A), A.identity)
    with pytest.raises(RemoteProtocolError):
        open_record(blob + b"\x00")  # trailing byte
    signed = msgspec.msgpack.decode(blob, type=SignedRecord)
    extra = msgspec.msgpack.encode([signed.body, signed.signer, signed.signature, 0])
    with pytest.raises(RemoteProtocolError, match="canonical"):
        open_record(extra)  # a fourth element msgspec would silently drop
    # version 1 written as uint8 (0xcc 0x01) instead of fixint: same value, other bytes
    body = signed.body
    assert body[-2:] == b"\x01\xc2"
    long_body = body[:-2] + b"\xcc\x01\xc2"
    sig = A.identity.sign(P.ROSTER_DOMAIN + long_body).signature
    with pytest.raises(RemoteProtocolError, match="canonical"):
        open_record(msgspec.msgpack.encode(SignedRecord(long_body, nid(A), sig)))


BAD_FIELDS: list[dict[str, Any]] = [
    {"pool": bytes(15)},
    {"node": bytes(31)},
    {"ssh_key": bytes(33)},
    {"added_by": b""},
    {"name": ""},
    {"name": "x" * 65},
    {"name": "é" * 33},
    {"name": "evil\x1b[2J"},
    {"name": "a\nb"},
    {"name": "abc\u202edcba"},
    {"addresses": ("10.0.0.1:22",) * 17},
    {"addresses": ("h" * 251 + ":4022",)},
    {"addresses": ("no-port",)},
    {"addresses": ("host:0",)},
    {"addresses": ("host:65536",)},
    {"addresses": ("::1:22",)},
    {"addresses": ("a b:22",)},
    {"addresses": ("-host:22",)},
    {"version": 0},
    {"version": P.MAX_VERSION + 1},
]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=lambda f: repr(f)[:40])
def test_field_limits_are_enforced_both_ways(fields: dict[str, Any]) -> None:
    record = msgspec.structs.replace(rec(A), **fields)
    with pytest.raises(InputError):
        sign_record(record, A.identity)
    with pytest.raises(RemoteProtocolError):
        open_record(raw_sign(record, A))


@pytest.mark.parametrize(
    "address", ["a:1", "example.com:22", "192.168.1.20:4022", "[2001:db8::1]:65535", "x_y.lan:22"]
)
def test_good_addresses(address: str) -> None:
    assert open_record(sign_record(rec(A, addresses=(address,)), A.identity))


def test_ssh_public_key_is_the_ssh_seed_key() -> None:
    assert ssh_public_key(A) == bytes(nacl.signing.SigningKey(A.ssh_seed).verify_key)
    assert ssh_public_key(A) != nid(A)
    assert len(ssh_public_key(A)) == 32


# ------------------------------------------------------------------ rules: founding (1)


def test_founding_record() -> None:
    roster, _ = founded()
    assert roster.founder == nid(A)
    assert names(roster) == [nid(A)]
    founder = roster.record(nid(A))
    assert founder is not None
    assert founder.added_by == founder.node == nid(A)
    assert founder.version == 1
    assert roster.last_rejection == ""


def test_empty_roster_accepts_only_a_founding_record() -> None:
    roster = Roster(POOL)
    assert not roster.apply(sign_record(rec(B, added_by=A, version=2), A.identity))
    assert not roster.apply(sign_record(rec(A, version=2), A.identity))  # founding is v1
    assert not roster.apply(sign_record(rec(A, removed=True), A.identity))
    assert roster.members() == []
    assert roster.founder is None


def test_a_second_founder_is_refused() -> None:
    roster, _ = founded(B)
    stranger = found_pool(C, POOL, "carol", [], ssh_public_key(C))
    assert not roster.apply(stranger)
    assert "admitted" in roster.last_rejection
    assert roster.founder == nid(A)
    assert not roster.is_member(nid(C))


def test_a_roster_told_its_founder_refuses_any_other() -> None:
    roster = Roster(POOL, founder=nid(A))
    assert not roster.apply(found_pool(C, POOL, "carol", [], ssh_public_key(C)))
    assert roster.apply(found_pool(A, POOL, "alice", [], ssh_public_key(A)))


def test_record_for_another_pool_is_ignored() -> None:
    roster, _ = founded()
    other = found_pool(B, OTHER_POOL, "bob", [], ssh_public_key(B))
    assert not roster.apply(other)
    assert roster.last_rejection == "record for another pool"


# ----------------------------------------------------------------- rules: admission (2)


def test_admission_by_a_member() -> None:
    roster, _ = founded(B)
    assert names(roster) == sorted([nid(A), nid(B)])
    b = roster.record(nid(B))
    assert b is not None
    assert b.added_by == nid(A)
    assert roster.ssh_keys() == {nid(A): ssh_public_key(A), nid(B): ssh_public_key(B)}


def test_admission_must_name_its_signer() -> None:
    roster, _ = founded(B)
    blob = sign_record(rec(C, added_by=A, version=5), B.identity)
    assert not roster.apply(blob)
    assert "added_by" in roster.last_rejection


def test_non_member_cannot_admit() -> None:
    roster, _ = founded(B)
    assert not roster.apply(sign_record(rec(D, added_by=C, version=5), C.identity))
    assert not roster.apply(sign_record(rec(C, version=5), C.identity))  # itself
    assert not roster.apply(sign_record(rec(C, added_by=C, version=1), C.identity))
    assert names(roster) == sorted([nid(A), nid(B)])


def test_a_proposal_is_not_a_roster_record() -> None:
    roster, _ = founded()
    proposal = propose_join(B, POOL, nid(A), "bob", [])
    assert not roster.apply(proposal)
    with pytest.raises(IntegrityError):
        open_record(proposal)
    with pytest.raises(IntegrityError):
        open_proposal(sign_record(rec(B, added_by=A), B.identity))


# ------------------------------------------------------------------- rules: updates (3)


def test_member_updates_its_own_record() -> None:
    roster, _ = founded(B)
    blob = roster.update(B, name="bobby", addresses=["b.example:22"])
    assert roster.apply(blob)
    b = roster.record(nid(B))
    assert b is not None
    assert (b.name, b.addresses, b.added_by) == ("bobby", ("b.example:22",), nid(A))


def test_ssh_key_cannot_change() -> None:
    roster, _ = founded(B)
    current = roster.record(nid(B))
    assert current is not None
    stolen = msgspec.structs.replace(current, ssh_key=ssh_public_key(C), version=10)
    assert not roster.apply(sign_record(stolen, B.identity))
    assert "ssh_key" in roster.last_rejection
    # nor by anyone else
    assert not roster.apply(sign_record(stolen, A.identity))
    assert roster.ssh_keys()[nid(B)] == ssh_public_key(B)


def test_added_by_cannot_change() -> None:
    roster, _ = founded(B, C)
    current = roster.record(nid(B))
    assert current is not None
    moved = msgspec.structs.replace(current, added_by=nid(C), version=10)
    assert not roster.apply(sign_record(moved, B.identity))
    assert "added_by" in roster.last_rejection


def test_member_cannot_change_another_members_addresses() -> None:
    roster, _ = founded(B, C)
    current = roster.record(nid(B))
    assert current is not None
    hijack = msgspec.structs.replace(current, addresses=("evil.example:22",), version=10)
    assert not roster.apply(sign_record(hijack, C.identity))
    assert "only the member itself" in roster.last_rejection
    assert not roster.apply(sign_record(hijack, A.identity))  # not even its admitter
    b = roster.record(nid(B))
    assert b is not None
    assert b.addresses == ("10.0.0.1:4022",)


# -------------------------------------------------------- rules: stale and duplicate (4)


def test_replay_of_an_old_version_is_ignored() -> None:
    roster, _ = founded(B)
    v2 = roster.update(B, name="v2")
    assert roster.apply(v2)
    v3 = roster.update(B, name="v3")
    assert roster.apply(v3)
    assert not roster.apply(v2)
    assert "superseded" in roster.last_rejection
    assert not roster.apply(v3)
    assert roster.last_rejection == "record already held"
    b = roster.record(nid(B))
    assert b is not None
    assert b.name == "v3"


def test_equal_versions_resolve_to_the_greater_bytes_in_any_order() -> None:
    roster, _ = founded(B)
    one = sign_record(rec(B, added_by=A, name="one", version=7), B.identity)
    two = sign_record(rec(B, added_by=A, name="two", version=7), B.identity)
    winner = "one" if one > two else "two"
    results = []
    for order in ((one, two), (two, one)):
        copy, _ = founded(B)
        for blob in order:
            copy.apply(blob)
        record = copy.record(nid(B))
        assert record is not None
        results.append(record.name)
    assert results == [winner, winner]
    del roster


# -------------------------------------------------------------- rules: removal (5, 6, 7)


def test_member_removes_another() -> None:
    roster, _ = founded(B, C)
    tomb = roster.remove(C, nid(B))
    assert roster.apply(tomb)
    assert not roster.is_member(nid(B))
    b = roster.record(nid(B))
    assert b is not None
    assert b.removed
    assert nid(B) not in roster.ssh_keys()
    assert tomb in roster.blobs()  # tombstones spread


def test_member_leaves() -> None:
    roster, _ = founded(B)
    assert roster.apply(roster.remove(B, nid(B)))
    assert names(roster) == [nid(A)]


def test_leaving_keeps_the_members_one_admitted() -> None:
    roster, _ = founded(B)
    assert roster.apply(roster.admit(B, rec(C)))
    leave = roster.remove(B, nid(B))
    assert open_record(leave)[0].version > roster.record(nid(C)).version  # type: ignore[union-attr]
    assert roster.apply(leave)
    assert names(roster) == sorted([nid(A), nid(C)])


def test_founder_can_be_removed() -> None:
    roster, _ = founded(B)
    assert roster.apply(roster.remove(B, nid(A)))
    assert names(roster) == [nid(B)]


def test_non_member_cannot_remove() -> None:
    roster, _ = founded(B)
    current = roster.record(nid(B))
    assert current is not None
    tomb = msgspec.structs.replace(current, version=9, removed=True)
    assert not roster.apply(sign_record(tomb, C.identity))
    assert roster.is_member(nid(B))


def test_removal_of_an_unknown_node_is_ignored() -> None:
    roster, _ = founded(B)
    assert not roster.apply(sign_record(rec(C, added_by=A, version=5, removed=True), A.identity))
    assert "not a member" in roster.last_rejection


def test_removed_member_cannot_readd_itself() -> None:
    roster, _ = founded(B)
    assert roster.apply(roster.remove(A, nid(B)))
    comeback = sign_record(rec(B, added_by=A, version=100), B.identity)
    assert not roster.apply(comeback)
    assert "stays removed" in roster.last_rejection
    # nor with itself as admitter
    assert not roster.apply(sign_record(rec(B, version=100), B.identity))
    assert not roster.is_member(nid(B))


def test_removed_member_cannot_sign_admissions_or_removals() -> None:
    roster, _ = founded(B, C)
    tomb = roster.remove(A, nid(B))
    assert roster.apply(tomb)
    t = open_record(tomb)[0].version
    assert not roster.apply(sign_record(rec(D, added_by=B, version=t + 1), B.identity))
    assert "not a current member" in roster.last_rejection
    current = roster.record(nid(C))
    assert current is not None
    kick = msgspec.structs.replace(current, version=t + 1, removed=True)
    assert not roster.apply(sign_record(kick, B.identity))
    assert names(roster) == sorted([nid(A), nid(C)])


def test_removal_does_not_cascade_to_earlier_admissions() -> None:
    roster, _ = founded(B)
    c = roster.admit(B, rec(C))
    assert roster.apply(c)
    assert roster.apply(roster.remove(A, nid(B)))
    assert roster.is_member(nid(C))
    # and a newcomer that learns the pool from blobs() agrees
    fresh = Roster(POOL)
    for blob in reversed(roster.blobs()):
        fresh.apply(blob)
    assert fresh.blobs() == roster.blobs()
    assert names(fresh) == sorted([nid(A), nid(C)])


def test_admission_ordered_after_its_signers_removal_is_void() -> None:
    """The removal race: B admits D at a version after A removed it (unseen by B)."""
    roster, _ = founded(B)
    tomb = roster.remove(A, nid(B))
    late = sign_record(rec(D, added_by=B, version=open_record(tomb)[0].version + 1), B.identity)
    for order in ((tomb, late), (late, tomb)):
        copy, _ = founded(B)
        for blob in order:
            copy.apply(blob)
        assert not copy.is_member(nid(D))
        assert names(copy) == [nid(A)]


def test_backdated_admission_by_a_removed_member_is_the_documented_limit() -> None:
    """Without a global order a removed key can still sign records dated before its removal
    (protocol/pool.md section 7): they are accepted, and any member can remove them."""
    roster, _ = founded(B)
    assert roster.apply(roster.admit(B, rec(C)))  # B admits C at version 3
    tomb = roster.remove(A, nid(B))
    t = open_record(tomb)[0].version
    assert t == 4
    assert roster.apply(tomb)
    sock = sign_record(rec(D, added_by=B, version=3), B.identity)
    assert roster.apply(sock)
    d = roster.record(nid(D))
    assert d is not None
    assert d.added_by == nid(B)
    assert not roster.is_member(d.added_by)  # visible: admitted by a removed member
    assert roster.apply(roster.remove(C, nid(D)))
    assert not roster.is_member(nid(D))


def test_readmission_after_removal() -> None:
    roster, _ = founded(B, C)
    assert roster.apply(roster.remove(B, nid(B)))
    readmit = roster.admit(C, rec(B))
    assert open_record(readmit)[0].version > roster.record(nid(B)).version  # type: ignore[union-attr]
    assert roster.apply(readmit)
    b = roster.record(nid(B))
    assert b is not None
    assert (b.removed, b.added_by) == (False, nid(C))
    # the earlier membership's evidence stays in blobs(): a newcomer rebuilds the same roster
    fresh = Roster(POOL)
    for blob in sorted(roster.blobs()):
        fresh.apply(blob)
    assert fresh.blobs() == roster.blobs()


def test_readmission_by_a_removed_member_is_refused() -> None:
    roster, _ = founded(B, C)
    assert roster.apply(roster.remove(A, nid(B)))
    assert roster.apply(roster.remove(A, nid(C)))
    t = max(r.version for r in (roster.record(nid(B)), roster.record(nid(C))) if r)
    assert not roster.apply(sign_record(rec(B, added_by=C, version=t + 1), C.identity))
    assert not roster.is_member(nid(B))


def test_removal_wins_over_version_inflation() -> None:
    """A member pushing its version to the maximum cannot make itself unremovable."""
    roster, _ = founded(B)
    inflated = sign_record(rec(B, added_by=A, version=P.MAX_VERSION), B.identity)
    assert roster.apply(inflated)
    tomb = roster.remove(A, nid(B))
    assert open_record(tomb)[0].version < P.MAX_VERSION
    assert roster.apply(tomb)
    assert not roster.is_member(nid(B))
    assert inflated not in roster.blobs()


def test_concurrent_update_and_removal_end_removed() -> None:
    roster, _ = founded(B)
    tomb = roster.remove(A, nid(B))
    update = roster.update(B, addresses=["new.example:22"])
    for order in ((tomb, update), (update, tomb)):
        copy, _ = founded(B)
        for blob in order:
            copy.apply(blob)
        assert not copy.is_member(nid(B))


# ----------------------------------------------------------------- gossip and hostility


def test_records_arriving_before_their_signer_wait_in_pending() -> None:
    source, blobs = founded(B)
    c = source.admit(B, rec(C))
    assert source.apply(c)
    roster = Roster(POOL)
    assert not roster.apply(c)  # B unknown yet
    assert roster.pending == 1
    assert not roster.apply(blobs[nid(B)])  # A unknown yet
    assert roster.apply(blobs[nid(A)])  # founder: everything falls into place
    assert names(roster) == names(source)
    assert roster.pending == 0


def test_pending_is_bounded() -> None:
    roster, _ = founded()
    rng = random.Random(5)
    for i in range(P.PENDING_MAX + 20):
        stranger = nacl.signing.SigningKey(rng.randbytes(32))
        node = bytes(stranger.verify_key)
        record = rec(A, node=node, added_by=A, version=2 + i)
        roster.apply(sign_record(record, stranger))
    assert roster.pending == P.PENDING_MAX
    assert names(roster) == [nid(A)]


@fast
@given(st.binary(max_size=600))
def test_apply_never_raises_on_garbage(blob: bytes) -> None:
    roster, _ = founded()
    assert roster.apply(blob) is False
    assert roster.last_rejection


@fast
@given(st.data())
def test_apply_never_raises_on_mutated_records(data: st.DataObject) -> None:
    roster, blobs = founded()
    blob = bytearray(data.draw(st.sampled_from([*blobs.values(), roster.admit(A, rec(B))])))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    roster.apply(bytes(blob))


def test_apply_refuses_non_bytes() -> None:
    roster, _ = founded()
    assert not roster.apply("text")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- convergence

#: Operations: (actor, verb, target) with verbs admit, remove, update, sync.
ops_st = st.lists(
    st.tuples(
        st.integers(0, 5), st.sampled_from(["admit", "remove", "update", "sync"]), st.integers(0, 5)
    ),
    min_size=1,
    max_size=25,
)


def history(ops: list[tuple[int, str, int]]) -> list[bytes]:
    """Blobs of a pool where each node acts on its own, possibly stale, view."""
    views = [Roster(POOL) for _ in KEYS]
    everything = [found_pool(A, POOL, "alice", ["a.example:22"], ssh_public_key(A))]
    views[0].apply(everything[0])
    for actor, verb, target in ops:
        view, keys = views[actor], KEYS[actor]
        if verb == "sync" or not view.is_member(nid(keys)):
            for blob in everything:
                view.apply(blob)
            continue
        other = KEYS[target]
        try:
            if verb == "admit":
                blob = view.admit(keys, rec(other, name=f"n{target}"))
            elif verb == "remove":
                blob = view.remove(keys, nid(other))
            else:
                blob = view.update(keys, name=f"n{actor}-{len(everything)}")
        except (InputError, NotFoundError):
            continue
        view.apply(blob)
        if verb == "admit":
            views[target].apply(everything[0])
        everything.append(blob)
    # some hostile noise that must be refused whatever the order
    everything.append(sign_record(rec(STRANGER, version=3), STRANGER.identity))
    everything.append(sign_record(rec(A, added_by=STRANGER, version=50), STRANGER.identity))
    everything.append(raw_sign(rec(B, added_by=A, version=99, name="x\x00"), B))
    return everything


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(ops_st, st.randoms(use_true_random=False))
def test_three_rosters_converge_whatever_the_order(
    ops: list[tuple[int, str, int]], rnd: random.Random
) -> None:
    blobs = history(ops)
    rosters = []
    for _ in range(3):
        order = blobs[:]
        rnd.shuffle(order)
        roster = Roster(POOL, founder=nid(A))
        for blob in order:
            roster.apply(blob)
        rosters.append(roster)
    first = rosters[0]
    for other in rosters[1:]:
        assert other.blobs() == first.blobs()
        assert other.members() == first.members()
        assert [other.record(nid(k)) for k in KEYS] == [first.record(nid(k)) for k in KEYS]
    # gossip: a newcomer fed only blobs() (any order) rebuilds the same roster
    fresh = Roster(POOL)
    kept = first.blobs()
    rnd.shuffle(kept)
    for blob in kept:
        fresh.apply(blob)
    assert fresh.blobs() == first.blobs()
    assert fresh.members() == first.members()
    assert nid(STRANGER) not in first.ssh_keys()


def state(roster: Roster) -> tuple[list[RosterRecord | None], list[RosterRecord]]:
    return [roster.record(nid(k)) for k in [*KEYS, STRANGER]], roster.members()


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(ops_st, st.randoms(use_true_random=False))
def test_gossip_push_and_anti_entropy_converge(
    ops: list[tuple[int, str, int]], rnd: random.Random
) -> None:
    """Each record reaches one member; a change is pushed to two others; then members
    exchange blobs() until nothing changes. All end with the roster of one who saw all."""
    blobs = history(ops)
    peers = [Roster(POOL, founder=nid(A)) for _ in range(4)]
    for blob in blobs:
        peer = rnd.choice(peers)
        before = set(peer.blobs())
        if peer.apply(blob):
            new = [b for b in peer.blobs() if b not in before]
            for other in rnd.sample(peers, 2):
                for b in new:
                    other.apply(b)
    for _ in range(30):
        changed = False
        for source in peers:
            for sink in peers:
                for b in source.blobs():
                    changed |= sink.apply(b)
        if not changed:
            break
    else:
        pytest.fail("anti-entropy did not reach a fixpoint")
    everything = Roster(POOL, founder=nid(A))
    for blob in blobs:
        everything.apply(blob)
    for peer in peers:
        assert state(peer) == state(everything)


def test_an_update_displaced_by_a_newer_one_is_never_needed() -> None:
    """Section 3.4: B's update is dropped once a newer update of B is held, even while the
    newer one is refused (B was removed before it); should the removal be undone by an
    older removal of its signer arriving late, the newer update becomes current."""
    roster, _ = founded(B, C)
    kick_c = roster.remove(A, nid(C))  # made now, arrives late
    old = sign_record(rec(B, added_by=A, name="old", version=3), B.identity)
    assert roster.apply(old)
    assert roster.apply(roster.admit(B, rec(E)))  # so B's removal must come later
    tomb_b = roster.remove(C, nid(B))
    assert open_record(kick_c)[0].version < open_record(tomb_b)[0].version
    assert roster.apply(tomb_b)
    assert old in roster.blobs()  # B's last update before its removal is kept
    newer = sign_record(rec(B, added_by=A, name="newer", version=50), B.identity)
    assert not roster.apply(newer)  # B was removed before version 50
    assert "not a member" in roster.last_rejection or "stays removed" in roster.last_rejection
    assert old not in roster.blobs()
    assert not roster.is_member(nid(B))
    assert not roster.apply(old)  # displaced for good
    assert "superseded" in roster.last_rejection
    assert roster.apply(kick_c)  # C was removed before it removed B: B's removal is void
    b = roster.record(nid(B))
    assert b is not None
    assert (b.removed, b.name) == (False, "newer")
    assert roster.blobs()[-1] == newer


# ------------------------------------------------------------------ making records


def test_next_version_follows_what_a_record_must_follow() -> None:
    roster, _ = founded(B)
    b_start = roster.record(nid(B)).version  # type: ignore[union-attr]
    assert roster.next_version(nid(B), nid(B)) == b_start + 1
    assert roster.next_version(nid(C), nid(B)) == b_start + 1
    c = roster.admit(B, rec(C))
    assert roster.apply(c)
    # removing B must follow every record B signed that we hold
    assert roster.next_version(nid(B), nid(A), removal=True) == open_record(c)[0].version + 1
    assert roster.next_version(nid(B), nid(B)) == b_start + 1  # an update


def test_builders_refuse_what_would_be_refused() -> None:
    roster, _ = founded(B)
    with pytest.raises(InputError):
        roster.admit(C, rec(D))  # not a member
    with pytest.raises(InputError):
        roster.admit(A, rec(B))  # already a member
    with pytest.raises(InputError):
        roster.admit(A, rec(D, pool=OTHER_POOL))
    with pytest.raises(NotFoundError):
        roster.remove(A, nid(D))
    with pytest.raises(InputError):
        roster.update(C, name="x")
    with pytest.raises(InputError):
        Roster(bytes(15))


# ------------------------------------------------------------------------ invite tokens


def fixed_invite(addresses: tuple[str, ...] = ("192.168.1.20:4022",)) -> Invite:
    return Invite(
        pool=POOL,
        inviter=nid(A),
        host_key=ssh_public_key(A),
        invite_id=bytes(range(100, 116)),
        secret=bytes(range(32)),
        expires=1_800_000_000,
        addresses=addresses,
    )


def test_new_invite_uses_the_given_randomness_and_clock() -> None:
    invite, verifier = new_invite(
        A, POOL, ssh_public_key(A), ["a.example:22"], 1000.5, 3600, random.Random(1).randbytes
    )
    rnd = random.Random(1)
    assert invite.invite_id == rnd.randbytes(16)
    assert invite.secret == rnd.randbytes(32)
    assert invite.expires == 4600
    assert invite.inviter == nid(A)
    assert verifier == invite_verifier(invite.secret)
    assert verifier != invite.secret
    assert not is_expired(invite, 4599.9)
    assert is_expired(invite, 4600)
    with pytest.raises(InputError):
        new_invite(A, POOL, ssh_public_key(A), [], 1000, 0, random.Random(1).randbytes)
    with pytest.raises(InputError):
        new_invite(A, POOL, ssh_public_key(A), ["a:1"] * 9, 1000, 60, random.Random(1).randbytes)


def test_invite_repr_hides_the_secret() -> None:
    invite = fixed_invite()
    assert invite.secret.hex() not in repr(invite)
    assert invite.invite_id.hex() in repr(invite)


def test_token_round_trip() -> None:
    invite = fixed_invite()
    token = encode_token(invite)
    assert token.startswith("pb1-")
    assert set(token[4:]) <= set(ALPHABET + "-")
    assert decode_token(token) == invite
    assert decode_token(invite_text_variants(token)) == invite


def invite_text_variants(token: str) -> str:
    """Pasted with a line break, upper case and spaces instead of dashes."""
    body = token[4:].upper().replace("-", " ")
    return "  PB1-" + body[:100] + "\n" + body[100:] + "\n"


def test_token_with_no_addresses_and_with_many() -> None:
    for addresses in (
        (),
        ("a:1",) * 8,
        ("[2001:db8::1]:4022", "nas.example.org:22", "10.0.0.2:22"),
    ):
        invite = fixed_invite(addresses)
        assert decode_token(encode_token(invite)) == invite


def test_token_too_big_is_refused() -> None:
    with pytest.raises(InputError, match="fit"):
        encode_token(fixed_invite(("h" * 60 + ":22",) * 2))


def chars_of(token: str) -> list[str]:
    return list(token[4:].replace("-", ""))


def with_chars(chars: list[str]) -> str:
    s = "".join(chars)
    return "pb1-" + "-".join(s[i : i + 5] for i in range(0, len(s), 5))


#: Characters 1 and 4 of 8-character blocks straddle two bytes, no two sharing one.
STRADDLING = [8 * block + off for block in range(20) for off in (1, 4)]


def test_four_typos_anywhere_are_corrected() -> None:
    invite = fixed_invite()
    chars = chars_of(encode_token(invite))
    rng = random.Random(7)
    for _ in range(30):
        typed = chars[:]
        for pos in rng.sample(STRADDLING, 4):
            typed[pos] = ALPHABET[(ALPHABET.index(typed[pos]) + rng.randrange(1, 32)) % 32]
        assert decode_token(with_chars(typed)) == invite


def test_eight_unreadable_characters_are_restored() -> None:
    invite = fixed_invite()
    chars = chars_of(encode_token(invite))
    for pos in STRADDLING[:8]:
        chars[pos] = "?"
    assert decode_token(with_chars(chars)) == invite


def test_garbled_tokens_are_refused() -> None:
    chars = chars_of(encode_token(fixed_invite()))
    rng = random.Random(11)
    for _ in range(50):
        typed = chars[:]
        for pos in rng.sample(range(len(typed)), 20):
            typed[pos] = ALPHABET[(ALPHABET.index(typed[pos]) + rng.randrange(1, 32)) % 32]
        with pytest.raises(InputError):
            decode_token(with_chars(typed))
    with pytest.raises(InputError):
        decode_token(with_chars(chars[:-1]))  # a character lost


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pb2-aaaaa-aaaaa", "format 2"),
        ("pb-aaaaa", "not a peerbak invite token"),
        ("rk1-aaaaa", "not a peerbak invite token"),
        ("aeaac-aqdaq", "not a peerbak invite token"),
        ("", "not a peerbak invite token"),
        ("pb1-" + "a" * 1100, "too long"),
        ("pb1-abc!d", "unexpected character"),
    ],
)
def test_wrong_prefix_or_shape_is_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_token(text)


def test_token_of_another_kind_is_refused() -> None:
    """A valid text code whose payload is not an invite (wrong check, or not msgpack)."""
    from peerbak.core.textcode import encode_text

    junk = b"\x01" * 60
    with pytest.raises(InputError, match="check"):
        decode_token("pb1-" + encode_text(junk, parity=16))
    body = msgspec.msgpack.encode([1, 2, 3])
    with pytest.raises(InputError, match="malformed"):
        decode_token("pb1-" + encode_text(body + P.invites._token_check(body), parity=16))
    short = msgspec.structs.replace(fixed_invite(), secret=bytes(31))
    body = msgspec.msgpack.encode(short)
    with pytest.raises(InputError, match="secret"):
        decode_token("pb1-" + encode_text(body + P.invites._token_check(body), parity=16))


# ------------------------------------------------------------------------ the join proof


def proof_for(keys: NodeKeys, secret: bytes = bytes(range(32))) -> bytes:
    invite = fixed_invite()
    return join_proof(secret, invite.pool, invite.invite_id, nid(keys), ssh_public_key(keys))


def test_proof_checks_with_the_verifier_alone() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    assert len(verifier) == 32
    assert check_join_proof(
        verifier, POOL, invite.invite_id, nid(B), ssh_public_key(B), proof_for(B)
    )


def test_proof_is_bound_to_the_joiners_keys_and_the_invite() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    proof = proof_for(B)
    cases = [
        (POOL, invite.invite_id, nid(C), ssh_public_key(B)),  # another identity
        (POOL, invite.invite_id, nid(B), ssh_public_key(C)),  # another ssh key
        (POOL, bytes(16), nid(B), ssh_public_key(B)),  # another invite
        (OTHER_POOL, invite.invite_id, nid(B), ssh_public_key(B)),  # another pool
    ]
    for args in cases:
        assert not check_join_proof(verifier, *args, proof)
    assert not check_join_proof(
        invite_verifier(bytes(32)), POOL, invite.invite_id, nid(B), ssh_public_key(B), proof
    )
    assert not check_join_proof(
        verifier, POOL, invite.invite_id, nid(B), ssh_public_key(B), proof_for(B, bytes(32))
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"verifier": bytes(31)},
        {"verifier": b"\xff" * 32},
        {"proof": bytes(63)},
        {"proof": bytes(64)},
        {"pool": bytes(15)},
        {"node": "not bytes"},
    ],
)
def test_check_join_proof_returns_false_on_junk(bad: dict[str, Any]) -> None:
    invite = fixed_invite()
    args: dict[str, Any] = {
        "verifier": invite_verifier(invite.secret),
        "pool": POOL,
        "invite_id": invite.invite_id,
        "node": nid(B),
        "ssh": ssh_public_key(B),
        "proof": proof_for(B),
    }
    args.update(bad)
    assert not check_join_proof(
        args["verifier"], args["pool"], args["invite_id"], args["node"], args["ssh"], args["proof"]
    )


def test_join_claim_flow() -> None:
    roster, _ = founded()
    invite, verifier = new_invite(
        A, POOL, ssh_public_key(A), ["a.example:22"], 0, 3600, random.Random(3).randbytes
    )
    token = encode_token(invite)
    # joiner
    got = decode_token(token)
    assert not is_expired(got, 10)
    claim = join_claim(B, got, "bob", ["b.example:22"])
    wire = encode_join_claim(claim)
    # inviter
    received = decode_join_claim(wire)
    assert received.invite_id == invite.invite_id
    proposal = check_join_claim(received, pool=POOL, inviter=nid(A), verifier=verifier)
    assert (proposal.node, proposal.ssh_key, proposal.name) == (nid(B), ssh_public_key(B), "bob")
    admission = roster.admit(A, proposal)
    assert roster.apply(admission)
    # joiner rebuilds the roster from the reply
    mine = Roster(POOL)
    for blob in roster.blobs():
        mine.apply(blob)
    assert mine.is_member(nid(B))
    assert mine.ssh_keys() == roster.ssh_keys()


def test_sniffed_proof_cannot_admit_another_key() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    honest = join_claim(B, invite, "bob", [])
    thief = JoinClaim(honest.invite_id, honest.proof, propose_join(C, POOL, nid(A), "mallory", []))
    with pytest.raises(IntegrityError):
        check_join_claim(thief, pool=POOL, inviter=nid(A), verifier=verifier)


def test_join_claim_checks() -> None:
    invite = fixed_invite()
    verifier = invite_verifier(invite.secret)
    claim = join_claim(B, invite, "bob", [])
    with pytest.raises(RemoteProtocolError, match="another pool"):
        check_join_claim(claim, pool=OTHER_POOL, inviter=nid(A), verifier=verifier)
    with pytest.raises(RemoteProtocolError, match="another inviter"):
        check_join_claim(claim, pool=POOL, inviter=nid(C), verifier=verifier)
    with pytest.raises(IntegrityError):
        check_join_claim(claim, pool=POOL, inviter=nid(A), verifier=invite_verifier(bytes(32)))
    other = JoinClaim(
        claim.invite_id, claim.proof, raw_sign(rec(B, added_by=A), C, P.PROPOSAL_DOMAIN)
    )
    with pytest.raises(RemoteProtocolError, match="signed by the joiner"):
        check_join_claim(other, pool=POOL, inviter=nid(A), verifier=verifier)
    signed = msgspec.msgpack.decode(claim.proposal, type=SignedRecord)
    bad_sig = msgspec.msgpack.encode(SignedRecord(signed.body, signed.signer, bytes(64)))
    with pytest.raises(IntegrityError):
        check_join_claim(
            JoinClaim(claim.invite_id, claim.proof, bad_sig),
            pool=POOL,
            inviter=nid(A),
            verifier=verifier,
        )
    tomb = raw_sign(rec(B, added_by=A, removed=True), B, P.PROPOSAL_DOMAIN)
    with pytest.raises(RemoteProtocolError):
        check_join_claim(
            JoinClaim(claim.invite_id, claim.proof, tomb),
            pool=POOL,
            inviter=nid(A),
            verifier=verifier,
        )


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x93",
        b"\x00" * (P.MAX_JOIN_CLAIM + 1),
        msgspec.msgpack.encode([bytes(15), bytes(64), b""]),
        msgspec.msgpack.encode([bytes(16), bytes(63), b""]),
        msgspec.msgpack.encode([bytes(16), bytes(64), b"", 1]),
    ],
)
def test_malformed_join_claims(blob: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_join_claim(blob)
