"""The read half of the data path: any k good shards back into a pack, a pack into chunks.

Every shard is checked against the record the owner made before upload (its header,
hence its Merkle root), every rebuilt pack against its id, every chunk by its AEAD tag
and keyed hash. A shard that fails is dropped and another is tried; when fewer than
k good ones exist the pack fails with an error naming it, never with wrong bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from peerbak.core.codec import ErasureCode
from peerbak.core.crypto import NodeKeys
from peerbak.core.errors import IntegrityError, NotEnoughShares, PeerbakError
from peerbak.core.ids import ShardKey
from peerbak.core.pack import (
    BlobEntry,
    PackRecord,
    check_shard_data,
    open_blob,
    pack_id_of,
    read_pack_header,
)
from peerbak.ports import ShareStore


@dataclass
class FetchReport:
    """Which shards served a pack and why the others did not."""

    used: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


async def _fetch_shard(
    record: PackRecord, index: int, store: ShareStore, verify: bool
) -> tuple[int, memoryview | PeerbakError]:
    try:
        # With verify, the store has checked the data against the header's Merkle
        # root (its contract); either way the header must be the one we recorded.
        shard = await store.get(ShardKey(record.pack_id, index), verify=verify)
        if shard.header != record.header(index):
            raise IntegrityError(
                f"shard {record.pack_id.hex()}.{index} is not the one recorded",
                obj="shard",
                ident=f"{record.pack_id.hex()}.{index}",
                check="recorded-header",
            )
    except PeerbakError as exc:
        return index, exc
    return index, memoryview(shard.data)


def _bad_shards(record: PackRecord, good: dict[int, memoryview]) -> dict[int, str]:
    """The shards whose data does not match their recorded Merkle root (blocking)."""
    bad = {}
    for index, data in good.items():
        try:
            check_shard_data(record.header(index), data)
        except IntegrityError as exc:
            bad[index] = str(exc)
    return bad


def rebuild_pack(record: PackRecord, shards: dict[int, memoryview]) -> bytes | None:
    """The pack from k shards, or None when it does not match its id (blocking)."""
    pack = ErasureCode(record.k, record.n).decode(shards, record.length)
    return pack if pack_id_of(pack) == record.pack_id else None


async def fetch_pack(
    record: PackRecord,
    stores: Sequence[ShareStore | None],
    report: FetchReport | None = None,
    order: Sequence[int] | None = None,
) -> bytes:
    """Rebuild a pack from ``stores[i]`` (holder of shard i, None if gone).

    Shards are asked in ``order`` (default: data shards first, which need no decoding),
    k at a time in parallel; each missing one is replaced by the next. The first k
    come unverified and the rebuilt pack is checked against its id, which covers every
    byte of them: one hash instead of k Merkle trees. Only if it does not match is
    each shard checked against its recorded root, the bad ones dropped and replaced
    by verified shards. Wrong bytes are never returned.
    """
    report = report if report is not None else FetchReport()
    ranked = range(record.n) if order is None else order
    candidates = [i for i in ranked if 0 <= i < record.n and stores[i] is not None]
    good: dict[int, memoryview] = {}
    verify = False
    ident = record.pack_id.hex()

    while True:
        while len(good) < record.k and candidates:
            wanted = record.k - len(good)
            batch, candidates = candidates[:wanted], candidates[wanted:]
            results = await asyncio.gather(
                *(
                    _fetch_shard(record, i, store, verify)
                    for i in batch
                    if (store := stores[i]) is not None
                )
            )
            for index, result in results:
                if isinstance(result, PeerbakError):
                    report.failed[index] = str(result)
                else:
                    good[index] = result
        if len(good) < record.k:
            raise NotEnoughShares(
                f"pack {ident}: only {len(good)} good shards of the {record.k} needed "
                f"({'; '.join(report.failed.values()) or 'no holders'})",
                pack=ident,
                have=len(good),
                need=record.k,
            )
        pack = await asyncio.to_thread(rebuild_pack, record, good)
        if pack is not None:
            report.used = sorted(good)
            return pack
        if verify:  # every shard passed its root, yet the pack is wrong: a bug, or the record
            raise IntegrityError(
                f"pack {ident} rebuilt from shards {sorted(good)} does not match its id",
                obj="pack",
                ident=ident,
                check="pack-id",
            )
        bad = await asyncio.to_thread(_bad_shards, record, good)
        for index, why in bad.items():
            report.failed[index] = why
            del good[index]
        verify = True  # from now on, only shards that pass their root


def read_blobs(
    keys: NodeKeys, pack: bytes, record: PackRecord | None = None
) -> Iterator[tuple[BlobEntry, bytes]]:
    """Every blob of a pack, decrypted and checked, in pack order."""
    entries = read_pack_header(keys.data_key, pack)
    if record is not None and tuple(entries) != record.entries:
        raise IntegrityError(
            f"pack {record.pack_id.hex()}: header differs from the record",
            obj="pack",
            ident=record.pack_id.hex(),
            check="header",
        )
    view = memoryview(pack)
    for entry in entries:
        stored = view[entry.offset : entry.offset + entry.length]
        yield entry, open_blob(keys.data_key, keys.chunk_id_key, entry, stored)
