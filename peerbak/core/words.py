"""Counted nouns for the messages people read: ``1 snapshot``, ``2 snapshots``."""

from __future__ import annotations


def plural(count: int, noun: str, many: str = "") -> str:
    """``count`` and ``noun``, in the plural (``many``, or ``noun`` + s) unless one."""
    return f"{count} {noun}" if count == 1 else f"{count} {many or noun + 's'}"


def verb(count: int, one: str, many: str) -> str:
    """The verb that agrees with ``count``: ``verb(1, "is", "are")``."""
    return one if count == 1 else many
