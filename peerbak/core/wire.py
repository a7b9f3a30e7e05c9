"""The wire protocol inside the ``peerbak`` SSH subsystem: frames and messages, no I/O.

Like h11, this module never touches a socket: the transport feeds it bytes and sends
the bytes it encodes, so every rule about what a peer may send is here, testable
without a network. A frame is a 4-byte big-endian length, then that many bytes of
msgpack holding one message, an array ``[tag, field, ...]`` (a msgspec tagged union,
``array_like``: field names are not repeated in every frame). The length is checked
the moment its four bytes arrive, before anything is buffered for it, and every field
is checked on decode against the limits below, so a peer can neither choose our memory
nor hand the layers above a value they did not expect. Anything a peer sends that
breaks these rules is a :class:`RemoteProtocolError`.

The byte-level specification, one section per message, is protocol/wire.md; the
shard header carried by PutShard, ShardFollows and ShardStat is in
protocol/storage-format.md.

The module stays whole although it is over 600 lines: the message catalogue with its
limits, the codec and framer that enforce them, and the error codes are the one table a
reader holds against wire.md, and a new message touches all of them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Annotated, Final, NoReturn

import msgspec

from peerbak.core import errors
from peerbak.core.errors import PeerbakError, RemoteProtocolError
from peerbak.core.pack import MAX_N, MAX_PACK, SHARD_HEADER_LEN, ShardHeader

#: The wire version this code prefers; :data:`SUPPORTED_VERSIONS` lists all it speaks.
PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)
#: Largest Data payload: big enough to keep per-frame costs negligible, small enough
#: that a session never buffers much (SSH windows are 8 MiB).
DATA_MAX: Final = 1 << 20
#: Largest frame body: a full Data frame plus room for the tag and length headers.
MAX_FRAME: Final = DATA_MAX + 4096
#: Largest GetRange: a whole shard (a shard of a 64 MiB pack with k = 1).
RANGE_MAX: Final = MAX_PACK
#: Shard keys in one ShardList.
LIST_MAX: Final = 10_000
#: Signed roster records in one message (the frame cap binds first: see wire.md).
ROSTER_MAX: Final = 256
#: Bytes of one signed roster record; equals ``peerbak.core.pool.MAX_SIGNED_RECORD``
#: (pool.md §1.3), restated because wire and pool are independent layers.
RECORD_MAX: Final = 8192
#: Bytes of a ShardList key and of a non-empty ``List.after``: pack id ‖ index byte.
KEY_LEN: Final = 33
ERROR_MESSAGE_MAX: Final = 1024
#: Largest manifest envelope; equals ``peerbak.core.objects.MANIFEST_MAX`` (one frame).
MANIFEST_MAX: Final = DATA_MAX
#: Leaves one Challenge may ask for (each answer leaf is 4 KiB plus its path).
CHALLENGE_LEAVES: Final = 16
#: Leaves in the largest shard: MAX_PACK bytes in 4 KiB leaves.
MAX_LEAVES: Final = MAX_PACK // 4096
_U63: Final = (1 << 63) - 1
_LEN: Final = struct.Struct(">I")

Id32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Id16 = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
Sig = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
HeaderBytes = Annotated[
    bytes, msgspec.Meta(min_length=SHARD_HEADER_LEN, max_length=SHARD_HEADER_LEN)
]
Index = Annotated[int, msgspec.Meta(ge=0, le=MAX_N - 1)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_PACK)]
RangeLength = Annotated[int, msgspec.Meta(ge=1, le=RANGE_MAX)]
Bytes63 = Annotated[int, msgspec.Meta(ge=0, le=_U63)]
Version = Annotated[int, msgspec.Meta(ge=1, le=255)]
#: Printable ASCII only: it is logged, and a peer must not write escape codes to a terminal.
Software = Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[\x20-\x7e]*\Z")]
Key33 = Annotated[bytes, msgspec.Meta(min_length=KEY_LEN, max_length=KEY_LEN)]
Record = Annotated[bytes, msgspec.Meta(max_length=RECORD_MAX)]
Records = Annotated[list[Record], msgspec.Meta(max_length=ROSTER_MAX)]
LeafIndex = Annotated[int, msgspec.Meta(ge=0, le=MAX_LEAVES - 1)]
Leaf = Annotated[bytes, msgspec.Meta(min_length=1, max_length=4096)]
#: An RFC 9162 audit path: one 32-byte sibling per level, at most 64 levels.
AuditPath = Annotated[list[Id32], msgspec.Meta(max_length=64)]


class _Msg(msgspec.Struct, array_like=True, tag=True, forbid_unknown_fields=True):
    """Tag = class name: readable in hex dumps, and at most 12 bytes a frame."""


# --- session ------------------------------------------------------------------------------


class Hello(_Msg):
    """Client → server, first message: the wire versions the client speaks."""

    versions: Annotated[list[Version], msgspec.Meta(min_length=1, max_length=8)]
    software: Software


class Welcome(_Msg):
    """Server → client: the version both will speak, and who answered (to check the pin)."""

    version: Version
    software: Software
    node: Id32


# --- shards -------------------------------------------------------------------------------


class PutShard(_Msg):
    """Owner → holder: a shard container header; the shard's data follows as Data frames.

    The header comes first so the holder can refuse (quota, space, conflict) before
    a byte of data arrives.
    """

    header: HeaderBytes


class Data(_Msg):
    """Part of a shard or range, in order. Never empty: every frame makes progress."""

    data: Annotated[bytes, msgspec.Meta(min_length=1, max_length=DATA_MAX)]


class Stored(_Msg):
    """Holder → owner: the shard is durable (fsync, link, fsync of the directory)."""


class GetShard(_Msg):
    """Owner → holder: a whole shard, answered by ShardFollows and Data frames."""

    pack: Id32
    index: Index


class ShardFollows(_Msg):
    """Holder → owner: the stored header; its shard length in Data frames follows."""

    header: HeaderBytes


class GetRange(_Msg):
    """Owner → holder: ``length`` bytes of a shard's data from ``offset`` (header excluded)."""

    pack: Id32
    index: Index
    offset: Offset
    length: RangeLength


