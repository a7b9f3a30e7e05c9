"""SSH between members: one asyncssh server per node, clients that pin host keys.

Profile (protocol/wire.md, "SSH profile"): Ed25519 host and client keys derived from
the node secret; curve25519 key exchange; aes128-gcm first on CPUs with AES
instructions, chacha20-poly1305 first on those without (a Raspberry Pi 4); no compression
(shards are encrypted and incompressible). The server refuses everything but the
``peerbak`` subsystem: no shell, exec, pty, SFTP, SCP, agent, X11 or port forwarding,
no password or keyboard-interactive login. A client trusts exactly the one host key
the roster (or an invite token) names for the member it dials.

A session is a :class:`FramedChannel`: length-prefixed wire messages both ways.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from peerbak.adapters.sshlib import asyncssh
from peerbak.core import wire
from peerbak.core.addresses import split_host_port
from peerbak.core.errors import PeerUnavailable, RemoteProtocolError

log = logging.getLogger(__name__)

SUBSYSTEM: Final = "peerbak"
USERNAME: Final = "peerbak"
#: Flow-control window and packet size: large enough that one channel moves shards at
#: hundreds of MB/s on loopback, small enough to bound what a slow peer makes us buffer.
WINDOW: Final = 8 << 20
MAX_PKTSIZE: Final = 256 << 10
#: Data frame payload: within one packet with the channel's and the frame's own headers,
#: and a whole number of 4 KiB Merkle leaves, so a holder hashes each frame as it comes.
DATA_FRAME: Final = MAX_PKTSIZE - 4096
LOGIN_TIMEOUT: Final = 20.0
KEEPALIVE: Final = 30.0


def _cpu_has_aes() -> bool:
    """AES instructions (x86 ``aes``, ARMv8 ``aes`` feature): then AES-GCM is fastest.

    Measured here (x86 with AES-NI, one stream, verified and fsynced puts): aes128-gcm
    337 MB/s, chacha20-poly1305 286 MB/s. A Raspberry Pi 4 has no AES instructions,
    and there chacha20-poly1305 is several times faster than software AES.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if (
                    line.startswith(("flags", "Features"))
                    and " aes" in f" {line.split(':', 1)[-1]}"
                ):
                    return True
    except OSError:
        pass
    return False


_AES = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
_CHACHA = ["chacha20-poly1305@openssh.com"]

ALGORITHMS: Final[dict[str, list[str]]] = {
    "kex_algs": ["curve25519-sha256", "curve25519-sha256@libssh.org"],
    # The client's order decides (RFC 4253 §7.1); both sides offer both.
    "encryption_algs": _AES + _CHACHA if _cpu_has_aes() else _CHACHA + _AES,
    "mac_algs": ["hmac-sha2-256-etm@openssh.com"],
    "compression_algs": ["none"],
    "signature_algs": ["ssh-ed25519"],
}

# RFC 8410 PKCS#8 wrapping of a raw Ed25519 seed: the public API asyncssh imports.
_PKCS8_ED25519: Final = bytes.fromhex("302e020100300506032b657004220420")
_ED25519: Final = b"ssh-ed25519"


def private_key(seed: bytes) -> asyncssh.SSHKey:
    """The node's SSH key (host and client) from its 32-byte ssh seed."""
    return asyncssh.import_private_key(_PKCS8_ED25519 + seed)


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_blob(raw: bytes) -> bytes:
    """SSH wire form of a raw Ed25519 public key, as ``SSHKey.public_data`` gives it."""
    return _ssh_string(_ED25519) + _ssh_string(raw)


def public_key(raw: bytes) -> asyncssh.SSHKey:
    text = b"ssh-ed25519 " + base64.b64encode(public_blob(raw))
    return asyncssh.import_public_key(text)


def raw_public(key: asyncssh.SSHKey) -> bytes | None:
    """The 32 raw bytes of an Ed25519 public key; None for any other kind of key."""
    blob: bytes = key.public_data
    prefix = _ssh_string(_ED25519) + struct.pack(">I", 32)
    if len(blob) != len(prefix) + 32 or not blob.startswith(prefix):
        return None
    return blob[len(prefix) :]


def fingerprint(raw: bytes) -> str:
    """OpenSSH-style SHA256 fingerprint, for people comparing keys."""
    return str(public_key(raw).get_fingerprint("sha256"))


