"""--read-data-subset: n/m slices partition the pack ids; bad values are input errors."""

from __future__ import annotations

import os
import random

import pytest

from peerbak.core.errors import InputError
from peerbak.services.check import parse_subset


def test_slices_partition_every_pack_id() -> None:
    ids = [os.urandom(32) for _ in range(2000)] + [bytes(32), b"\xff" * 32]
    slices = [parse_subset(f"{n}/7") for n in range(1, 8)]
    for pack in ids:
        assert sum(chosen(pack) for chosen in slices) == 1


def test_a_percentage_takes_about_that_share() -> None:
    chosen = parse_subset("25%", random.Random(5))
    taken = sum(chosen(os.urandom(32)) for _ in range(4000))
    assert 800 < taken < 1200
    assert all(parse_subset("100%")(os.urandom(32)) for _ in range(100))


@pytest.mark.parametrize("text", ["0/5", "6/5", "5", "a/b", "0%", "101%", "x%", "1/0"])
def test_bad_subsets_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_subset(text)
