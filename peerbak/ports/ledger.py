"""The ledger as services see it: the node's record of its pool, and its scratch space.

One SQLite file in practice (:mod:`peerbak.adapters.ledger`), but services know only
this protocol: what packs are stored and where, which chunks they hold, the snapshots,
how members behave, and the repair moves under way. Scratch structures too large for
memory (a restore's plan, prune's set of used ids, the walker's files cache) are asked
of the ledger as well, so that SQL stays in one place.

Every method may raise :class:`~peerbak.core.errors.LedgerError` when the file cannot
be read or written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from peerbak.core.ids import PackId
from peerbak.core.pack import PackRecord
from peerbak.ports import FilesCache

#: Meta key set while packs prune doomed may still be listed by the members' manifest.
UNPUBLISHED_DOOM: Final = "unpublished_doom"


@dataclass(frozen=True, slots=True)
class SpaceUse:
    """What some distinct data and tree blobs take, at each step from file to friends' disks.

    ``plain`` and ``packed`` count each blob once, as the index places it (a copy left in
    another pack is not counted); ``pack_bytes`` and ``stored`` count the whole packs that
    hold them. So ``plain / packed`` is what compression saved and ``stored / pack_bytes``
    what redundancy costs, and the two views of ``stats`` (one snapshot, the whole node)
    measure the same things the same way.
    """

    plain: int  # plaintext bytes
    packed: int  # their bytes in packs: compressed, encrypted, framing included
    pack_bytes: int  # the length of the packs that hold them
    stored: int  # the shard bytes of those packs on members' disks: redundancy included


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as ``peerbak log`` shows it and notifications tell it.

    ``kind`` is dotted (``member.unreachable``, ``job.failed``, ...); ``subject`` names
    what it is about (a member's or a job's name); ``details`` is plain JSON."""

    id: int
    time: float
    level: str  # info, warning or error
    kind: str
    subject: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MemberStats:
    """What this node has observed of one member."""

    node_id: bytes
    first_seen: float | None
    last_seen: float | None
    passed: int
    failed: int
    failing_since: float | None
    probes: int
    probes_up: int
    latency: float | None

    @property
    def uptime(self) -> float | None:
        """Share of probes it answered, or None before the first probe."""
        return self.probes_up / self.probes if self.probes else None


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed (or timed-out) challenge, with what was wrong."""

    member: bytes
    time: float
    pack_id: bytes
    index: int
    outcome: str
    evidence: str


@dataclass(frozen=True, slots=True)
class Contained:
    """A challenge a member stalled: asked again until it answers or runs out of tries."""

    member: bytes
    pack_id: bytes
    index: int
    tries: int
    since: float


@dataclass(frozen=True, slots=True)
class Move:
    """A shard on its way to a new holder (``upload``) or to leave an old one (``release``)."""

    pack_id: bytes
    index: int
    holder: bytes
    phase: str


#: A planned file: (file id, path, encoded entry).
FileRow = tuple[int, bytes, bytes]


class FilesCacheSession(FilesCache, Protocol):
    """The files cache on a connection of its own, for the walker thread (blocking)."""

    def close(self) -> None:
        """Commit what is pending and let go of the connection."""
        ...


class IdSet(Protocol):
    """A set of 32-byte ids too large for memory (prune's used chunks and trees);
    blocking calls, gone once closed."""

    def add(self, ident: bytes) -> bool:
        """Add one id; False if it was there already."""
        ...

    def add_many(self, idents: Sequence[bytes]) -> None:
        """Add ids, some perhaps there already."""
        ...

    def present(self, idents: Sequence[bytes]) -> set[bytes]:
        """The ids among ``idents`` that are in the set."""
        ...

    def count(self) -> int:
        """How many ids the set holds."""
        ...

    def close(self) -> None:
        """Delete the set."""
        ...


class RestorePlan(Protocol):
    """Which chunk of which pack goes to which file at which offset, for one restore.

    Usable from the event loop and writer threads at once; gone once closed.
    """

    def add_file(
        self, path: bytes, entry: bytes, chunks: int, inode: tuple[int, int] | None
    ) -> int | None:
        """A file to write, its id; None when it is another name of a file already
        planned (``inode`` is given for files with more than one link)."""
        ...

    def add_targets(self, rows: Sequence[tuple[bytes, bytes, int, int]]) -> None:
        """Where chunks go: (pack, chunk, file id, offset) rows."""
        ...

    def add_dir(self, path: bytes, depth: int, entry: bytes) -> None:
        """A directory to make (parents first) and to date (deepest first)."""
        ...

    def add_later(self, path: bytes, entry: bytes) -> None:
        """An entry made after the files: a link or special file."""
        ...

    def planned(self) -> None:
        """Planning is over: what follows reads the plan by pack."""
        ...

    def packs(self) -> Iterator[bytes]:
        """Every pack the plan needs, in id order."""
        ...

    def targets(self, pack: bytes) -> tuple[list[tuple[bytes, int, int]], dict[int, bytes]]:
        """(chunk, file id, offset) for one pack, and the paths of those files."""
        ...

    def written(self, counts: dict[int, int]) -> list[FileRow]:
        """Count chunks written per file id; the files now complete."""
        ...

    def links(self, file_id: int) -> list[bytes]:
        """The other names of a file with more than one link."""
        ...

    def finished_files(self) -> Iterator[FileRow]:
        """Files with contents whose every chunk was written (to read back, ``--verify``)."""
        ...

    def empty_files(self) -> Iterator[FileRow]:
        """Files planned with no chunks (files completed by packs are not among them)."""
        ...

    def unfinished(self) -> tuple[int, bytes]:
        """How many files still miss chunks, and the first of their paths."""
        ...

    def dirs(self, deepest_first: bool) -> Iterator[tuple[bytes, bytes]]:
        """Directories (path, entry), parents first or deepest first."""
        ...

    def later(self) -> Iterator[tuple[bytes, bytes]]:
        """The entries added with :meth:`add_later`, in order."""
        ...

    def close(self) -> None:
        """Delete the plan."""
        ...


class Ledger(Protocol):
    """The node's ledger (see the module docstring)."""

    async def close(self) -> None:
        """Let go of the ledger; pending writes are already committed."""
        ...

    # -- meta and roster ----------------------------------------------------------------------

    async def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""
        ...

    async def set_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any."""
        ...

    async def delete_meta(self, key: str) -> None:
        """Forget ``key`` (a missing key is no error)."""
        ...

    async def add_records(self, blobs: list[bytes], now: float) -> int:
        """Keep signed roster records; returns how many were new."""
        ...

    async def records(self) -> list[bytes]:
        """Every roster record kept, in no particular order."""
        ...

    # -- packs and blobs ----------------------------------------------------------------------

    async def add_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], now: float
    ) -> None:
        """Record a sealed pack and where its shards go, before any is uploaded."""
        ...

    async def pack_stored(self, record: PackRecord, acked: Sequence[int]) -> None:
        """At least k holders acknowledged: its chunks may now be referenced."""
        ...

    async def import_pack(
        self, record: PackRecord, kind: int, holders: Sequence[bytes], indexed: bool, now: float
    ) -> None:
        """A pack learned from an index object (recovery): stored, with its holders."""
        ...

    async def sealed_packs(self) -> list[tuple[PackId, dict[int, bytes]]]:
        """Packs sealed but never stored (a backup died, or doomed): their placements."""
        ...

    async def drop_pack(self, pack_id: bytes) -> None:
        """Forget a pack, its shards and its blobs."""
        ...

    def chunk_ids(self, batch: int = ...) -> AsyncIterator[list[bytes]]:
        """Every stored chunk id, in order, a batch at a time."""
        ...

    async def locate(self, chunk_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """chunk id → pack id, for those stored."""
        ...

    async def locate_sized(self, chunk_ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """chunk id → (pack id, plaintext length), for those stored."""
        ...

    async def pack(self, pack_id: bytes) -> tuple[PackRecord, dict[int, bytes]] | None:
        """A stored pack's record and the holder of each stored shard, or None."""
        ...

    def stored_pack_ids(self, batch: int = ...) -> AsyncIterator[list[bytes]]:
        """Every stored pack's id, in order, a page at a time."""
        ...

    def shards_held_by(
        self, holder: bytes, batch: int = ...
    ) -> AsyncIterator[list[tuple[bytes, int]]]:
        """(pack id, index) of the stored shards ``holder`` acknowledged, in byte order."""
        ...

    def unindexed_packs(
        self, batch: int = ...
    ) -> AsyncIterator[list[tuple[PackRecord, dict[int, bytes]]]]:
        """Stored packs no index object lists yet, with their holders, a page at a time."""
        ...

    async def mark_indexed(self, pack_ids: Sequence[bytes]) -> None:
        """These packs are listed by an index object now."""
        ...

    async def held_by_member(self) -> dict[bytes, tuple[int, int]]:
        """member → (shards, bytes) of this node's stored shards it holds."""
        ...

    async def space(self, blob_ids: set[bytes] | None = None) -> SpaceUse:
        """The space these distinct blobs take; for None every data and tree blob the
        index places, with every stored pack (index packs too, so ``stored`` is the sum
        of what the members hold)."""
        ...

    # -- events ------------------------------------------------------------------------------

    async def add_event(
        self,
        time: float,
        level: str,
        kind: str,
        subject: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one event to the log; returns its id (ids only grow)."""
        ...

    async def events(
        self,
        *,
        after: int = 0,
        since: float | None = None,
        kinds: Sequence[str] = (),
        subject: str | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events with an id above ``after`` (and a time at or after ``since``), of these
        kinds (a kind ending in ``.`` matches as a prefix), oldest first."""
        ...

    # -- snapshots and retention -------------------------------------------------------------

    async def add_snapshot(self, ident: bytes, when: float, body: bytes) -> None:
        """Keep a snapshot's encoded body."""
        ...

    async def snapshots(self) -> list[bytes]:
        """Every snapshot's encoded body, oldest first."""
        ...

    async def remove_snapshots(self, ids: Sequence[bytes]) -> None:
        """Forget these snapshots, in one transaction."""
        ...

    async def doom_packs(self, pack_ids: Sequence[bytes], empty_index: bytes) -> None:
        """Prune's commit point: these packs leave the index, marked ``UNPUBLISHED_DOOM``."""
        ...

    async def relink_blobs(self, record: PackRecord) -> None:
        """Blobs copied into ``record``'s pack (prune's repacking) are found there now."""
        ...

    # -- members and challenges ----------------------------------------------------------------

    async def record_probe(
        self, node_id: bytes, up: bool, now: float, seconds: float | None = None
    ) -> None:
        """One probe of a member: counts toward its uptime; an answer is a sighting."""
        ...

    async def member_stats(self) -> dict[bytes, MemberStats]:
        """What this node has observed of every member it knows."""
        ...

    async def set_failing(self, node_id: bytes, since: float | None) -> None:
        """Mark a member as failing challenges (``since``), or clear the mark (None)."""
        ...

    async def random_shard(self, holder: bytes, pick: float) -> tuple[bytes, int] | None:
        """The shard at position ``pick`` in [0, 1) among those ``holder`` acknowledged."""
        ...

    async def record_challenge(
        self, member: bytes, pack_id: bytes, index: int, outcome: str, evidence: str, now: float
    ) -> None:
        """A challenge's result; a failure marks the shard bad and the member failing."""
        ...

    async def failures(self, limit: int = 100) -> list[Failure]:
        """The latest failed challenges, newest first."""
        ...

    async def contained(self, member: bytes) -> Contained | None:
        """The challenge ``member`` stalled and is asked again, if any."""
        ...

    async def contain(self, member: bytes, pack_id: bytes, index: int, now: float) -> int:
        """Count one more stalled try of this challenge; returns the tries so far."""
        ...

    async def uncontain(self, member: bytes) -> None:
        """Stop asking ``member`` the challenge it stalled."""
        ...

    # -- shard health and repair ---------------------------------------------------------------

    async def mark_shard_bad(self, pack_id: bytes, index: int) -> None:
        """A shard found missing or damaged: for repair to rebuild."""
        ...

    async def health_counts(self, healthy: Sequence[bytes]) -> dict[tuple[int, int, int], int]:
        """Packs by (good shards on ``healthy`` members, k, n)."""
        ...

    async def packs_short(
        self, healthy: Sequence[bytes], after: bytes = b"", limit: int = 500
    ) -> list[tuple[bytes, int, int, int]]:
        """Stored packs with fewer than n healthy shards after ``after``: (id, healthy, k, n)."""
        ...

    async def shard_rows(self, pack_id: bytes) -> list[tuple[int, bytes, bool, str]]:
        """Every placed shard of a pack: (index, holder, acknowledged, state)."""
        ...

    async def begin_moves(
        self, pack_id: bytes, targets: Sequence[tuple[int, bytes]], now: float
    ) -> None:
        """Record where rebuilt shards are about to go, before a byte is sent."""
        ...

    async def finish_move(self, pack_id: bytes, index: int, holder: bytes, now: float) -> None:
        """The new holder acknowledged shard ``index``; the old one has a copy to release."""
        ...

    async def moves(self, phase: str) -> list[Move]:
        """The moves in ``phase`` (``upload`` or ``release``), by pack and index."""
        ...

    async def drop_move(self, pack_id: bytes, index: int, holder: bytes) -> None:
        """A move done or given up."""
        ...

    # -- scratch -------------------------------------------------------------------------------

    def files_cache(self) -> FilesCacheSession:
        """The files cache on a connection of its own, for the walker thread."""
        ...

    def restore_plan(self, directory: str | None = None) -> RestorePlan:
        """A new, empty restore plan in ``directory`` (the system's temporary one if None)."""
        ...

    def id_set(self, directory: str) -> IdSet:
        """A new, empty id set in ``directory``."""
        ...
