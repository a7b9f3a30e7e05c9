"""The compact set of stored chunk ids: built from the ledger's sorted pages, grown by
the ids a backup adds, and exact for ids whose 16-byte prefix ends in zero bytes."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from peerbak.core.ids import ChunkId
from peerbak.services.packer import KnownChunks

ids32 = st.binary(min_size=32, max_size=32)


@given(st.lists(ids32, max_size=300, unique=True), st.lists(ids32, max_size=50), ids32)
def test_membership_is_exact(stored: list[bytes], added: list[bytes], other: bytes) -> None:
    stored = sorted(stored)
    pages = [KnownChunks.prefixes(stored[i : i + 64]) for i in range(0, len(stored), 64)]
    known = KnownChunks.from_sorted(pages)
    for ident in added:
        known.add(ChunkId(ident))
    for ident in stored + added:
        assert ident in known
    expected = other[:16] in {i[:16] for i in stored + added}
    assert (other in known) == expected


def test_prefixes_with_zero_bytes_and_merges_of_recent_ids() -> None:
    tricky = [bytes(32), b"\x01" + bytes(31), bytes(15) + b"\x01" + bytes(16)]
    known = KnownChunks.from_sorted([KnownChunks.prefixes(sorted(tricky))])
    assert all(t in known for t in tricky)
    assert bytes(14) + b"\x01" + bytes(17) not in known
    many = [os.urandom(32) for _ in range(KnownChunks.MERGE_AT + 10)]
    for ident in many:  # crosses a merge of the recent set into the array
        known.add(ChunkId(ident))
    assert all(i in known for i in many[:: len(many) // 50])
    assert len(known) == len(tricky) + len(many)