class RangeFollows(_Msg):
    """Holder → owner: ``length`` bytes of Data follow."""

    length: RangeLength


class Stat(_Msg):
    """Owner → holder: does the holder have this shard, and which header?"""

    pack: Id32
    index: Index


class ShardStat(_Msg):
    """Holder → owner: the stored header and the container's size in bytes."""

    header: HeaderBytes
    size: Annotated[int, msgspec.Meta(ge=SHARD_HEADER_LEN, le=SHARD_HEADER_LEN + MAX_PACK)]


class List(_Msg):
    """Owner → holder: up to ``limit`` of its shard keys after ``after``, in byte order.

    ``after`` is empty (from the start) or a 33-byte key (pack id ‖ index byte): the
    last key of the previous page, so paging needs no state on the holder.
    """

    after: Annotated[bytes, msgspec.Meta(max_length=KEY_LEN)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=LIST_MAX)]

    def __post_init__(self) -> None:
        if len(self.after) not in (0, KEY_LEN):
            raise ValueError(f"List.after must be empty or {KEY_LEN} bytes, got {len(self.after)}")


class ShardList(_Msg):
    """Holder → owner: one page of keys; ``more`` when keys remain after the last."""

    shards: Annotated[list[Key33], msgspec.Meta(max_length=LIST_MAX)]
    more: bool


class Delete(_Msg):
    """Owner → holder: move a shard to the holder's trash (the holder decides when to purge)."""

    pack: Id32
    index: Index


class Deleted(_Msg):
    """Holder → owner: the shard is gone from the live set (or was never there)."""


class Space(_Msg):
    """Owner → holder: how much may I still store here?"""


class SpaceInfo(_Msg):
    """Holder → owner: bytes lent to this owner, used by it, and free above the reserve."""

    quota: Bytes63
    used: Bytes63
    free: Bytes63


# --- membership ---------------------------------------------------------------------------


class JoinRequest(_Msg):
    """Guest → inviter: invite id, join proof and the joiner's signed proposal (pool.md §6)."""

    invite: Id16
    proof: Sig
    record: Record


class JoinAccepted(_Msg):
    """Inviter → joiner: every signed roster record, in replay order."""

    roster: Records


class RosterPush(_Msg):
    """Member → member: signed records to apply (gossip, pool.md §4)."""

    records: Records


class RosterAck(_Msg):
    """How many of the pushed records changed the receiver's roster."""

    accepted: Annotated[int, msgspec.Meta(ge=0, le=ROSTER_MAX)]


# --- the owner's manifest -----------------------------------------------------------------


class PutManifest(_Msg):
    """Owner → holder: keep this as the owner's latest manifest (snapshots.md §5).

    The holder checks the owner's signature and that the sequence number does not go
    back, then replaces the one it kept.
    """

    manifest: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MANIFEST_MAX)]


class ManifestStored(_Msg):
    """Holder → owner: the manifest is durable; the sequence number it now keeps."""

    sequence: Bytes63


class GetManifest(_Msg):
    """Owner → holder: the latest manifest kept for the caller."""


