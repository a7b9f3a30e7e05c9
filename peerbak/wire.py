"""The wire protocol inside the ``peerbak`` SSH subsystem: frames and messages, no I/O.

A frame is a 4-byte big-endian length, then that many bytes of msgpack holding one
message: an array whose first element is the message's tag (msgspec tagged union,
``array_like``). The length is checked before anything is buffered for it, and every
field is validated on decode against the limits below, so a peer can neither choose
our memory nor hand us a value we did not expect. The byte-level specification and
one section per message are in protocol/wire.md.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Annotated, Final, NoReturn

import msgspec

from peerbak import errors
from peerbak.errors import PeerbakError, RemoteProtocolError
from peerbak.pack import SHARD_HEADER_LEN

PROTOCOL_VERSION: Final = 1
DATA_MAX: Final = 1 << 20
MAX_FRAME: Final = DATA_MAX + 4096
RANGE_MAX: Final = 64 << 20
LIST_MAX: Final = 10_000
ROSTER_MAX: Final = 256
RECORD_MAX: Final = 8192
_LEN: Final = struct.Struct(">I")

Id32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Id16 = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
Sig = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
HeaderBytes = Annotated[
    bytes, msgspec.Meta(min_length=SHARD_HEADER_LEN, max_length=SHARD_HEADER_LEN)
]
Index = Annotated[int, msgspec.Meta(ge=0, le=31)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
Size = Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
Text64 = Annotated[str, msgspec.Meta(max_length=64)]
Record = Annotated[bytes, msgspec.Meta(max_length=RECORD_MAX)]


class _Msg(msgspec.Struct, array_like=True, tag=True, forbid_unknown_fields=True):
    pass


class Hello(_Msg, tag="Hello"):
    """Client → server, first: the wire versions the client speaks."""

    versions: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1, le=255)]], msgspec.Meta(min_length=1, max_length=8)
    ]
    software: Text64


class Welcome(_Msg, tag="Welcome"):
    """Server → client: the chosen version and who answered."""

    version: Annotated[int, msgspec.Meta(ge=1, le=255)]
    software: Text64
    node: Id32


class PutShard(_Msg, tag="PutShard"):
    """Owner → holder: a shard's container header; its data follows as Data frames."""

    header: HeaderBytes


class Data(_Msg, tag="Data"):
    data: Annotated[bytes, msgspec.Meta(max_length=DATA_MAX)]


class Stored(_Msg, tag="Stored"):
    """The shard is durable on the holder (fsync, link, fsync dir)."""


class GetShard(_Msg, tag="GetShard"):
    pack: Id32
    index: Index


class ShardFollows(_Msg, tag="ShardFollows"):
    header: HeaderBytes


class GetRange(_Msg, tag="GetRange"):
    pack: Id32
    index: Index
    offset: Offset
    length: Annotated[int, msgspec.Meta(ge=1, le=RANGE_MAX)]


class RangeFollows(_Msg, tag="RangeFollows"):
    length: Annotated[int, msgspec.Meta(ge=1, le=RANGE_MAX)]


class Stat(_Msg, tag="Stat"):
    pack: Id32
    index: Index


class ShardStat(_Msg, tag="ShardStat"):
    header: HeaderBytes
    size: Size


class List(_Msg, tag="List"):
    """Shard keys after ``after`` (empty, or 33 bytes: pack ‖ index), in byte order."""

    after: Annotated[bytes, msgspec.Meta(max_length=33)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=LIST_MAX)]


class ShardList(_Msg, tag="ShardList"):
    shards: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=33, max_length=33)]],
        msgspec.Meta(max_length=LIST_MAX),
    ]
    more: bool


class Delete(_Msg, tag="Delete"):
    """Move a shard to the holder's trash (kept for the holder's grace period)."""

    pack: Id32
    index: Index


class Deleted(_Msg, tag="Deleted"):
    pass


class Space(_Msg, tag="Space"):
    pass


class SpaceInfo(_Msg, tag="SpaceInfo"):
    quota: Size
    used: Size
    free: Size


