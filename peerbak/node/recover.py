"""``peerbak recover``: a node rebuilt on a new machine from its recovery key and the
address of one member (protocol/snapshots.md §6); ``--in-place``, a damaged ledger
rebuilt the same way in the node's own home.

The key gives back the secret, hence every key: the node id, the SSH key members let
in, the data key. The member at the address is asked for the roster and for our
manifest. Nothing it says is taken on trust: the manifest must carry our own
signature and decrypt with our key; it names the pool and its founder, so the roster
must be that pool's, replayed from that founder, with us in it; and the member's host
key, read before logging in, must be its key in that roster. Then the ledger is
rebuilt (:mod:`peerbak.services.recovery`) from the newest manifest any member keeps
and the index objects it lists.

This is the composition root of a recovery: it dials before there is a roster to
build links from, and it makes the home and the ledger the repository then uses.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from peerbak.adapters import transport
from peerbak.adapters.home import Home, Passphrase
from peerbak.adapters.ledger import Ledger
from peerbak.adapters.link import expect, handshake_any
from peerbak.core import objects, pool, wire
from peerbak.core.config import default_config_text
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import (
    ConfigError,
    IntegrityError,
    LedgerDamaged,
    NotFoundError,
    RemoteProtocolError,
)
from peerbak.core.objects import Manifest
from peerbak.core.textcode import decode_recovery_key, recovery_key_text
from peerbak.node.compose import open_repository
from peerbak.services.recovery import rebuild_from_pool


async def _ask(
    address: str, host_key: bytes, keys: NodeKeys, timeout: float
) -> tuple[bytes, list[bytes], bytes]:
    """(member id, roster records, our manifest) from the member at ``address``."""
    conn = await transport.connect(address, host_key, transport.private_key(keys.ssh_seed), timeout)
    try:
        async with asyncio.timeout(timeout):
            chan = await transport.open_channel(conn)
            welcome = await handshake_any(chan)
            await chan.send(wire.GetRoster())
            records = list((await expect(chan, wire.RosterIs)).records)
            await chan.send(wire.GetManifest())
            manifest = (await expect(chan, wire.ManifestIs)).manifest
    finally:
        conn.close()
    if not manifest:
        raise NotFoundError(
            f"the member at {address} keeps no manifest of this node: it has no backups "
            "there, or this is not the pool"
        )
    return welcome.node, records, manifest


async def _trusted(
    keys: NodeKeys, address: str, timeout: float
) -> tuple[bytes, pool.Roster, Manifest]:
    """(the member's id, the pool's roster, our manifest) from the member at ``address``,
    each checked: our signature on the manifest, the roster replayed from the founder
    the manifest names with us in it, and the member's host key its roster key."""
    host_key = await transport.server_host_key(address, timeout)
    member, records, blob = await _ask(address, host_key, keys, timeout)
    first = objects.open_manifest(keys, blob)  # ours: signed by us, readable by us
    roster = pool.Roster(first.body.pool, founder=first.body.founder)
    for record in records:
        roster.apply(record)
    if not roster.is_member(bytes(keys.node_id)):
        raise IntegrityError(
            "the pool's roster does not list this node (it was removed, or the member "
            "answered with another pool)",
            obj="roster",
            check="member",
        )
    theirs = roster.record(member)
    if theirs is None or theirs.ssh_key != host_key:
        raise RemoteProtocolError(
            f"the member at {address} is not the pool member it claims to be "
            "(its host key is not the roster's): refusing to recover through it"
        )
    return member, roster, first


async def recover(
    root: Path,
    key_text: str,
    address: str,
    *,
    name: str = "",
    port: int = 7420,
    listen: str = "0.0.0.0",  # noqa: S104
    lan: bool = True,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """A node rebuilt in ``root`` from its recovery key (or the kit holding it); its
    name, unless given, is the one the pool's roster keeps for it."""
    secret = decode_recovery_key(recovery_key_text(key_text)).secret
    keys = NodeKeys.derive(secret)
    if (root / "node.secret").exists():
        raise ConfigError(f"a node already exists at {root}: recover into a new home")
    member, roster, first = await _trusted(keys, address, timeout)
    mine = roster.record(bytes(keys.node_id))
    name = name or (mine.name if mine is not None else "")
    text = default_config_text(name, port, listen=listen, lan=lan)
    # Built beside its final place and renamed into it once whole: a recovery that
    # fails half way leaves no half-made node (and can simply be run again).
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} exists and is not empty: recover into a new home")
    root.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{root.name}.recovering-", dir=root.parent))
    try:
        home = Home.create(building, secret, text)
        manifest, packs = await _fill(home, roster, first)
        if root.exists():
            root.rmdir()  # empty, checked above
        building.rename(root)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return _summary(root, keys, roster, member, manifest, packs)


def _summary(
    root: Path, keys: NodeKeys, roster: pool.Roster, member: bytes, manifest: Manifest, packs: int
) -> dict[str, Any]:
    return {
        "home": str(root),
        "node": keys.node_id.hex(),
        "pool": roster.pool.hex(),
        "members": len(roster.members()),
        "through": member.hex(),
        "manifest_sequence": manifest.sequence,
        "snapshots": len(manifest.body.snapshots),
        "packs": packs,
    }


async def recover_in_place(
    root: Path, address: str, *, timeout: float = 30.0, passphrase: Passphrase | None = None
) -> dict[str, Any]:
    """Rebuild the ledger of the node at ``root``, which cannot be read (or is gone), from
    the pool, with the node's own secret, as :func:`recover` does on a new machine.

    The damaged file is moved aside (``ledger.sqlite.damaged-TIME``, its ``-wal`` and
    ``-shm`` with it), never written to or deleted; a rebuild that fails puts it back.
    A ledger that opens and passes SQLite's ``quick_check`` is left alone. ``passphrase``
    opens a sealed node secret."""
    home = Home.open(root, passphrase)
    keys = NodeKeys.derive(home.secret())
    path = home.ledger_path
    lock = home.lock_daemon()  # no daemon may run on the ledger meanwhile
    try:
        why = "there was none"
        if path.exists():
            try:
                healthy = await Ledger.open(path, verify=True)
            except LedgerDamaged as exc:
                why = exc.why
            else:
                await healthy.close()
                raise ConfigError(
                    f"the ledger at {path} opens and checks out: nothing to recover in place"
                )
        member, roster, first = await _trusted(keys, address, timeout)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        moved = [
            (p, p.with_name(p.name.replace("ledger.sqlite", f"ledger.sqlite.damaged-{stamp}")))
            for p in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm")))
            if p.exists()
        ]
        for old, aside in moved:
            old.rename(aside)
        try:
            manifest, packs = await _fill(home, roster, first)
        except BaseException:
            for end in ("", "-wal", "-shm"):
                path.with_name(path.name + end).unlink(missing_ok=True)
            for old, aside in moved:
                aside.rename(old)
            raise
    finally:
        os.close(lock)
    return {
        **_summary(root, keys, roster, member, manifest, packs),
        "damaged": why,
        "kept_aside": [str(aside) for _, aside in moved],
    }


async def _fill(home: Home, roster: pool.Roster, first: Manifest) -> tuple[Manifest, int]:
    """A new ledger in ``home``: the roster, then everything the newest manifest lists."""
    ledger = await Ledger.open(home.ledger_path, create=True)
    try:
        await ledger.add_records(roster.blobs(), time.time())
        await ledger.set_meta("pool", roster.pool)
    finally:
        await ledger.close()
    async with await open_repository(home) as repo:
        return await rebuild_from_pool(repo, first)
