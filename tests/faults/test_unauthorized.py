"""Hostile callers against a real daemon: each is refused, nothing partial appears under a
final name, and the daemon keeps serving its members."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from peerbak.adapters import transport
from peerbak.adapters.link import PeerLink, handshake
from peerbak.adapters.sshlib import asyncssh
from peerbak.core import wire
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import IntegrityError, NotFoundError, PeerUnavailable, StorageError
from peerbak.core.ids import NodeId, PackId, ShardKey
from peerbak.core.pack import Shard
from peerbak.core.pool import ssh_public_key
from tests.conftest import build_pack
from tests.integration.nodes import Daemon

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon, Daemon]]:
    """holder and owner in one pool; a third node that was never invited."""
    base = tmp_path_factory.mktemp("hostile")
    holder, owner, outsider = (Daemon(base, n) for n in ("holder", "owner", "outsider"))
    try:
        for node in (holder, owner, outsider):
            node.init()
            node.start()
        owner.cli("join", holder.cli("invite")["token"])
        yield holder, owner, outsider
    finally:
        for node in (holder, owner, outsider):
            node.kill()


def _address(node: Daemon) -> str:
    return str(node.status()["addresses"][0])


def _link(holder: Daemon, caller: Daemon) -> PeerLink:
    return PeerLink(
        NodeId(bytes(holder.keys.node_id)),
        [_address(holder)],
        ssh_public_key(holder.keys),
        caller.ssh_key,
        timeout=20,
    )


async def _connect(holder: Daemon, caller: Daemon) -> asyncssh.SSHClientConnection:
    return await transport.connect(
        _address(holder), ssh_public_key(holder.keys), caller.ssh_key, 20
    )


async def _still_serving(holder: Daemon, owner: Daemon) -> None:
    link = _link(holder, owner)
    try:
        record, shards = build_pack(owner.keys, random.Random())
        key = ShardKey(record.pack_id, 2)
        await link.put(key, shards[2])
        assert (await link.get(key)).to_bytes() == shards[2].to_bytes()
    finally:
        await link.close()


def _final_names(holder: Daemon, owner_keys: NodeKeys) -> list[str]:
    shards = holder.home / "held" / owner_keys.node_id.hex() / "shards"
    return (
        sorted(p.name for sub in shards.iterdir() for p in sub.iterdir()) if shards.exists() else []
    )


async def test_a_key_outside_the_roster_cannot_log_in(pair: tuple[Daemon, Daemon, Daemon]) -> None:
    holder, owner, outsider = pair
    with pytest.raises(PeerUnavailable, match="refused our key"):
        await _connect(holder, outsider)
    await _still_serving(holder, owner)


@pytest.mark.parametrize("attempt", ["shell", "exec", "sftp", "direct-tcpip", "remote-forward"])
async def test_a_member_gets_nothing_but_the_subsystem(
    pair: tuple[Daemon, Daemon, Daemon], attempt: str
) -> None:
    holder, owner, _ = pair
    conn = await _connect(holder, owner)
    refused = (asyncssh.Error, asyncssh.ChannelOpenError, asyncssh.ChannelListenError, OSError)
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "shell": lambda: conn.run(term_type="xterm", check=True),
        "exec": lambda: conn.run("id", check=True),
        "sftp": conn.start_sftp_client,
        "direct-tcpip": lambda: conn.open_connection("127.0.0.1", 22),
        "remote-forward": lambda: conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22),
    }
    try:
        with pytest.raises(refused):
            await asyncio.wait_for(attempts[attempt](), 10)
    finally:
        conn.close()
    await _still_serving(holder, owner)


async def test_shards_land_in_the_callers_own_namespace(
    pair: tuple[Daemon, Daemon, Daemon],
) -> None:
    """No message names an owner: the authenticated key decides, so nobody writes for another."""
    holder, owner, _ = pair
    record, shards = build_pack(owner.keys, random.Random(9))
    key = ShardKey(record.pack_id, 0)
    link = _link(holder, owner)
    try:
        await link.put(key, shards[0])
    finally:
        await link.close()
    owners = {d.name for d in (holder.home / "held").iterdir()}
    assert owners == {owner.keys.node_id.hex()}
    assert key.text in _final_names(holder, owner.keys)


async def test_a_shard_not_matching_its_root_is_refused_and_leaves_nothing(
    pair: tuple[Daemon, Daemon, Daemon],
) -> None:
    holder, owner, _ = pair
    record, shards = build_pack(owner.keys, random.Random(10))
    damaged = bytearray(shards[1].data)
    damaged[777] ^= 0x40
    link = _link(holder, owner)
    try:
        with pytest.raises(IntegrityError):
            await link.put(ShardKey(record.pack_id, 1), Shard(shards[1].header, bytes(damaged)))
    finally:
        await link.close()
    assert ShardKey(record.pack_id, 1).text not in _final_names(holder, owner.keys)
    incoming = holder.home / "held" / owner.keys.node_id.hex() / "incoming"
    assert list(incoming.iterdir()) == []
    await _still_serving(holder, owner)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _stat(pack: object) -> bytes:
    return _frame(msgspec.msgpack.encode(["Stat", pack, 0]))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        pytest.param(struct.pack(">I", 1 << 30), "protocol", id="oversized-length"),
        pytest.param(struct.pack(">I", 0), "protocol", id="zero-length"),
        pytest.param(_frame(b"\xc1\xff\x00garbage"), "protocol", id="garbage"),
        pytest.param(_stat(b"../x"), "protocol", id="path-like-id"),
        pytest.param(_stat("../../etc/passwd"), "protocol", id="text-path"),
        pytest.param(_stat(b"\x00" * 31), "protocol", id="short-id"),
        pytest.param(_stat(b"a" * 64), "protocol", id="over-long-id"),
        pytest.param(struct.pack(">I", 100) + b"\x92", "protocol", id="truncated"),
        # 32 bytes that spell a path are only ever an id: its hex names a file that is not there
        pytest.param(_stat(b"/etc/passwd" + bytes(21)), "not-found", id="absolute-as-id"),
        pytest.param(_stat(b"\x00" * 32), "not-found", id="nul-id"),
    ],
)
async def test_malformed_frames_end_the_session_not_the_daemon(
    pair: tuple[Daemon, Daemon, Daemon], raw: bytes, code: str
) -> None:
    holder, owner, _ = pair
    conn = await _connect(holder, owner)
    try:
        chan = await transport.open_channel(conn)
        await handshake(chan, bytes(holder.keys.node_id))
        await chan.send_raw(raw)
        await chan.send_eof()
        answer = await asyncio.wait_for(chan.recv(), 20)
        assert isinstance(answer, wire.Error)
        assert answer.code == code
    finally:
        conn.close()
    await _still_serving(holder, owner)


async def test_requests_for_missing_shards_are_not_found(
    pair: tuple[Daemon, Daemon, Daemon],
) -> None:
    holder, owner, _ = pair
    link = _link(holder, owner)
    try:
        with pytest.raises(NotFoundError):
            await link.stat(ShardKey(PackId(bytes(32)), 0))
    finally:
        await link.close()


def _set_storage(node: Daemon, lend: str, reserve: str) -> None:
    config = node.home / "config.toml"
    text = config.read_text().replace('lend = "50GiB"', f'lend = "{lend}"')
    config.write_text(text.replace('reserve_free = "5GiB"', f'reserve_free = "{reserve}"'))


@pytest.mark.parametrize(
    ("lend", "reserve", "match"),
    [("64KiB", "0", "lent"), ("1TiB", "1000TiB", "free")],
)
async def test_puts_beyond_quota_or_the_free_floor_are_refused_before_writing(
    tmp_path: Path, lend: str, reserve: str, match: str
) -> None:
    holder, owner = Daemon(tmp_path, "holder"), Daemon(tmp_path, "owner")
    try:
        holder.init()
        owner.init()
        _set_storage(holder, lend, reserve)
        holder.start()
        owner.start()
        owner.cli("join", holder.cli("invite")["token"])
        record, shards = build_pack(owner.keys, random.Random(11), size=300_000)
        link = _link(holder, owner)
        try:
            with pytest.raises(StorageError, match=match):
                await link.put(ShardKey(record.pack_id, 0), shards[0])
        finally:
            await link.close()
        assert _final_names(holder, owner.keys) == []
        incoming = holder.home / "held" / owner.keys.node_id.hex() / "incoming"
        assert not incoming.exists() or list(incoming.iterdir()) == []
    finally:
        holder.kill()
        owner.kill()


async def test_deleting_does_not_give_quota_back_before_the_trash_is_purged(
    tmp_path: Path,
) -> None:
    """Put, delete, put again: the trashed shard still counts, so a loop cannot fill a disk."""
    holder, owner = Daemon(tmp_path, "holder"), Daemon(tmp_path, "owner")
    try:
        holder.init()
        owner.init()
        _set_storage(holder, "150KiB", "0")  # room for one ~100 KB shard, not two
        holder.start()
        owner.start()
        owner.cli("join", holder.cli("invite")["token"])
        first, first_shards = build_pack(owner.keys, random.Random(12), size=300_000)
        second, second_shards = build_pack(owner.keys, random.Random(13), size=300_000)
        link = _link(holder, owner)
        try:
            await link.put(ShardKey(first.pack_id, 0), first_shards[0])
            await link.delete(ShardKey(first.pack_id, 0))
            with pytest.raises(StorageError, match="lent"):
                await link.put(ShardKey(second.pack_id, 0), second_shards[0])
            space = await link.space()
            assert space.used == first_shards[0].header.size
        finally:
            await link.close()
    finally:
        holder.kill()
        owner.kill()
