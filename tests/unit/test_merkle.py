import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbak.core.errors import InputError
from peerbak.core.merkle import LEAF_SIZE, MerkleTree, leaf_hash, node_hash, root_of, verify_proof


def _rfc_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH, written recursively as the RFC states it, as an independent reference."""
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(_rfc_root(leaves[:split]), _rfc_root(leaves[split:]))


@pytest.mark.parametrize("length", [1, LEAF_SIZE - 1, LEAF_SIZE, LEAF_SIZE + 1, 7 * LEAF_SIZE + 5])
def test_root_matches_the_rfc_definition(length: int) -> None:
    data = random.Random(length).randbytes(length)
    leaves = [data[i : i + LEAF_SIZE] for i in range(0, length, LEAF_SIZE)]
    assert root_of(data) == _rfc_root(leaves)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 70), seed=st.integers(0, 2**32))
def test_every_leaf_proves_and_no_other_leaf_does(count: int, seed: int) -> None:
    rnd = random.Random(seed)
    leaves = [rnd.randbytes(rnd.randint(1, 64)) for _ in range(count)]
    tree = MerkleTree([leaf_hash(x) for x in leaves])
    assert tree.root == _rfc_root(leaves)
    for i, leaf in enumerate(leaves):
        path = tree.proof(i)
        assert verify_proof(tree.root, i, count, leaf, path)
        assert not verify_proof(tree.root, i, count, leaf + b"x", path)
        if count > 1:
            other = (i + 1) % count
            assert not verify_proof(tree.root, other, count, leaf, path)


def test_malformed_proofs_are_false_not_errors() -> None:
    tree = MerkleTree([leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")])
    path = tree.proof(2)
    assert not verify_proof(tree.root, 2, 3, b"c", [*path, path[0]])
    assert not verify_proof(tree.root, 2, 3, b"c", [b"short"])
    assert not verify_proof(tree.root, 5, 3, b"c", path)
    assert not verify_proof(tree.root, -1, 3, b"c", path)
    assert not verify_proof(tree.root, 0, 3, b"x" * (LEAF_SIZE + 1), path)


def test_empty_tree_and_bad_index_are_input_errors() -> None:
    with pytest.raises(InputError):
        root_of(b"")
    with pytest.raises(InputError):
        MerkleTree([leaf_hash(b"a")]).proof(1)
