"""The owner's side of the pool, for one command: its ledger, its members, where packs
go, how they come back, and the manifest.

It is handed its collaborators: the ledger, a :class:`~peerbak.ports.member.Member`
for each member (SSH links in a real run, built by :mod:`peerbak.node.compose`; the
in-process members of :mod:`peerbak.tools.mempool` in the services' tests), the
node's workspace, the clock and the randomness. Every member is asked once, in
parallel, how much room it has; one that does not answer, or fails during the run, is
left out for the rest of the run: a dead member costs one timeout per command, not
one per pack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from peerbak.core import objects, pool
from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import BlobType, NodeKeys, RandomBytes
from peerbak.core.errors import (
    ConfigError,
    IntegrityError,
    NotFoundError,
    PeerbakError,
    PeerUnavailable,
)
from peerbak.core.ids import ShardKey
from peerbak.core.objects import IndexPack, Manifest, ManifestBody, Snapshot, Tree
from peerbak.core.pack import PackRecord, Shard
from peerbak.core.placement import Candidate, default_code, place
from peerbak.core.selection import EVERY, Selection
from peerbak.core.words import plural, verb
from peerbak.ports import ShardInfo
from peerbak.ports import ledger as ports_ledger
from peerbak.ports.ledger import UNPUBLISHED_DOOM
from peerbak.ports.member import Member
from peerbak.ports.workspace import Workspace
from peerbak.services.fetch import FetchReport, fetch_pack, read_blobs

log = logging.getLogger(__name__)

#: Ledger meta key: who took the last manifest, and why the others did not (JSON).
PUBLISH_REACH: Final = "publish_reach"
DATA: Final = 1
META: Final = 2
CRASH_ENV: Final = "PEERBAK_CRASH_AT"
#: The named points where the fault tests kill a backup (protocol/snapshots.md §7).
CRASH_POINTS: Final = ("pack-sealed", "mid-upload", "uploaded-not-recorded", "before-manifest")
#: Where the fault tests kill forget, prune, undelete and repair.
CARE_CRASH_POINTS: Final = (
    "forget-published",
    "prune-repacked",
    "prune-doomed",
    "prune-published",
    "undelete-moved",
    "repair-uploaded",
)


def crash_point(name: str) -> None:
    """Die here, as by a power cut, when the fault tests ask for it (never otherwise)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Peer:
    """A member as this run sees it."""

    node: bytes
    name: str
    link: Member
    up: bool = True  # until it fails (or a probe says otherwise)
    error: str = ""
    free: int = 0  # bytes it will still take from us
    rate: float = 0.0  # bytes/s of its last transfers (EWMA)
    served: int = 0  # shards of it that went into rebuilt packs
    bad: int = 0  # shards it sent that failed their Merkle root
    failing: bool = False  # failed a storage challenge: gets no new shards

    @property
    def label(self) -> str:
        """How people know it: its name in the roster, else its short id."""
        return self.name or self.link.node.short


class _Guarded:
    """A member's ShareStore that fails at once after the member failed in this run."""

    def __init__(
        self, member: Peer, clock: Callable[[], float], limit: RateLimit | None = None
    ) -> None:
        self._m = member
        self._clock = clock
        self._limit = limit

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard:
        m = self._m
        if not m.up:
            raise PeerUnavailable(f"member {m.label} is down ({m.error})")
        t0 = self._clock()
        try:
            shard = await m.link.get(key, verify=verify)
        except PeerUnavailable as exc:
            m.up, m.error = False, str(exc)
            raise
        seconds = max(self._clock() - t0, 1e-6)
        if self._limit is not None:
            await self._limit.take(shard.header.size)
        rate = shard.header.size / seconds
        m.rate = rate if not m.rate else 0.7 * m.rate + 0.3 * rate
        return shard

    async def put(self, key: ShardKey, shard: Shard) -> None:
        await self._m.link.put(key, shard)

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        return await self._m.link.get_range(key, offset, length)

    async def stat(self, key: ShardKey) -> ShardInfo:
        return await self._m.link.stat(key)

    async def delete(self, key: ShardKey) -> None:
        await self._m.link.delete(key)

    def list(self) -> AsyncIterator[ShardKey]:
        return self._m.link.list()