class FramedChannel:
    """Wire messages over one SSH channel; implements the ``Channel`` port."""

    def __init__(
        self,
        reader: asyncssh.SSHReader[bytes],
        writer: asyncssh.SSHWriter[bytes],
        max_frame: int = wire.MAX_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._framer = wire.Framer(max_frame)
        self._ready: list[wire.Message] = []
        self._eof = False

    async def recv(self) -> wire.Message | None:
        """The next message, or None at a clean end of the channel."""
        while not self._ready:
            if self._eof:
                return None
            try:
                data = await self._reader.read(WINDOW)
            except (asyncssh.Error, OSError) as exc:
                raise PeerUnavailable(f"connection lost: {exc}") from None
            if not data:
                self._eof = True
            self._ready.extend(self._framer.feed(data))
        return self._ready.pop(0)

    async def send(self, msg: wire.Message) -> None:
        await self._write(wire.encode(msg))

    async def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """``data`` as a run of Data frames, written with flow control.

        Each frame fits one SSH packet: asyncssh cuts a longer write into packets by
        slicing its buffer and shifting the rest down, 1.5 extra copies of a 1 MiB frame.
        """
        for frame in wire.data_frames(memoryview(data), DATA_FRAME):
            await self._write(frame)

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are, unframed: only for tests that play a hostile peer."""
        await self._write(data)

    async def send_eof(self) -> None:
        self._writer.write_eof()

    async def _write(self, frame: bytes) -> None:
        try:
            self._writer.write(frame)
            await self._writer.drain()
        except (asyncssh.Error, OSError, BrokenPipeError) as exc:
            raise PeerUnavailable(f"connection lost: {exc}") from None

    @property
    def closing(self) -> bool:
        """The channel (or its connection) has gone: do not reuse it."""
        return bool(self._writer.channel.is_closing())

    def close(self) -> None:
        self._writer.channel.close()


# --- server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is on the other end: a member (by node id) or a guest that may only join."""

    ssh_key: bytes
    node: bytes | None  # None: a guest, allowed nothing but Hello and JoinRequest
    #: The IP address the connection comes from (ReachMe dials this, never a wire address).
    peer: str = ""

    @property
    def is_member(self) -> bool:
        return self.node is not None


class ServerHooks(Protocol):
    """What the node supplies to the SSH server."""

    def member_for_key(self, ssh_key: bytes) -> bytes | None:
        """The node id whose roster record carries this SSH key, if any."""
        ...

    def guests_allowed(self) -> bool:
        """Whether a key outside the roster may log in to ask to join (open invites)."""
        ...

    def serve(self, caller: Caller, channel: FramedChannel) -> Awaitable[None]:
        """Run one session's conversation to its end."""
        ...


class _Session(asyncssh.stream.SSHServerStreamSession):  # type: ignore[type-arg]
    """Only the peerbak subsystem; shell, exec and pty requests are refused."""

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == SUBSYSTEM

    def pty_requested(self, *args: Any) -> bool:
        return False


class _Server(asyncssh.SSHServer):
    """Per-connection policy. Every default of asyncssh that could open a door is closed here."""

    def __init__(self, hooks: ServerHooks) -> None:
        self._hooks = hooks
        self._caller: Caller | None = None
        self._peer = ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peername = conn.get_extra_info("peername")
        self._peer = str(peername[0]) if peername else ""

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        raw = raw_public(key)
        if raw is None:
            return False
        node = self._hooks.member_for_key(raw)
        if node is None and not self._hooks.guests_allowed():
            return False
        self._caller = Caller(raw, node, self._peer)
        return True

    def session_requested(self) -> _Session | bool:
        caller = self._caller
        if caller is None:
            return False
        hooks = self._hooks

        def handler(
            stdin: asyncssh.SSHReader[bytes],
            stdout: asyncssh.SSHWriter[bytes],
            stderr: asyncssh.SSHWriter[bytes],
        ) -> Awaitable[None]:
            return _run_session(hooks, caller, FramedChannel(stdin, stdout))

        return _Session(handler)

    def connection_requested(self, *args: Any) -> bool:
        return False

    def server_requested(self, *args: Any) -> bool:
        return False

    def unix_connection_requested(self, *args: Any) -> bool:
        return False

    def unix_server_requested(self, *args: Any) -> bool:
        return False

    def tun_requested(self, *args: Any) -> bool:
        return False


async def _run_session(hooks: ServerHooks, caller: Caller, channel: FramedChannel) -> None:
    try:
        await hooks.serve(caller, channel)
    except Exception:  # a bug in one session must not take the server down
        log.exception("session of %s failed", (caller.node or caller.ssh_key).hex()[:12])
    finally:
        channel.close()


async def listen(
    host: str, port: int, host_key: asyncssh.SSHKey, hooks: ServerHooks
) -> asyncssh.SSHAcceptor:
    """Start the server; ``port`` 0 lets the OS choose (``acceptor.get_port()``)."""
    return await asyncssh.listen(
        host,
        port,
        server_factory=lambda: _Server(hooks),
        server_host_keys=[host_key],
        encoding=None,
        window=WINDOW,
        max_pktsize=MAX_PKTSIZE,
        login_timeout=LOGIN_TIMEOUT,
        keepalive_interval=KEEPALIVE,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=False,
        allow_scp=False,
        sftp_factory=None,
        reuse_address=True,
        **ALGORITHMS,
    )


# --- client ---------------------------------------------------------------------------------


class KeyRefused(PeerUnavailable):
    """The server does not let our key in: we are not in its roster (or no invite is open)."""


async def connect(
    address: str, host_key: bytes, client_key: asyncssh.SSHKey, timeout: float
) -> asyncssh.SSHClientConnection:
    """Dial ``address`` trusting only ``host_key``; any failure is PeerUnavailable."""
    host, port = split_host_port(address, RemoteProtocolError)
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                host,
                port,
                username=USERNAME,
                known_hosts=([public_key(host_key)], [], []),
                client_keys=[client_key],
                agent_path=None,
                preferred_auth=["publickey"],
                config=None,
                encoding=None,
                window=WINDOW,
                max_pktsize=MAX_PKTSIZE,
                keepalive_interval=KEEPALIVE,
                **ALGORITHMS,
            ),
            timeout,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise PeerUnavailable(
            f"{address} presented another host key than {fingerprint(host_key)}: "
            "refusing to talk (a different machine, or someone in the middle)"
        ) from None
    except asyncssh.PermissionDenied:
        raise KeyRefused(f"{address} refused our key (not in its roster)") from None
    except (TimeoutError, asyncssh.Error, OSError) as exc:
        raise PeerUnavailable(f"cannot reach {address}: {exc or type(exc).__name__}") from None


