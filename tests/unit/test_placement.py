"""Placement: distinct holders, never the owner, domains spread, deterministic, stable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbak.core.errors import InputError
from peerbak.core.placement import Candidate, default_code, place

nodes = st.lists(st.binary(min_size=32, max_size=32), min_size=0, max_size=24, unique=True)


@settings(max_examples=200, deadline=None)
@given(
    pack=st.binary(min_size=32, max_size=32),
    members=nodes,
    n=st.integers(1, 12),
    domains=st.lists(st.sampled_from(["", "house-a", "house-b", "flat"]), min_size=24, max_size=24),
)
def test_never_co_locates_never_the_owner_and_uses_every_domain_first(
    pack: bytes, members: list[bytes], n: int, domains: list[str]
) -> None:
    owner = members[0] if members else b"o" * 32
    candidates = [Candidate(m, d) for m, d in zip(members, domains, strict=False)]
    chosen = place(pack, n, candidates, owner, shard_size=1)
    assert len(chosen) == len(set(chosen))
    assert owner not in chosen
    others = [c for c in candidates if c.node != owner]
    assert len(chosen) == min(n, len(others))
    # a domain is used twice only when every domain is used once already
    domain_of = {c.node: c.domain or c.node.hex() for c in candidates}
    picked = [domain_of[node] for node in chosen]
    if len(picked) != len(set(picked)):
        assert set(picked) == {domain_of[c.node] for c in others}
    assert place(pack, n, list(reversed(candidates)), owner, 1) == chosen  # order-free


def test_unhealthy_or_full_members_are_skipped() -> None:
    a, b, c, d = (bytes([i]) * 32 for i in range(4))
    candidates = [
        Candidate(a),
        Candidate(b, healthy=False),
        Candidate(c, free=10),
        Candidate(d, free=1000),
    ]
    assert sorted(place(b"p" * 32, 4, candidates, b"o" * 32, shard_size=100)) == sorted([a, d])


@settings(max_examples=100, deadline=None)
@given(pack=st.binary(min_size=32, max_size=32), members=nodes.filter(lambda m: len(m) >= 8))
def test_a_newcomer_moves_at_most_one_shard(pack: bytes, members: list[bytes]) -> None:
    """Rendezvous hashing: adding a member displaces at most the one it outranks."""
    newcomer = b"\xff" * 32
    if newcomer in members:
        return
    before = place(pack, 5, [Candidate(m) for m in members], b"o" * 32, 1)
    after = place(pack, 5, [Candidate(m) for m in [*members, newcomer]], b"o" * 32, 1)
    assert len(set(before) - set(after)) <= 1


def test_default_codes() -> None:
    assert default_code(5) == (2, 4)
    assert default_code(30) == (6, 10)
    for friends in range(2, 12):
        k, n = default_code(friends)
        assert 1 <= k < n <= friends
        assert n - k >= 2 or friends == 2  # survives two losses
        if 4 <= friends <= 10:
            assert n < friends  # a friend is free to take a rebuilt shard
    with pytest.raises(InputError):
        default_code(1)