class ManifestIs(_Msg):
    """Holder → owner: that manifest, or empty when none is kept."""

    manifest: Annotated[bytes, msgspec.Meta(max_length=MANIFEST_MAX)]


class GetRoster(_Msg):
    """Member → member: every signed roster record (a recovering node's first question)."""


class RosterIs(_Msg):
    """The answer to GetRoster, in replay order."""

    records: Records


# --- proofs of storage and the trash ------------------------------------------------------


class Challenge(_Msg):
    """Owner → holder: prove you hold shard ``index`` of ``pack`` (security.md §challenges).

    The holder answers with the requested 4 KiB leaves of the shard's data and their
    Merkle audit paths, computed from the data it actually has, and echoes the nonce.
    """

    pack: Id32
    index: Index
    nonce: Annotated[bytes, msgspec.Meta(min_length=16, max_length=32)]
    leaves: Annotated[list[LeafIndex], msgspec.Meta(min_length=1, max_length=CHALLENGE_LEAVES)]


class Proof(_Msg):
    """Holder → owner: the challenged leaves and their audit paths, in the asked order."""

    nonce: Annotated[bytes, msgspec.Meta(min_length=16, max_length=32)]
    leaves: Annotated[list[Leaf], msgspec.Meta(max_length=CHALLENGE_LEAVES)]
    paths: Annotated[list[AuditPath], msgspec.Meta(max_length=CHALLENGE_LEAVES)]


class Undelete(_Msg):
    """Owner → holder: move every shard of mine in your trash back to the live set."""


class Undeleted(_Msg):
    """Holder → owner: shards brought back, and shards already live (their copies stay)."""

    restored: Bytes63
    already: Bytes63


class GetTrashedManifest(_Msg):
    """Owner → holder: the trashed manifest of mine with the highest sequence below ``before``."""

    before: Bytes63


# --- reachability -------------------------------------------------------------------------

#: Ports a ReachMe may name: any TCP port but 0.
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
#: Longest address text in Reached: a bracketed IPv6 address with a zone and a port.
ADDRESS_MAX: Final = 128


class ReachMe(_Msg):
    """Member → member: dial me back on ``port``, at the address my session comes from.

    There is deliberately no address field: the member dials only the session's peer
    address, so no one can use a member to probe a third machine.
    """

    port: Port


class Reached(_Msg):
    """The answer to ReachMe: whether an SSH handshake pinned to the asker's host key
    succeeded, the address dialled (for display), and why not."""

    ok: bool
    address: Annotated[str, msgspec.Meta(max_length=ADDRESS_MAX, pattern=r"^[\x20-\x7e]*\Z")]
    error: Annotated[str, msgspec.Meta(max_length=ERROR_MESSAGE_MAX)]

    def __post_init__(self) -> None:
        if len(self.error) > ERROR_MESSAGE_MAX:
            self.error = self.error[:ERROR_MESSAGE_MAX]


class Error(_Msg):
    """A refusal: a machine-readable code (see :class:`ErrorCode`) and a text for people.

    The code is free-form on decode (a newer peer may send codes we do not know, read
    as a plain failure). A message built here is cut to the limit, so an Error we
    build can always be sent.
    """

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+\Z")]
    message: Annotated[str, msgspec.Meta(max_length=ERROR_MESSAGE_MAX)]

    def __post_init__(self) -> None:
        if len(self.message) > ERROR_MESSAGE_MAX:
            self.message = self.message[:ERROR_MESSAGE_MAX]


Message = (
    Hello
    | Welcome
    | PutShard
    | Data
    | Stored
    | GetShard
    | ShardFollows
    | GetRange
    | RangeFollows
    | Stat
    | ShardStat
    | List
    | ShardList
    | Delete
    | Deleted
    | Space
    | SpaceInfo
    | JoinRequest
    | JoinAccepted
    | RosterPush
    | RosterAck
    | PutManifest
    | ManifestStored
    | GetManifest
    | ManifestIs
    | GetRoster
    | RosterIs
    | Challenge
    | Proof
    | Undelete
    | Undeleted
    | GetTrashedManifest
    | ReachMe
    | Reached
    | Error
)
#: Every message type, in the order of wire.md.
MESSAGES: Final[tuple[type[Message], ...]] = (
    Hello,
    Welcome,
    PutShard,
    Data,
    Stored,
    GetShard,
    ShardFollows,
    GetRange,
    RangeFollows,
    Stat,
    ShardStat,
    List,
    ShardList,
    Delete,
    Deleted,
    Space,
    SpaceInfo,
    JoinRequest,
    JoinAccepted,
    RosterPush,
    RosterAck,
    PutManifest,
    ManifestStored,
    GetManifest,
    ManifestIs,
    GetRoster,
    RosterIs,
    Challenge,
    Proof,
    Undelete,
    Undeleted,
    GetTrashedManifest,
    ReachMe,
    Reached,
    Error,
)

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final[msgspec.msgpack.Decoder[Message]] = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    """One frame: length prefix and msgpack.

    Not validated: msgspec checks limits only on decode, and building an invalid
    message is a bug here that the peer refuses with ``protocol``.
    """
    body = _ENCODER.encode(msg)
    return _LEN.pack(len(body)) + body


