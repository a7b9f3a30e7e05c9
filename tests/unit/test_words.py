"""Counted nouns in messages: one of a thing, or many."""

from __future__ import annotations

import pytest

from peerbak.core.words import plural, verb


@pytest.mark.parametrize(
    ("count", "noun", "many", "text"),
    [
        (0, "snapshot", "", "0 snapshots"),
        (1, "snapshot", "", "1 snapshot"),
        (2, "file", "", "2 files"),
        (1, "old copy", "old copies", "1 old copy"),
        (3, "old copy", "old copies", "3 old copies"),
    ],
)
def test_plural_agrees_with_the_count(count: int, noun: str, many: str, text: str) -> None:
    assert plural(count, noun, many) == text


def test_verb_agrees_with_the_count() -> None:
    assert [verb(n, "is", "are") for n in (0, 1, 2)] == ["are", "is", "are"]
