"""Shard stores: a directory on disk (what a holder keeps) and an in-memory fake.

On disk, one owner's shards live under one root::

    <root>/
      shards/<aa>/<pack-id>.<index>   final, write-once; <aa> = first two hex digits
      incoming/<random>.tmp           writes in progress; swept when the store opens
      trash/<pack-id>.<index>.<n>     deleted shards, kept until the holder purges them
      manifest                        the owner's latest signed manifest (replaced whole;
                                      every one replaced goes to the trash)

A put writes to ``incoming/``, fsyncs, links it into ``shards/`` (a link never
replaces an existing name) and fsyncs the directory, so a crash leaves either the
whole shard under its final name or nothing there. Names are built from parsed ids
only, never from text a peer sent.
Trash names get a counter so a later delete never overwrites an earlier trashed
copy: a compromised owner cannot replace a good trashed shard with garbage.

The module stays whole although it is over 600 lines: the layout, the crash-safe write
path and the trash rules are one contract, which the in-memory fake shares through the
same checks, and a reader asking what a hostile owner can do to a holder's disk needs
all of it in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from peerbak.adapters.files import fsync_dir, storage_error
from peerbak.core import objects
from peerbak.core.errors import (
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)
from peerbak.core.ids import ShardKey
from peerbak.core.merkle import LeafHasher
from peerbak.core.pack import SHARD_HEADER_LEN, Shard, ShardHeader
from peerbak.ports import ShardInfo

_FILE_MODE: Final = 0o600
#: Replaced manifests kept per owner by default, and their bytes (config: storage).
KEEP_MANIFESTS: Final = 2000
KEEP_MANIFEST_BYTES: Final = 256 << 20
_DIR_MODE: Final = 0o700
#: Bytes of a streamed shard written (and hashed) per hop to a worker thread.
WRITE_BATCH: Final = 1 << 20


def _check_key(key: ShardKey, header: ShardHeader) -> None:
    if header.pack_id != key.pack or header.index != key.index:
        raise IntegrityError(
            f"shard {key.text}: container holds {header.pack_id.hex()}.{header.index}",
            obj="shard",
            ident=key.text,
            check="key",
        )


def _check_put(key: ShardKey, shard: Shard, verify: bool) -> None:
    """Before any byte is written: the shard is the one ``key`` names and is intact."""
    _check_key(key, shard.header)
    if verify:
        shard.verify()
    elif len(shard.data) != shard.header.shard_length:
        raise IntegrityError(
            f"shard {key.text}: wrong length", obj="shard", ident=key.text, check="length"
        )


def _parse_stored(key: ShardKey, raw: bytes, verify: bool = True) -> Shard:
    if verify:
        shard = Shard.from_bytes(raw)
    else:
        header = ShardHeader.parse(raw)
        shard = Shard(header, memoryview(raw)[SHARD_HEADER_LEN:])
        if len(shard.data) != header.shard_length:
            shard.verify()  # raises: the length is wrong
    _check_key(key, shard.header)
    return shard


def _check_range(key: ShardKey, header: ShardHeader, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > header.shard_length:
        raise InputError(
            f"shard {key.text}: range {offset}+{length} outside its {header.shard_length} bytes"
        )


class _Incoming:
    """A shard being written under ``incoming/``: write its data, then commit or abort.

    Commit checks the length (and, for streamed data, the Merkle root computed as the
    bytes arrived), fsyncs, links the file under its final name and fsyncs the
    directory. Abort removes the temporary file; it is also swept at the next open.
    """

    def __init__(
        self, store: DirectoryShareStore, key: ShardKey, header: ShardHeader, final: Path
    ) -> None:
        self.key = key
        self.header = header
        self._store = store
        self._final = final
        self._hasher = LeafHasher()
        self._tmp = store.incoming_dir / f"{secrets.token_hex(8)}.tmp"
        self._fd: int | None = None  # set before the open: abort() reads it if that fails
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            self._write_all(header.to_bytes())
        except OSError as exc:
            self.abort()
            raise storage_error(exc, f"cannot store shard {key.text}") from None

    @property
    def received(self) -> int:
        return self._hasher.length

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def write(self, data: bytes | bytearray | memoryview, *, hash_leaves: bool = False) -> None:
        if self._hasher.length + len(data) > self.header.shard_length:
            raise IntegrityError(
                f"shard {self.key.text}: more data than the {self.header.shard_length} declared",
                obj="shard",
                ident=self.key.text,
                check="length",
            )
        try:
            self._write_all(data)
        except OSError as exc:
            raise storage_error(exc, f"cannot store shard {self.key.text}") from None
        if hash_leaves:
            self._hasher.update(data)
        else:
            self._hasher.length += len(data)

    def commit(self, *, check_root: bool = True) -> None:
        key, header = self.key, self.header
        if self._hasher.length != header.shard_length:
            raise IntegrityError(
                f"shard {key.text}: {self._hasher.length} data bytes, header says "
                f"{header.shard_length}",
                obj="shard",
                ident=key.text,
                check="length",
            )
        if check_root and self._hasher.root() != header.root:
            raise IntegrityError(
                f"shard {key.text}: data does not match its Merkle root",
                obj="shard",
                ident=key.text,
                check="merkle-root",
            )
        assert self._fd is not None
        try:
            if self._store.durable:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._final.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            try:
                # link, not rename: it never replaces, so a racing put cannot overwrite.
                os.link(self._tmp, self._final)
            except FileExistsError:
                self._store.same_or_conflict(key, self._final, header)
            else:
                if self._store.durable:
                    fsync_dir(self._final.parent)
        except OSError as exc:
            raise storage_error(exc, f"cannot store shard {key.text}") from None
        finally:
            self.abort()

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        # Never made (the open failed), or the disk turned read-only: the next open of
        # the store sweeps what is left, and the error that led here is the one to report.
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)


def trashed_manifests(trash: Path) -> tuple[int, int]:
    """(replaced manifests in the trash directory ``trash``, their bytes)."""
    count = size = 0
    try:
        with os.scandir(trash) as entries:
            for e in entries:
                if e.name.startswith("manifest."):
                    count += 1
                    size += e.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        pass
    return count, size


class DirectoryShareStore:
    """A :class:`~peerbak.ports.ShareStore` in a directory; blocking I/O runs in threads."""

    def __init__(
        self,
        root: Path,
        *,
        durable: bool = True,
        verify_puts: bool = True,
        manifest_limit: tuple[int, int] = (KEEP_MANIFESTS, KEEP_MANIFEST_BYTES),
    ) -> None:
        """A store in ``root``, created if missing.

        ``manifest_limit`` bounds the replaced manifests kept in the trash (count,
        bytes): past it a new manifest is refused, never an older one dropped.

        ``durable=False`` skips fsync, and ``verify_puts=False`` skips recomputing the
        Merkle root of what is put: both only for a benchmark that measures the owner's
        own work, where the writer is this process's coder and holders run elsewhere.
        """
        self.root = root
        self.durable = durable
        self.verify_puts = verify_puts
        self.manifest_limit = manifest_limit
        self._shards = root / "shards"
        self.incoming_dir = root / "incoming"
        self._trash = root / "trash"
        self._manifest_lock = threading.Lock()
        try:
            for d in (root, self._shards, self.incoming_dir, self._trash):
                d.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            for leftover in self.incoming_dir.iterdir():
                leftover.unlink()
        except OSError as exc:
            raise storage_error(exc, f"cannot open shard store {root}") from None

    def _path(self, key: ShardKey) -> Path:
        name = key.text
        return self._shards / name[:2] / name

    # -- blocking halves -------------------------------------------------------------------

    def _put(self, key: ShardKey, shard: Shard) -> None:
        _check_put(key, shard, self.verify_puts)
        incoming = self._begin(key, shard.header)
        if incoming is None:
            return
        try:
            incoming.write(shard.data)
            incoming.commit(check_root=False)  # checked whole above (or trusted)
        finally:
            incoming.abort()

    def _begin(self, key: ShardKey, header: ShardHeader) -> _Incoming | None:
        """A new incoming file for ``key``, or None when the same shard is already stored."""
        _check_key(key, header)
        final = self._path(key)
        if final.exists():
            self.same_or_conflict(key, final, header)
            return None
        return _Incoming(self, key, header, final)

    def same_or_conflict(self, key: ShardKey, final: Path, header: ShardHeader) -> None:
        with final.open("rb") as f:
            existing = f.read(SHARD_HEADER_LEN)
        if existing != header.to_bytes():
            raise ConflictError(f"shard {key.text} is already stored with other contents")

    def _read(self, key: ShardKey) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"shard {key.text} is not stored here") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot read shard {key.text}") from None

    def _get(self, key: ShardKey, verify: bool = True) -> Shard:
        return _parse_stored(key, self._read(key), verify)

    def _read_header(self, key: ShardKey) -> tuple[ShardHeader, int]:
        try:
            with self._path(key).open("rb") as f:
                head = f.read(SHARD_HEADER_LEN)
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise NotFoundError(f"shard {key.text} is not stored here") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot read shard {key.text}") from None
        return ShardHeader.parse(head), size

    def _get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        header, _ = self._read_header(key)
        _check_range(key, header, offset, length)
        return self._pread(key, offset, length)

    def _stat(self, key: ShardKey) -> ShardInfo:
        header, size = self._read_header(key)
        return ShardInfo(key, header, size)

    def _list(self) -> list[ShardKey]:
        keys = []
        for sub in self._shards.iterdir():
            for entry in sub.iterdir():
                try:
                    keys.append(ShardKey.from_text(entry.name))
                except InputError:
                    continue  # not ours: never act on a name we did not write
        return keys

    def _delete(self, key: ShardKey) -> None:
        try:
            self._move_to_trash(key)
        except OSError as exc:
            raise storage_error(exc, f"cannot delete shard {key.text}") from None

    def _move_to_trash(self, key: ShardKey) -> None:
        src = self._path(key)
        for n in range(1 << 16):
            dst = self._trash / f"{key.text}.{n}"
            try:
                os.link(src, dst)  # never replaces: an earlier trashed copy stays
            except FileExistsError:
                continue
            except FileNotFoundError:
                return
            os.utime(dst)  # the file's time is now its deletion time: the grace runs from it
            os.unlink(src)
            if self.durable:
                fsync_dir(self._trash)
                fsync_dir(src.parent)
            return
        raise StorageError(f"shard {key.text}: trash holds too many copies")

    def purge_trash(self, now: float, grace: float) -> tuple[int, int]:
        """Free trashed shards deleted more than ``grace`` seconds before ``now``.

        The holder alone calls this, with its own grace period: an owner (or malware on
        it) can move shards to the trash but never shorten how long they stay there.
        Returns (shards, bytes) freed. Blocking: call from a thread.
        """
        freed = size = 0
        try:
            for entry in os.scandir(self._trash):
                info = entry.stat(follow_symlinks=False)
                if info.st_mtime <= now - grace:
                    os.unlink(entry.path)
                    freed += 1
                    size += info.st_size
            if freed and self.durable:
                fsync_dir(self._trash)
        except OSError as exc:
            raise storage_error(exc, f"cannot free the trash in {self._trash}") from None
        return freed, size

    def _undelete(self) -> tuple[int, int]:
        """Move every trashed shard back to the live set; a shard live again (stored
        anew since) keeps its trashed copy, which the purge frees in time.

        Returns (restored, already live). The trash is the owner's way back after
        malware on its machine deleted everything it could (security.md).
        """
        restored = already = 0
        with os.scandir(self._trash) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith("manifest."))
        for name in names:
            text, _, copy = name.rpartition(".")
            try:
                key = ShardKey.from_text(text)
            except InputError:
                continue  # not a name this store wrote
            if not copy.isdigit():
                continue
            final = self._path(key)
            final.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            try:
                os.link(self._trash / name, final)
            except FileExistsError:
                already += 1
                continue
            os.unlink(self._trash / name)
            restored += 1
        if restored and self.durable:
            fsync_dir(self._trash)
            for sub in self._shards.iterdir():
                fsync_dir(sub)
        return restored, already

    def _trashed_manifest(self, before: int) -> bytes:
        """The trashed manifest with the highest sequence below ``before``, or b""."""
        best, path = -1, None
        with os.scandir(self._trash) as entries:
            for e in entries:
                parts = e.name.split(".")
                if len(parts) == 3 and parts[0] == "manifest" and parts[1].isdigit():
                    seq = int(parts[1])
                    if best < seq < before:
                        best, path = seq, e.path
        if path is None:
            return b""
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise storage_error(exc, "cannot read a trashed manifest") from None

    async def undelete(self) -> tuple[int, int]:
        return await asyncio.to_thread(self._undelete)

    async def trashed_manifest(self, before: int) -> bytes:
        return await asyncio.to_thread(self._trashed_manifest, before)

    # -- for a holder: streamed puts and reads, usage -------------------------------------

    async def put_stream(
        self, key: ShardKey, header: ShardHeader, data: AsyncIterator[bytes]
    ) -> None:
        """Store a shard whose data arrives in pieces; nothing is visible unless it all
        arrives and matches the header's length and Merkle root."""
        incoming = await asyncio.to_thread(self._begin, key, header)
        if incoming is None:
            async for _ in data:  # the same shard is stored: drain and agree
                pass
            return

        def write(pieces: list[bytes]) -> None:
            for piece in pieces:
                incoming.write(piece, hash_leaves=True)

        try:
            batch: list[bytes] = []
            size = 0
            async for piece in data:
                batch.append(piece)
                size += len(piece)
                if size >= WRITE_BATCH:  # one thread hop a MiB, not one a frame
                    await asyncio.to_thread(write, batch)
                    batch, size = [], 0
            if batch:
                await asyncio.to_thread(write, batch)
            await asyncio.to_thread(incoming.commit)
        finally:
            incoming.abort()

    async def read_data(
        self, key: ShardKey, offset: int, length: int, piece: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """The shard's data from ``offset``, ``length`` bytes, in pieces (not verified)."""
        header, _ = await asyncio.to_thread(self._read_header, key)
        _check_range(key, header, offset, length)
        end = offset + length
        while offset < end:
            size = min(piece, end - offset)
            yield await asyncio.to_thread(self._pread, key, offset, size)
            offset += size

    def _pread(self, key: ShardKey, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"shard {key.text} is not stored here") from None
        try:
            data = os.pread(fd, length, SHARD_HEADER_LEN + offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise IntegrityError(
                f"shard {key.text} is truncated", obj="shard", ident=key.text, check="length"
            )
        return data

    def usage(self) -> int:
        """Bytes of live and trashed shards: trash counts against the owner until purged,
        so putting and deleting in a loop cannot fill the holder's disk.

        Blocking (a directory walk): call from a thread.
        """
        total = sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(self._trash))
        for sub in self._shards.iterdir():
            for entry in os.scandir(sub):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    # -- the owner's manifest: the one mutable file, replaced atomically ----------------------

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest"

    def _get_manifest(self) -> bytes:
        try:
            return self.manifest_path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise storage_error(exc, "cannot read the owner's manifest") from None

    def _put_manifest(self, blob: bytes, sequence: int) -> int:
        with self._manifest_lock:
            current = self._get_manifest()
            if current:
                try:
                    _, kept = objects.manifest_header(current)
                except IntegrityError:
                    kept = -1  # damaged here: any good one replaces it
                if kept > sequence:
                    return kept
                if kept == sequence:
                    if current != blob:
                        raise ConflictError(f"another manifest {sequence} is kept here")
                    return kept
            try:
                if current:
                    self._trash_manifest(kept)
                self._write_manifest(blob)
            except OSError as exc:
                raise storage_error(exc, "cannot store the owner's manifest") from None
            return sequence

    def _write_manifest(self, blob: bytes) -> None:
        """Replace the manifest whole. Its temporary file lives in ``incoming/``: one
        that a full disk cut short is removed at once, one a crash left is swept at the
        next open (never a stray file beside the manifest)."""
        tmp = self.incoming_dir / f"{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.manifest_path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        if self.durable:
            fsync_dir(self.root)

    def _trash_manifest(self, sequence: int) -> None:
        """Keep the manifest being replaced in the trash, for the holder's grace period:
        an owner's malware that pushes an empty manifest (it has the key) cannot make
        the pool forget a snapshot made within the grace. Every replaced manifest is
        kept, up to ``manifest_limit``; past it the new manifest is refused (the
        caller's put fails), so a flood of pushes cannot push the good ones out."""
        count, size = trashed_manifests(self._trash)
        most, most_bytes = self.manifest_limit
        adding = self.manifest_path.stat().st_size
        if count + 1 > most or size + adding > most_bytes:
            raise StorageError(
                f"this holder keeps {count} replaced manifests of yours ({size} bytes), its "
                f"limit ({most}, {most_bytes} bytes): new ones are refused until its trash "
                "grace frees some"
            )
        label = str(sequence) if sequence >= 0 else "damaged"
        for n in range(1 << 16):
            dst = self._trash / f"manifest.{label}.{n}"
            try:
                os.link(self.manifest_path, dst)  # never replaces an earlier trashed copy
            except FileExistsError:
                continue
            os.utime(dst)  # the grace runs from now
            if self.durable:
                fsync_dir(self._trash)
            return

    def manifest_trash(self) -> tuple[int, int]:
        """(replaced manifests kept, their bytes)."""
        return trashed_manifests(self._trash)

    # -- the port ---------------------------------------------------------------------------

    async def put_manifest(self, blob: bytes, sequence: int) -> int:
        return await asyncio.to_thread(self._put_manifest, blob, sequence)

    async def get_manifest(self) -> bytes:
        return await asyncio.to_thread(self._get_manifest)

    async def put(self, key: ShardKey, shard: Shard) -> None:
        await asyncio.to_thread(self._put, key, shard)

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard:
        return await asyncio.to_thread(self._get, key, verify)

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._get_range, key, offset, length)

    async def stat(self, key: ShardKey) -> ShardInfo:
        return await asyncio.to_thread(self._stat, key)

    async def list(self) -> AsyncIterator[ShardKey]:
        for key in await asyncio.to_thread(self._list):
            yield key

    async def delete(self, key: ShardKey) -> None:
        await asyncio.to_thread(self._delete, key)