def decode(body: bytes | bytearray | memoryview) -> Message:
    """One frame body (no length prefix) to its message, or RemoteProtocolError."""
    try:
        return _DECODER.decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 in a tag (found by fuzzing).
        raise RemoteProtocolError(f"invalid message: {exc}") from None


_DATA_TAG: Final = b"\xa4Data"


def _data_prefix(size: int) -> bytes:
    """Length prefix, array header, tag and bin header of a Data frame of ``size`` bytes:
    what msgspec writes, built by hand so the payload is copied once, not three times."""
    if size < 1 << 8:
        head = b"\x92" + _DATA_TAG + b"\xc4" + size.to_bytes(1, "big")
    elif size < 1 << 16:
        head = b"\x92" + _DATA_TAG + b"\xc5" + size.to_bytes(2, "big")
    else:
        head = b"\x92" + _DATA_TAG + b"\xc6" + size.to_bytes(4, "big")
    return _LEN.pack(len(head) + size) + head


def data_frames(view: memoryview, chunk: int = DATA_MAX) -> Iterator[bytes]:
    """``view`` as encoded Data frames of at most ``chunk`` bytes each (none if empty).

    Equal to ``encode(Data(data=piece))`` for each piece, with one copy of the payload.
    """
    if not 1 <= chunk <= DATA_MAX:
        raise ValueError(f"Data chunk must be 1..{DATA_MAX} bytes, got {chunk}")
    view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    for start in range(0, len(view), chunk):
        piece = view[start : start + chunk]
        yield b"".join((_data_prefix(len(piece)), piece))


def shard_length_of(msg: PutShard | ShardFollows) -> int:
    """Bytes of Data that follow this message: the shard length its header declares.

    A header that fails its checks raises :class:`~peerbak.core.errors.IntegrityError`, not a
    protocol error: the frame was well-formed, its contents are what is wrong (and the
    holder answers ``integrity``).
    """
    return ShardHeader.parse(msg.header).shard_length


def choose_version(offered: Iterable[int], supported: Iterable[int] = SUPPORTED_VERSIONS) -> int:
    """The version a server answers Hello with: the highest both speak; 0 if none."""
    return max(set(offered) & set(supported), default=0)


class Framer:
    """Bytes in, messages out; never touches a socket (h11's design).

    Complete frames are decoded straight from the bytes fed; only an incomplete frame is
    copied into the buffer, which so never holds more than one frame (``4 + max_frame``
    bytes, a length already checked) and needs no compaction. msgspec then copies a Data
    payload once more, into the message's ``bytes``. After an error the framer stays
    dead: a byte stream cannot be re-synchronised.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        if not 1 <= max_frame <= 0xFFFFFFFF:
            raise ValueError(f"max_frame must be 1..{0xFFFFFFFF}, got {max_frame}")
        self._max = max_frame
        self._buf = bytearray()
        self._need = 0  # bytes of the buffered frame, prefix included; 0 until known
        self._dead: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes of a partial frame waiting for the rest."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Every message completed by ``data``; ``b""`` means the peer is done sending."""
        if self._dead is not None:
            raise RemoteProtocolError(f"framer already failed: {self._dead}")
        view = memoryview(data)
        flat = view if view.format == "B" and view.ndim == 1 else view.cast("B")
        try:
            return self._feed(flat)
        finally:
            # Even while an error is alive, the caller's buffer must not stay exported
            # (a bytearray that is exported cannot be resized, so could not be reused).
            flat.release()
            view.release()

    def _feed(self, view: memoryview) -> list[Message]:
        if not view:
            if self._buf:
                whole = f"{self._need}" if self._need else "at least 4"
                self._die(f"truncated frame: {len(self._buf)} of {whole} bytes")
            return []
        out: list[Message] = []
        pos = self._top_up(view, out) if self._buf else 0
        end = len(view)
        while end - pos >= 4:
            need = 4 + self._length(view, pos)
            if end - pos < need:
                self._need = need
                break
            out.append(self._decode(view[pos + 4 : pos + need]))
            pos += need
        if pos < end:
            self._buf += view[pos:]
        return out

    def _top_up(self, view: memoryview, out: list[Message]) -> int:
        """Add to the buffered frame from ``view``; decode it once whole. Returns bytes used."""
        buf = self._buf
        pos = 0
        if not self._need:
            pos = min(4 - len(buf), len(view))
            buf += view[:pos]
            if len(buf) < 4:
                return pos
            self._need = 4 + self._length(buf, 0)
        take = min(self._need - len(buf), len(view) - pos)
        buf += view[pos : pos + take]
        pos += take
        if len(buf) == self._need:
            out.append(self._decode(memoryview(buf)[4:]))
            self._buf = bytearray()
            self._need = 0
        return pos

    def _length(self, buf: bytes | bytearray | memoryview, pos: int) -> int:
        (length,) = _LEN.unpack_from(buf, pos)
        if length == 0:
            self._die("frame of length 0: a frame holds one message")
        if length > self._max:
            self._die(f"frame of {length} bytes exceeds the limit of {self._max} bytes")
        result: int = length
        return result

    def _decode(self, body: memoryview) -> Message:
        try:
            return decode(body)
        except RemoteProtocolError as exc:
            self._die(str(exc))
        finally:
            body.release()

    def _die(self, why: str) -> NoReturn:
        self._dead = why
        self._buf = bytearray()
        self._need = 0
        raise RemoteProtocolError(why)


