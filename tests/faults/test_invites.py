"""Invite tokens abused every way we know: each gets a clear error, the roster is unchanged."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from peerbak.adapters.ledger import Ledger
from peerbak.cli.kit import EXIT_CODES
from peerbak.core import pool
from tests.integration.nodes import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Daemon]]:
    """An inviter with one member, a stranger in a pool of its own, three fresh nodes."""
    base = tmp_path_factory.mktemp("invites")
    names = ["inviter", "member", "stranger", "fresh1", "fresh2", "fresh3"]
    found = {name: Daemon(base, name) for name in names}
    try:
        for node in found.values():
            node.init()
            node.start()
        found["member"].cli("join", found["inviter"].cli("invite")["token"])
        found["stranger"].cli("invite")  # founds a pool of its own
        yield found
    finally:
        for node in found.values():
            node.kill()


def _members(node: Daemon) -> list[str]:
    return sorted(m["node"] for m in node.status()["members"])


def _join(node: Daemon, token: str) -> subprocess.CompletedProcess[str]:
    out: subprocess.CompletedProcess[str] = node.cli("join", token, check=False)
    return out


def _token(node: Daemon) -> str:
    return str(node.cli("invite")["token"])


def _forge(token: str, **changes: object) -> str:
    invite = pool.decode_token(token)
    return pool.encode_token(msgspec.structs.replace(invite, **changes))


def _refused(out: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert out.returncode == code, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_expired_token_is_refused_by_the_joiner(nodes: dict[str, Daemon]) -> None:
    before = _members(nodes["inviter"])
    stale = _forge(_token(nodes["inviter"]), expires=int(time.time()) - 60)
    _refused(_join(nodes["fresh1"], stale), EXIT_CODES["InputError"], "expired")
    assert _members(nodes["inviter"]) == before


def test_expired_invite_is_refused_by_the_inviter(nodes: dict[str, Daemon]) -> None:
    """The joiner's clock may be wrong: the inviter checks expiry against its own ledger."""
    inviter = nodes["inviter"]
    before = _members(inviter)
    invite, verifier = pool.new_invite(
        inviter.keys,
        bytes.fromhex(inviter.status()["pool"]),
        pool.ssh_public_key(inviter.keys),
        inviter.status()["addresses"],
        time.time(),
        3600,
        __import__("os").urandom,
    )

    async def record_expired() -> None:
        ledger = await Ledger.open(inviter.home / "ledger.sqlite")
        try:
            await ledger.add_invite(
                invite.invite_id, verifier, time.time() - 7200, time.time() - 3600, 1
            )
        finally:
            await ledger.close()

    asyncio.run(record_expired())
    _refused(_join(nodes["fresh1"], pool.encode_token(invite)), 64, "expired")
    assert _members(inviter) == before


def test_used_token_is_refused(nodes: dict[str, Daemon]) -> None:
    inviter = nodes["inviter"]
    token = _token(inviter)
    nodes["fresh3"].cli("join", token)
    after_first = _members(inviter)
    _refused(_join(nodes["fresh1"], token), 64, "already used")
    assert _members(inviter) == after_first


def test_wrong_secret_is_refused_and_does_not_burn_the_invite(nodes: dict[str, Daemon]) -> None:
    inviter = nodes["inviter"]
    before = _members(inviter)
    token = _token(inviter)
    _refused(_join(nodes["fresh1"], _forge(token, secret=bytes(32))), 64, "join proof")
    assert _members(inviter) == before
    nodes["fresh1"].cli("join", token)  # the real holder of the token still gets in
    assert len(_members(inviter)) == len(before) + 1


def test_garbled_token_is_refused_before_any_connection(nodes: dict[str, Daemon]) -> None:
    token = _token(nodes["inviter"])
    body = list(token)
    for i in range(8, len(body), 9):
        if body[i] not in "-":
            body[i] = "a" if body[i] != "a" else "b"
    _refused(_join(nodes["fresh2"], "".join(body)), 64, "typos")


def test_a_few_typos_are_corrected(nodes: dict[str, Daemon]) -> None:
    """The good path of the same code: two mistyped characters still decode."""
    token = _token(nodes["stranger"])
    chars = list(token)
    for i in (10, 30):
        chars[i] = "b" if chars[i] == "a" else "a"
    assert pool.decode_token("".join(chars)) == pool.decode_token(token)


def test_token_of_another_pool_is_refused(nodes: dict[str, Daemon]) -> None:
    inviter, stranger = nodes["inviter"], nodes["stranger"]
    before = _members(inviter)
    foreign_pool = bytes.fromhex(stranger.status()["pool"])
    _refused(_join(nodes["fresh2"], _forge(_token(inviter), pool=foreign_pool)), 64, "another pool")
    assert _members(inviter) == before


def test_a_server_with_another_host_key_is_refused(nodes: dict[str, Daemon]) -> None:
    """Man in the middle: the token pins the inviter's host key; another machine has another."""
    inviter, stranger = nodes["inviter"], nodes["stranger"]
    before = _members(inviter)
    # The token pins the inviter's key; the address now leads to another machine.
    token = _forge(_token(inviter), addresses=tuple(stranger.status()["addresses"]))
    _refused(_join(nodes["fresh2"], token), EXIT_CODES["PeerUnavailable"], "another host key")
    assert _members(inviter) == before
    assert _members(stranger) == [stranger.info["node"]]


def test_two_joiners_racing_for_one_token_exactly_one_wins(tmp_path: Path) -> None:
    inviter, a, b = (Daemon(tmp_path, n) for n in ("inviter", "a", "b"))
    try:
        for node in (inviter, a, b):
            node.init()
            node.start()
        token = _token(inviter)
        racers = [
            subprocess.Popen(
                [sys.executable, "-m", "peerbak", "--home", str(n.home), "join", token, "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in (a, b)
        ]
        results = []
        for racer in racers:
            _, err = racer.communicate(timeout=120)
            results.append((racer.returncode, err))
        codes = sorted(code for code, _ in results)
        assert codes == [0, 64], results
        # The loser is refused either by the invite check or, once the only open invite
        # is gone, at SSH login: both say the invite is used up.
        assert any("already used" in err for _, err in results)
        assert len(_members(inviter)) == 2
    finally:
        for node in (inviter, a, b):
            node.kill()