class MemoryShareStore:
    """The in-memory fake: the same contract, for service tests that need no disk."""

    def __init__(self) -> None:
        self.shards: dict[ShardKey, bytes] = {}
        self.trash: list[tuple[ShardKey, bytes]] = []

    async def put(self, key: ShardKey, shard: Shard) -> None:
        _check_put(key, shard, verify=True)
        existing = self.shards.get(key)
        if existing is not None:
            if existing[:SHARD_HEADER_LEN] != shard.header.to_bytes():
                raise ConflictError(f"shard {key.text} is already stored with other contents")
            return
        self.shards[key] = shard.to_bytes()

    def _raw(self, key: ShardKey) -> bytes:
        try:
            return self.shards[key]
        except KeyError:
            raise NotFoundError(f"shard {key.text} is not stored here") from None

    async def get(self, key: ShardKey, *, verify: bool = True) -> Shard:
        return _parse_stored(key, self._raw(key), verify)

    async def get_range(self, key: ShardKey, offset: int, length: int) -> bytes:
        raw = self._raw(key)
        _check_range(key, ShardHeader.parse(raw), offset, length)
        start = SHARD_HEADER_LEN + offset
        return raw[start : start + length]

    async def stat(self, key: ShardKey) -> ShardInfo:
        raw = self._raw(key)
        return ShardInfo(key, ShardHeader.parse(raw), len(raw))

    async def list(self) -> AsyncIterator[ShardKey]:
        for key in list(self.shards):
            yield key

    async def delete(self, key: ShardKey) -> None:
        raw = self.shards.pop(key, None)
        if raw is not None:
            self.trash.append((key, raw))