# --- errors across the wire ---------------------------------------------------------------


class ErrorCode(StrEnum):
    """The codes an Error carries; a peer may send others (read as ``internal``)."""

    PROTOCOL = "protocol"
    VERSION = "version"
    INTEGRITY = "integrity"
    CONFLICT = "conflict"
    NOT_FOUND = "not-found"
    QUOTA = "quota"
    NO_SPACE = "no-space"
    STORAGE = "storage"
    INPUT = "input"
    UNAUTHORIZED = "unauthorized"
    INVITE_UNKNOWN = "invite-unknown"
    INVITE_EXPIRED = "invite-expired"
    INVITE_USED = "invite-used"
    INVITE_PROOF = "invite-proof"
    INVITE_POOL = "invite-pool"
    BUSY = "busy"
    INTERNAL = "internal"


#: Error code → the error the client raises for it. Unknown codes raise PeerbakError.
CODES: Final[dict[str, type[PeerbakError]]] = {
    ErrorCode.PROTOCOL: RemoteProtocolError,
    ErrorCode.VERSION: RemoteProtocolError,
    ErrorCode.INTEGRITY: errors.IntegrityError,
    ErrorCode.CONFLICT: errors.ConflictError,
    ErrorCode.NOT_FOUND: errors.NotFoundError,
    ErrorCode.QUOTA: errors.StorageError,
    ErrorCode.NO_SPACE: errors.StorageError,
    ErrorCode.STORAGE: errors.StorageError,
    ErrorCode.INPUT: errors.InputError,
    ErrorCode.UNAUTHORIZED: RemoteProtocolError,
    ErrorCode.INVITE_UNKNOWN: errors.InputError,
    ErrorCode.INVITE_EXPIRED: errors.InputError,
    ErrorCode.INVITE_USED: errors.InputError,
    ErrorCode.INVITE_PROOF: errors.InputError,
    ErrorCode.INVITE_POOL: errors.InputError,
    ErrorCode.BUSY: errors.PeerUnavailable,
    ErrorCode.INTERNAL: PeerbakError,
}


def error_from(exc: PeerbakError) -> Error:
    """The Error answering a failure here.

    An error class whose ``code`` is a wire code keeps it (so a StorageError subclass
    with ``code = "quota"`` says ``quota``); PeerUnavailable is ``busy``. Anything else
    is ``internal``, sent without its text: that is this node's business (paths, its
    ledger), and its log has it.
    """
    if exc.code in CODES and exc.code != ErrorCode.INTERNAL:
        return Error(code=exc.code, message=str(exc))
    if isinstance(exc, errors.PeerUnavailable):
        return Error(code=ErrorCode.BUSY, message=str(exc))
    return Error(code=ErrorCode.INTERNAL, message=f"internal error ({type(exc).__name__})")


def raise_for(err: Error) -> NoReturn:
    """Raise, on the client, the error a peer's Error stands for; its text is kept."""
    cls = CODES.get(err.code, PeerbakError)
    text = "".join(c if c.isprintable() else "?" for c in err.message)
    raise cls(f"peer refused ({err.code}): {text}" if text else f"peer refused ({err.code})")
