"""The roster's rules (protocol/pool.md §2–4): founding, admission, updates, replay,
removal, hostile gossip, and convergence whatever the order."""

from __future__ import annotations

import random

import msgspec
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbak.core import pool as P
from peerbak.core.errors import (
    InputError,
    IntegrityError,
    NotFoundError,
)
from peerbak.core.pool import (
    Roster,
    RosterRecord,
    found_pool,
    open_proposal,
    open_record,
    propose_join,
    sign_record,
    ssh_public_key,
)
from tests.unit.poolkit import (
    KEYS,
    OTHER_POOL,
    POOL,
    STRANGER,
    A,
    B,
    C,
    D,
    E,
    fast,
    founded,
    names,
    nid,
    raw_sign,
    rec,
)

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
