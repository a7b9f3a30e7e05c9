"""What moving shards costs, by transport: asyncssh channels against AEAD records on TCP.

The same work both ways: 976 MiB (a first backup's shards of the 1 GiB benchmark tree,
3-of-5) from one sender to five receiver processes on 127.0.0.1, in 5.3 MB shards that
each receiver writes and fsyncs and acknowledges with one byte. Prints wall time and
CPU seconds of the sender and of the receivers together (docs/performance.md).

    .venv/bin/python scripts/transport_cost.py asyncssh
    .venv/bin/python scripts/transport_cost.py records

``records`` is not a peerbak transport: it measures what one would cost, 1 MiB
AES-GCM records with counter nonces and no Python copies on the way.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import struct
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from peerbak.adapters.sshlib import asyncssh

SHARD = 5_300_000
TOTAL = 976 << 20
RECEIVERS = 5
RECORD = 1 << 20
FRAME = (256 << 10) - 4096  # peerbak's data frame: one SSH packet
KEY = bytes(32)  # a measurement, not a secret
ALGS = {
    "encryption_algs": ["aes128-gcm@openssh.com"],
    "kex_algs": ["curve25519-sha256"],
    "mac_algs": ["hmac-sha2-256-etm@openssh.com"],
    "compression_algs": ["none"],
}
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")


class _Sink:
    """Writes a byte stream into shard files, fsyncing each; returns one ack per shard."""

    def __init__(self, outdir: Path) -> None:
        self._dir = outdir
        self._file: int | None = None
        self._got = 0
        self._count = 0

    def write(self, data: bytes | memoryview) -> int:
        acks = 0
        view = memoryview(data)
        while view:
            if self._file is None:
                self._file = os.open(self._dir / f"s{self._count}", os.O_WRONLY | os.O_CREAT)
                self._count += 1
            take = min(len(view), SHARD - self._got)
            os.write(self._file, view[:take])
            self._got += take
            view = view[take:]
            if self._got == SHARD:
                os.fsync(self._file)
                os.close(self._file)
                self._file, self._got = None, 0
                acks += 1
        return acks


def _records_receiver(listener: socket.socket, outdir: Path) -> None:
    with listener:
        conn, _ = listener.accept()
    aes, sink, nonce = AESGCM(KEY), _Sink(outdir), 0
    buf = bytearray(RECORD + 16)
    view = memoryview(buf)
    with conn:
        while len(head := conn.recv(4, socket.MSG_WAITALL)) == 4:
            (size,) = struct.unpack(">I", head)
            got = 0
            while got < size:
                n = conn.recv_into(view[got:size])
                if not n:
                    return
                got += n
            plain = aes.decrypt(nonce.to_bytes(12, "big"), view[:size], None)
            nonce += 1
            if sink.write(plain):
                conn.sendall(b"K")


def _records_sender(ports: list[int]) -> None:
    data = memoryview(os.urandom(SHARD))

    def one(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            aes, nonce, sent = AESGCM(KEY), 0, 0
            while sent < TOTAL // RECEIVERS:
                for off in range(0, SHARD, RECORD):
                    sealed = aes.encrypt(nonce.to_bytes(12, "big"), data[off : off + RECORD], None)
                    nonce += 1
                    conn.sendall(struct.pack(">I", len(sealed)))
                    conn.sendall(sealed)
                conn.recv(1)
                sent += SHARD

    with ThreadPoolExecutor(len(ports)) as pool:
        list(pool.map(one, ports))


def _ssh_receiver(listener: socket.socket, outdir: Path) -> None:
    async def main() -> None:
        finished = asyncio.Event()

        async def session(proc: asyncssh.SSHServerProcess[bytes]) -> None:
            sink = _Sink(outdir)
            while data := await proc.stdin.read(8 << 20):
                proc.stdout.write(b"K" * sink.write(data))
            proc.exit(0)
            finished.set()

        authorized = asyncssh.import_authorized_keys(CLIENT_KEY.export_public_key().decode())
        server = await asyncssh.listen(
            sock=listener,
            server_host_keys=[HOST_KEY],
            authorized_client_keys=authorized,
            process_factory=session,
            encoding=None,
            window=8 << 20,
            max_pktsize=256 << 10,
            **ALGS,
        )
        await finished.wait()
        server.close()

    asyncio.run(main())


def _ssh_sender(ports: list[int]) -> None:
    data = os.urandom(SHARD)
    view = memoryview(data)

    async def one(port: int) -> None:
        conn = await asyncssh.connect(
            "127.0.0.1",
            port,
            known_hosts=([HOST_KEY.export_public_key()], [], []),
            username="bench",
            client_keys=[CLIENT_KEY],
            **ALGS,
        )
        async with conn:
            writer, reader, _ = await conn.open_session(
                encoding=None, window=8 << 20, max_pktsize=256 << 10
            )
            sent = 0
            while sent < TOTAL // RECEIVERS:
                for off in range(0, SHARD, FRAME):
                    writer.write(view[off : off + FRAME])
                    await writer.drain()
                await reader.readexactly(1)
                sent += SHARD
            writer.write_eof()

    async def main() -> None:
        await asyncio.gather(*(one(p) for p in ports))

    asyncio.run(main())


def main(argv: list[str]) -> int:
    kinds = {
        "records": (_records_receiver, _records_sender),
        "asyncssh": (_ssh_receiver, _ssh_sender),
    }
    if len(argv) != 2 or argv[1] not in kinds:
        print(__doc__, file=sys.stderr)
        return 2
    receive, send = kinds[argv[1]]
    ports, kids = [], []
    with tempfile.TemporaryDirectory(prefix="transport-cost-") as tmp:
        for i in range(RECEIVERS):
            listener = socket.create_server(("127.0.0.1", 0))  # listening before the fork
            outdir = Path(tmp) / f"r{i}"
            outdir.mkdir()
            pid = os.fork()
            if pid == 0:
                try:
                    receive(listener, outdir)
                finally:
                    os._exit(0)
            ports.append(listener.getsockname()[1])
            listener.close()
            kids.append(pid)
        os.sync()
        t0 = time.perf_counter()
        send(ports)
        seconds = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        receivers = 0.0
        for pid in kids:
            _, _, ru = os.wait4(pid, 0)
            receivers += ru.ru_utime + ru.ru_stime
    print(
        f"{argv[1]}: {seconds:.2f} s; CPU s: sender {usage.ru_utime + usage.ru_stime:.2f}, "
        f"receivers {receivers:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