async def handshake_only(
    address: str, host_key: bytes, client_key: asyncssh.SSHKey, timeout: float
) -> None:
    """Dial, complete an SSH handshake and login pinned to ``host_key``, hang up (ReachMe)."""
    conn = await connect(address, host_key, client_key, timeout)
    conn.close()
    await conn.wait_closed()


async def open_channel(conn: asyncssh.SSHClientConnection) -> FramedChannel:
    try:
        writer, reader, _ = await conn.open_session(
            subsystem=SUBSYSTEM, encoding=None, window=WINDOW, max_pktsize=MAX_PKTSIZE
        )
    except (asyncssh.Error, OSError) as exc:
        raise PeerUnavailable(f"cannot open a session: {exc}") from None
    return FramedChannel(reader, writer)


async def server_host_key(address: str, timeout: float) -> bytes:
    """The Ed25519 host key ``address`` presents, without logging in.

    For ``peerbak recover`` only, which knows an address but no key yet: it pins what
    this returns, then proves the key right by the owner-signed manifest (recovery is
    refused if the member's roster key differs). Never a reason to skip pinning.
    """
    host, port = split_host_port(address, RemoteProtocolError)
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                host, port, server_host_key_algs=["ssh-ed25519"], config=None
            ),
            timeout,
        )
    except (TimeoutError, asyncssh.Error, OSError) as exc:
        raise PeerUnavailable(f"cannot reach {address}: {exc or type(exc).__name__}") from None
    raw = raw_public(key) if key is not None else None
    if raw is None:
        raise RemoteProtocolError(f"{address} has no Ed25519 host key: not a peerbak node")
    return raw