class JoinRequest(_Msg, tag="JoinRequest"):
    """A key outside the roster asks to join: invite id, proof, its signed proposal."""

    invite: Id16
    proof: Sig
    record: Record


class JoinAccepted(_Msg, tag="JoinAccepted"):
    roster: Annotated[list[Record], msgspec.Meta(max_length=ROSTER_MAX)]


class RosterPush(_Msg, tag="RosterPush"):
    records: Annotated[list[Record], msgspec.Meta(max_length=ROSTER_MAX)]


class RosterAck(_Msg, tag="RosterAck"):
    accepted: Annotated[int, msgspec.Meta(ge=0, le=ROSTER_MAX)]


class Error(_Msg, tag="Error"):
    code: Annotated[str, msgspec.Meta(max_length=32)]
    message: Annotated[str, msgspec.Meta(max_length=1024)]


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
    | Error
)

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Message)


def encode(msg: Message) -> bytes:
    """One frame: length prefix and msgpack."""
    body = _ENCODER.encode(msg)
    return _LEN.pack(len(body)) + body


def data_frames(view: memoryview, chunk: int = DATA_MAX) -> Iterator[bytes]:
    """``view`` as encoded Data frames of at most ``chunk`` bytes each."""
    for start in range(0, len(view), chunk):
        yield encode(Data(data=bytes(view[start : start + chunk])))


class Framer:
    """Bytes in, messages out. Never touches a socket (h11's design).

    The buffer never holds more than one frame plus one read: a length above
    ``max_frame`` is refused the moment its four bytes arrive.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._max = max_frame
        self._buf = bytearray()
        self._dead: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _die(self, why: str) -> NoReturn:
        self._dead = why
        self._buf = bytearray()
        raise RemoteProtocolError(why)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Every complete message in what has arrived; ``b""`` means the peer is done."""
        if self._dead is not None:
            raise RemoteProtocolError(f"framer already failed: {self._dead}")
        if not data:
            if self._buf:
                need = _LEN.unpack_from(self._buf)[0] + 4 if len(self._buf) >= 4 else 4
                self._die(f"truncated frame: {len(self._buf)} of {need} bytes")
            return []
        self._buf += data
        out: list[Message] = []
        start = 0
        buf = self._buf
        while len(buf) - start >= 4:
            (length,) = _LEN.unpack_from(buf, start)
            if not 0 < length <= self._max:
                self._die(f"frame of {length} bytes (limit {self._max})")
            if len(buf) - start - 4 < length:
                break
            body = memoryview(buf)[start + 4 : start + 4 + length]
            try:
                out.append(_DECODER.decode(body))
            except (msgspec.MsgspecError, ValueError) as exc:
                body.release()
                self._die(f"invalid message: {exc}")
            body.release()
            start += 4 + length
        if start:
            del buf[:start]
        return out


# --- errors across the wire --------------------------------------------------------------

#: Error code → the error class the client raises. Unknown codes are PeerbakError.
CODES: Final[dict[str, type[PeerbakError]]] = {
    "protocol": RemoteProtocolError,
    "version": RemoteProtocolError,
    "integrity": errors.IntegrityError,
    "conflict": errors.ConflictError,
    "not-found": errors.NotFoundError,
    "quota": errors.StorageError,
    "no-space": errors.StorageError,
    "storage": errors.StorageError,
    "unauthorized": RemoteProtocolError,
    "invite-unknown": errors.InputError,
    "invite-expired": errors.InputError,
    "invite-used": errors.InputError,
    "invite-proof": errors.InputError,
    "invite-pool": errors.InputError,
    "busy": errors.PeerUnavailable,
    "peer-unavailable": errors.PeerUnavailable,
    "input": errors.InputError,
    "internal": PeerbakError,
}


def error_from(exc: PeerbakError) -> Error:
    """The Error message for a failure here (its code from the error class)."""
    code = exc.code if exc.code in CODES else "internal"
    return Error(code=code, message=str(exc)[:1024])


def raise_for(err: Error) -> NoReturn:
    """Raise, on the client, the error a peer's Error message stands for."""
    cls = CODES.get(err.code, PeerbakError)
    raise cls(f"peer: {err.message}" if err.message else f"peer error {err.code}")