class RateLimit:
    """A token bucket over bytes: at most ``per_hour`` on average, bursts of ``burst``
    bytes (a tenth of an hour's worth unless said). Repair's budget, and restic's
    ``--limit-upload``/``--limit-download``. ``sleep`` and ``clock`` are parameters for
    the tests."""

    def __init__(
        self,
        per_hour: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        burst: float | None = None,
    ) -> None:
        self.rate = per_hour / 3600
        self.capacity = per_hour / 10 if burst is None else burst
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.last = clock()

    async def take(self, nbytes: int) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= nbytes
        if self.tokens < 0:
            await self.sleep(-self.tokens / self.rate)


class Repository:
    """This node's backups in its pool; ``async with`` closes the links and the ledger.

    Built by :func:`peerbak.node.compose.open_repository` (the real thing) or
    :class:`peerbak.tools.mempool.MemoryPool` (in-process members, for tests)."""

    def __init__(
        self,
        keys: NodeKeys,
        ledger: ports_ledger.Ledger,
        roster: pool.Roster,
        links: Mapping[bytes, Member],
        *,
        home: Workspace,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
        hostname: str = "",
        upload: RateLimit | None = None,
        download: RateLimit | None = None,
    ) -> None:
        """``links``: a Member for each member of ``roster`` but this node; ``upload``
        and ``download`` bound the bytes of shards sent and received."""
        self.upload = upload
        self.download = download
        self.home = home
        self.keys = keys
        self.ledger = ledger
        self.roster = roster
        self.clock = clock
        self.random_bytes = random_bytes
        self.hostname = hostname
        #: The members the last :meth:`publish` missed, by name.
        self.missed: list[str] = []
        self.node_id = keys.node_id
        self.members: dict[bytes, Peer] = {}
        for record in roster.members():
            if record.node == bytes(keys.node_id):
                continue
            self.members[record.node] = Peer(record.node, record.name, links[record.node])
        self._meta_cache: dict[bytes, dict[bytes, bytes]] = {}

    async def close(self) -> None:
        for m in self.members.values():
            with contextlib.suppress(Exception):
                await m.link.close()
        await self.ledger.close()

    async def __aenter__(self) -> Repository:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- members ----------------------------------------------------------------------------

    async def probe(self) -> None:
        """Ask every member, in parallel, whether it is up and how much it will take."""

        async def one(m: Peer) -> None:
            try:
                if not m.link.warm:  # latency is a round trip, not dialling and SSH login
                    await m.link.space()
                t0 = time.monotonic()
                info = await m.link.space()
            except PeerbakError as exc:
                m.up, m.error = False, str(exc)
                log.info("member %s is down: %s", m.label, exc)
                await self.ledger.record_probe(m.node, False, self.clock())
                return
            m.up, m.error = True, ""
            m.free = max(0, min(info.quota - info.used, info.free))
            latency = time.monotonic() - t0
            log.info(
                "member %s is up: %d bytes of room for us, %.0f ms",
                m.label,
                m.free,
                latency * 1000,
            )
            await self.ledger.record_probe(m.node, True, self.clock(), latency)

        await asyncio.gather(*(one(m) for m in self.members.values()))
        stats = await self.ledger.member_stats()
        for m in self.members.values():
            s = stats.get(m.node)
            m.failing = s is not None and s.failing_since is not None

    async def compare_listing(self, m: Peer) -> AsyncIterator[tuple[str, bytes, int]]:
        """A member's list of our shards against the ledger's, merged as two sorted
        streams (flat memory): ``("missing", pack, index)`` for each shard the ledger
        says it acknowledged and it does not list, ``("unknown", pack, index)`` for
        each it lists that the ledger does not know (leftovers of a killed run)."""

        async def expected() -> AsyncIterator[tuple[bytes, int]]:
            async for page in self.ledger.shards_held_by(m.node):
                for item in page:
                    yield item

        want_it, held = expected(), m.link.list()
        want = await anext(want_it, None)
        have = await anext(held, None)
        while want is not None or have is not None:
            have_key = (bytes(have.pack), have.index) if have is not None else None
            if have_key is None or (want is not None and want < have_key):
                assert want is not None
                yield "missing", want[0], want[1]
                want = await anext(want_it, None)
            elif want is None or have_key < want:
                yield "unknown", have_key[0], have_key[1]
                have = await anext(held, None)
            else:
                want = await anext(want_it, None)
                have = await anext(held, None)

    def up(self) -> list[Peer]:
        return [m for m in self.members.values() if m.up]

    def code(self, override: tuple[int, int] | None = None) -> ErasureCode:
        """k-of-n for a backup: as asked, else from the pool's size (placement's table)."""
        k, n = override or default_code(len(self.members))
        if n > len(self.members):
            raise ConfigError(
                f"{k}-of-{n} needs {n} members besides this node; the pool has {len(self.members)}"
            )
        return ErasureCode(k, n)

    def require_reachable(self, code: ErasureCode) -> None:
        """A backup needs k + 1 members up: with fewer, one more loss loses the data."""
        up = self.up()
        if len(up) >= code.k + 1:
            return
        down = "; ".join(f"{m.label} ({m.error})" for m in self.members.values() if not m.up)
        raise PeerUnavailable(
            f"only {plural(len(up), 'member')} {verb(len(up), 'is', 'are')} reachable; "
            f"{code.k}-of-{code.n} needs at least "
            f"{code.k + 1}. Unreachable: {down}"
        )

    # -- storing packs -----------------------------------------------------------------------

    async def store_pack(self, record: PackRecord, shards: list[Shard], kind: int) -> None:
        """Place, record, upload in parallel; mark stored after ≥ k durable acks.

        The record (roots included) and its placement reach the ledger before any byte
        leaves, so a crash leaves rows that say where leftovers may lie.
        """
        size = shards[0].header.size
        candidates = [
            Candidate(m.node, healthy=m.up and not m.failing, free=m.free)
            for m in self.members.values()
        ]
        holders = place(record.pack_id, record.n, candidates, bytes(self.node_id), size)
        if len(holders) < record.k + 1 and len(holders) < record.n:
            down = "; ".join(
                f"{m.label} ({m.error if not m.up else 'failing challenges'})"
                for m in self.members.values()
                if not m.up or m.failing
            )
            raise PeerUnavailable(
                f"pack {record.pack_id.short}: only {plural(len(holders), 'member')} can take a "
                f"shard; "
                f"{record.k}-of-{record.n} needs {record.k + 1}"
                + (f". Left out: {down}" if down else "")
            )
        await self.ledger.add_pack(record, kind, holders, self.clock())
        crash_point("pack-sealed")

        async def put(index: int, node: bytes) -> bool:
            m = self.members[node]
            if self.upload is not None:
                await self.upload.take(size)
            try:
                await m.link.put(ShardKey(record.pack_id, index), shards[index])
            except PeerbakError as exc:
                log.warning(
                    "shard %d of pack %s to %s: %s",
                    index,
                    record.pack_id.short,
                    m.label,
                    exc,
                )
                m.up, m.error = False, str(exc)
                return False
            m.free -= size
            if index == 0:
                crash_point("mid-upload")
            return True

        done = await asyncio.gather(*(put(i, node) for i, node in enumerate(holders)))
        acked = [i for i, ok in enumerate(done) if ok]
        if len(acked) < record.k:
            raise PeerUnavailable(
                f"pack {record.pack_id.short}: only {plural(len(acked), 'member')} stored a shard, "
                f"{record.k} are needed"
            )
        crash_point("uploaded-not-recorded")
        await self.ledger.pack_stored(record, acked)

    async def reclaim(self) -> int:
        """Packs a killed backup sealed but never finished: move their shards to the
        holders' trash and forget them. Their chunks are packed again when next seen."""
        reclaimed = 0
        if await self.ledger.get_meta(UNPUBLISHED_DOOM):
            log.info("packs a prune doomed wait for a manifest without them")
            return 0
        for pack_id, placed in await self.ledger.sealed_packs():
            left = 0
            for index, node in placed.items():
                m = self.members.get(node)
                if m is None:
                    continue  # no longer a member: nothing of ours to ask it for
                try:
                    if not m.up:
                        raise PeerUnavailable(m.error)
                    await m.link.delete(ShardKey(pack_id, index))
                except PeerbakError as exc:
                    log.info(
                        "leftover shard %s.%d on %s stays for now: %s",
                        pack_id.short,
                        index,
                        m.label,
                        exc,
                    )
                    left += 1
            if not left:  # else kept, so a later run deletes the rest
                await self.ledger.drop_pack(pack_id)
                reclaimed += 1
        return reclaimed

    # -- reading packs back --------------------------------------------------------------------

    def _order(self, record: PackRecord, holders: dict[int, bytes]) -> list[int]:
        """Shards to ask first: members up before those that failed; among them, those
        not much slower than the fastest (less than half its rate counts as slow); then
        data shards before parity (they need no decoding); then the faster."""
        members = {i: self.members.get(node) for i, node in holders.items()}
        best = max((m.rate for m in members.values() if m is not None and m.up), default=0.0)

        def rank(i: int) -> tuple[bool, bool, bool, float]:
            m = members[i]
            up = m is not None and m.up
            rate = m.rate if m is not None else 0.0
            return (not up, rate < best / 2, i >= record.k, -rate)

        return sorted(holders, key=rank)

    async def fetch(self, pack_id: bytes, report: FetchReport | None = None) -> bytes:
        found = await self.ledger.pack(pack_id)
        if found is None:
            raise NotFoundError(f"pack {pack_id.hex()[:12]} is not in the ledger")
        record, holders = found
        return await self.fetch_record(record, holders, report)

    async def fetch_record(
        self, record: PackRecord, holders: dict[int, bytes], report: FetchReport | None = None
    ) -> bytes:
        stores: list[_Guarded | None] = [None] * record.n
        for index, node in holders.items():
            m = self.members.get(node)
            if m is not None:
                stores[index] = _Guarded(m, time.monotonic, self.download)
        report = report if report is not None else FetchReport()
        try:
            return await fetch_pack(record, stores, report, order=self._order(record, holders))
        finally:
            for index in report.used:  # counted once the pack checked out
                if (m := self.members.get(holders.get(index, b""))) is not None:
                    m.served += 1
            for index, why in report.failed.items():
                m = self.members.get(holders.get(index, b""))
                if m is not None and "Merkle root" in why:
                    m.bad += 1

    async def read_blob(self, ident: bytes, what: str = "tree") -> bytes:
        """One metadata blob (a tree, an index object); its pack's blobs are kept, so
        the trees of one metadata pack cost one fetch and no further lookups."""
        for cached in self._meta_cache.values():
            if (hit := cached.get(bytes(ident))) is not None:
                return hit
        located = await self.ledger.locate([ident])
        pack_id = located.get(bytes(ident))
        if pack_id is None:
            raise NotFoundError(f"{what} {ident.hex()[:12]} is not in any stored pack")
        blobs = self._meta_cache.get(pack_id)
        if blobs is None:
            found = await self.ledger.pack(pack_id)
            if found is None:
                raise NotFoundError(f"pack {pack_id.hex()[:12]} is not in the ledger")
            record, holders = found
            data = await self.fetch_record(record, holders)
            blobs = await asyncio.to_thread(
                lambda: {bytes(e.ident): plain for e, plain in read_blobs(self.keys, data, record)}
            )
            if len(self._meta_cache) >= 8:
                self._meta_cache.pop(next(iter(self._meta_cache)))
            self._meta_cache[pack_id] = blobs
        return blobs[bytes(ident)]

    async def read_tree(self, ident: bytes) -> Tree:
        """One tree of a snapshot, read and checked (see :meth:`read_blob`)."""
        raw = await self.read_blob(ident)
        return objects.decode(raw, Tree, "tree", bytes(ident).hex()[:12])

    async def read_index(self, listed: IndexPack) -> list[IndexPack]:
        """Every IndexPack in the index objects of one listed index pack."""
        record = listed.record()
        data = await self.fetch_record(record, {i: h for i, h in enumerate(listed.holders) if h})
        blobs = await asyncio.to_thread(lambda: list(read_blobs(self.keys, data, record)))
        out: list[IndexPack] = []
        for entry, plain in blobs:
            if entry.blob_type is BlobType.INDEX:
                out += objects.decode(plain, objects.Index, "index", entry.ident.hex()[:12]).packs
        return out

    # -- snapshots and the manifest --------------------------------------------------------

    async def snapshots(self) -> list[Snapshot]:
        return [
            objects.decode(body, Snapshot, "snapshot") for body in await self.ledger.snapshots()
        ]

    async def find_snapshot(self, text: str, only: Selection = EVERY) -> Snapshot:
        """By id prefix, or ``latest``: the newest of those ``only`` selects (an id
        names its snapshot whatever the selection)."""
        snaps = await self.snapshots()
        if text == "latest":
            chosen = [s for s in snaps if s in only]
            if not chosen:
                raise NotFoundError(
                    "there are no snapshots yet" if not only else f"no snapshot of {only}"
                )
            return max(chosen, key=lambda s: s.time)
        found = [s for s in snaps if s.id.hex().startswith(text.lower())]
        if len(found) != 1:
            raise NotFoundError(
                f"no snapshot {text!r}" if not found else f"{len(found)} snapshots match {text!r}"
            )
        return found[0]

    async def index_packs(self) -> list[IndexPack]:
        raw = await self.ledger.get_meta("index_packs")
        if not raw:
            return []
        return objects.decode(raw, objects.Index, "index list").packs

    async def publish(
        self, snapshots: Sequence[Snapshot], index_packs: list[IndexPack], *, unless: str = ""
    ) -> int:
        """Sign and give the manifest to every member up; returns how many keep it.

        When none does, PeerUnavailable says so, followed by ``unless``: what did not
        happen because of it."""
        founder = self.roster.founder or b""
        raw = await self.ledger.get_meta("manifest_seq")
        sequence = int.from_bytes(raw or b"\0", "big") + 1
        body = ManifestBody(
            pool=self.roster.pool,
            founder=founder,
            time=self.clock(),
            snapshots=list(snapshots),
            index_packs=index_packs,
        )
        blob = objects.seal_manifest(self.keys, sequence, body, self.random_bytes)

        missed: dict[str, str] = {m.label: m.error for m in self.members.values() if not m.up}

        async def give(m: Peer) -> bool:
            try:
                kept = await m.link.put_manifest(blob)
            except PeerbakError as exc:
                log.warning("manifest to %s: %s", m.label, exc)
                missed[m.label] = str(exc)
                return False
            if kept > sequence:
                log.warning(
                    "%s keeps a newer manifest (%d) than ours (%d): another machine with "
                    "this node's key?",
                    m.label,
                    kept,
                    sequence,
                )
                missed[m.label] = f"keeps a newer manifest ({kept})"
                return False
            return True

        reached = sum(await asyncio.gather(*(give(m) for m in self.up())))
        self.missed = sorted(missed)
        reach = {"time": self.clock(), "reached": reached, "members": len(self.members)}
        await self.ledger.set_meta(PUBLISH_REACH, json.dumps({**reach, "missed": missed}).encode())
        if reached == 0:
            raise PeerUnavailable("no member took the manifest" + (f": {unless}" if unless else ""))
        await self.ledger.set_meta("manifest_seq", sequence.to_bytes(8, "big"))
        await self.ledger.set_meta("index_packs", objects.encode(objects.Index(packs=index_packs)))
        await self.ledger.delete_meta(UNPUBLISHED_DOOM)  # a manifest without them is out
        return reached

    def open_manifest(self, blob: bytes) -> Manifest:
        """One of our manifests, checked: signed by us, decrypting with our key, and made
        for this pool and founder. A member replaying a manifest we signed for another
        pool (this key in an earlier pool) is refused like a forgery."""
        manifest = objects.open_manifest(self.keys, blob)
        founder = self.roster.founder
        if manifest.body.pool != self.roster.pool or (
            founder is not None and manifest.body.founder != founder
        ):
            raise IntegrityError(
                f"manifest {manifest.sequence} names pool {manifest.body.pool.hex()[:12]}, "
                f"this node is in {self.roster.pool.hex()[:12]}",
                obj="manifest",
                ident=str(manifest.sequence),
                check="pool",
            )
        return manifest

    async def latest_manifest(self) -> Manifest | None:
        """The newest manifest of ours any member up keeps (each checked: see
        :meth:`open_manifest`); members that answer with a forgery are logged."""

        async def one(m: Peer) -> Manifest | None:
            try:
                blob = await m.link.get_manifest()
                return self.open_manifest(blob) if blob else None
            except IntegrityError as exc:
                log.warning("member %s keeps a bad manifest: %s", m.label, exc)
            except PeerbakError as exc:
                log.info("manifest from %s: %s", m.label, exc)
            return None

        found = [x for x in await asyncio.gather(*(one(m) for m in self.up())) if x]
        return max(found, key=lambda x: x.sequence, default=None)


def index_pack(record: PackRecord, holders: dict[int, bytes]) -> IndexPack:
    return IndexPack.of(record, [holders.get(i, b"") for i in range(record.n)])
