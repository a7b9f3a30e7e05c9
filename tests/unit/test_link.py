"""A request's deadline: the base timeout plus the bytes announced, at the floor rate."""

from __future__ import annotations

import asyncio

from peerbak.adapters.link import MIN_RATE, Call


async def test_allow_extends_the_deadline_by_the_bytes_at_the_floor_rate() -> None:
    async with asyncio.timeout(5) as deadline:
        before = deadline.when()
        assert before is not None
        Call(chan=None, deadline=deadline).allow(3 * MIN_RATE)  # type: ignore[arg-type]
        assert deadline.when() == before + 3


async def test_an_unbounded_request_stays_unbounded() -> None:
    async with asyncio.timeout(None) as deadline:
        Call(chan=None, deadline=deadline).allow(MIN_RATE)  # type: ignore[arg-type]
        assert deadline.when() is None
