"""A friend's link drops 30 % of its packets, or adds 2 s of latency, during backup and
restore (the fault matrix's network row).

Each fault is real, not mocked; each pool is owner + three friends (separate daemon
processes, 2-of-3), and ``f1`` is the friend behind the bad link:

- Loss: the whole pool, every daemon and every command, runs inside a network namespace
  made for the test, and f1 listens on 127.0.0.2 there. nftables in that namespace drops
  30 % of the packets to and of the packets from 127.0.0.2 (``numgen random``), so every
  connection to f1 loses packets both ways (those f1 opens itself leave from 127.0.0.1
  and are spared: gossip only). The namespace's loopback has a 1500-byte MTU and no
  segmentation offload, so a packet is what it is on a real link, not a 64 KiB loopback
  super-packet that TCP would need far fewer of. Needs root, ``ip`` (iproute2) and
  ``nft`` (nftables); skipped without them.
- Latency: this kernel has no netem, so a relay in the test process (on 127.0.0.1)
  stands between the pool and f1, which advertises the relay's port: every chunk of
  bytes is delivered 1 s after the relay read it, in each direction, so every round trip
  to f1 takes 2 s more (order kept, no bandwidth limit).

Each test backs up and restores one tree before the fault, for comparison, then backs
up a tree of the same size and restores during it, and ``check --read-data`` once the
link is healthy again, so that it reaches every member: every shard must be there and
intact. Nothing may be lost: every restore is identical to its source; a command that
fails must exit with its code and say why, without a traceback. The commands' wall times
are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from peerbak.adapters.home import Home
from peerbak.core.errors import PeerbakError
from peerbak.tools.localpool import LocalNode
from peerbak.tools.sample import describe

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3"]
SHARDS = ("--shards", "2/3")
#: Where the lossy friend listens, inside the test's own namespace.
LOSSY_ADDRESS = "127.0.0.2"
LOSS_PERCENT = 30
#: The owner's network timeout in the loss test (the default is 30 s).
LOSSY_TIMEOUT = 10
#: One-way delay of the relay: 2 s more per round trip.
ONE_WAY_DELAY = 1.0
#: The test tree: this many files of random bytes, about TREE_BYTES in all.
TREE_FILES = 30
TREE_BYTES = 3 << 20
#: No CLI command may take longer than this; a hang fails the test with its output.
COMMAND_TIMEOUT = 80.0


# -- nodes run through a command prefix (``ip netns exec NAME``) ---------------------------


class PrefixedNode(LocalNode):
    """A :class:`LocalNode` whose daemon and CLI calls run behind ``prefix``."""

    def __init__(self, base: Path, name: str, prefix: Sequence[str] = ()) -> None:
        super().__init__(base, name)
        self.prefix = list(prefix)

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, sys.executable, "-m", "peerbak", "--home", str(self.home), *args]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``peerbak ARGS --json``: the finished process (a hang fails the test)."""
        try:
            return subprocess.run(
                self.command(*args, "--json"),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{self.name}: peerbak {' '.join(args)} still ran after {timeout:.0f} s:\n"
                f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
            )

    def cli(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> Any:
        out = self.run(*args, timeout=timeout)
        if not check:
            return out
        if out.returncode != 0:
            raise PeerbakError(f"peerbak {' '.join(args)} exited {out.returncode}: {out.stderr}")
        lines = out.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def init(self, *extra: str) -> dict[str, Any]:
        self.info = self.cli(
            "init", "--name", self.name, "--port", "0", "--listen", "127.0.0.1", "--no-lan", *extra
        )
        return self.info

    def port(self) -> int:
        """The daemon's SSH port, from its state file."""
        state = Home.open(self.home).running_state()
        assert state is not None, f"{self.name}'s daemon does not run"
        return state.port

    def append_config(self, text: str) -> None:
        with (self.home / "config.toml").open("a") as f:
            f.write(text)

    def set_config(self, old: str, new: str) -> None:
        config = self.home / "config.toml"
        text = config.read_text()
        assert old in text, f"{old!r} not in {config}"
        config.write_text(text.replace(old, new, 1))


def start_pool(nodes: Sequence[PrefixedNode]) -> None:
    """Start every node already initialised; the first invites the others."""
    for node in nodes:
        node.start()
    for joiner in nodes[1:]:
        token = nodes[0].cli("invite")["token"]
        joiner.cli("join", token)


def stop_all(nodes: Sequence[LocalNode]) -> None:
    for node in nodes:
        node.kill()


# -- the network namespace and its packet loss ---------------------------------------------


class NetnsError(RuntimeError):
    pass


class Netns:
    """A network namespace of our own, with nothing in it but a loopback."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = ["ip", "netns", "exec", name]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=30, check=False
        )

    def must(self, *args: str) -> str:
        out = self.run(*args)
        if out.returncode != 0:
            raise NetnsError(f"{' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def add_loss(self, address: str, percent: int) -> None:
        """Drop ``percent`` % of the packets to and from ``address``, independently."""
        self.must("nft", "add", "table", "inet", "pbkloss")
        self.must(
            "nft", "add", "chain", "inet", "pbkloss", "out",
            "{ type filter hook output priority 0; }",
        )  # fmt: skip
        for match in (["ip", "daddr", address], ["ip", "saddr", address]):
            self.must(
                "nft", "add", "rule", "inet", "pbkloss", "out", *match,
                "numgen", "random", "mod", "100", "<", str(percent), "counter", "drop",
            )  # fmt: skip
        self.must("nft", "add", "rule", "inet", "pbkloss", "out", "counter")

    def heal(self) -> None:
        self.must("nft", "delete", "table", "inet", "pbkloss")

    def counters(self) -> str:
        """The loss rules with their counters, for the report."""
        return self.must("nft", "list", "table", "inet", "pbkloss")


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("packet loss needs root (a network namespace and nftables)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"packet loss needs `{tool}` (Debian: iproute2, nftables)")
    ns = Netns(f"pbk-loss-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    made = subprocess.run(
        ["ip", "netns", "add", ns.name], capture_output=True, text=True, timeout=30, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    try:
        # A real link's packets: 1500 bytes, no loopback offloads (else one "packet"
        # is a 64 KiB super-segment and 30 % loss costs TCP far less than it should).
        up = ns.run(
            "ip", "link", "set", "lo", "mtu", "1500", "gso_max_size", "1500", "gso_max_segs", "1",
            "up",
        )  # fmt: skip
        if up.returncode != 0:
            pytest.skip(f"cannot set up the namespace's loopback: {up.stderr.strip()}")
        try:  # the very rules the test needs, on and off again
            ns.add_loss(LOSSY_ADDRESS, LOSS_PERCENT)
            ns.heal()
        except NetnsError as exc:
            pytest.skip(f"nftables cannot drop packets here: {exc}")
        yield ns
    finally:
        subprocess.run(
            ["ip", "netns", "del", ns.name], capture_output=True, timeout=30, check=False
        )


# -- the delaying relay --------------------------------------------------------------------


class DelayRelay:
    """A TCP relay on 127.0.0.1 that delivers every chunk ``delay`` seconds after reading
    it, in both directions and in order (the end of a stream too); its own event loop in
    a thread of its own. No bandwidth limit: TCP and SSH flow control still apply."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.target_port = 0
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-relay")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        writers = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            writers.append(up_writer)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except OSError:
            pass  # f1 is not there: the caller sees the connection close
        except asyncio.CancelledError:
            pass  # the relay stops (only stop() cancels): the connections close below
        finally:
            for w in writers:
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read as it comes; write each chunk once its time is up. A reset ends the
        stream after what came before it, as it would on a real link."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            try:
                while True:
                    due, data = await queue.get()
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not data:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
            except OSError:
                writer.close()  # the far end is gone: so is what we still had for it

        sender = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    data = await reader.read(1 << 16)
                except OSError:
                    data = b""
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


@pytest.fixture
def relay() -> Iterator[DelayRelay]:
    relay = DelayRelay()
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


# -- trees, commands, timings ----------------------------------------------------------------


def make_tree(root: Path, seed: int) -> Path:
    """TREE_FILES files of random bytes (incompressible), about TREE_BYTES in all, in four
    directories."""
    rnd = random.Random(seed)
    for i in range(TREE_FILES):
        path = root / f"d{i % 4}" / f"f{i:02}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(rnd.randint(1, 2 * TREE_BYTES // TREE_FILES)))
    return root


def no_traceback(out: subprocess.CompletedProcess[str], what: str) -> None:
    assert "Traceback" not in out.stderr + out.stdout, f"{what}: a traceback:\n{out.stderr}"


def summary_of(out: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    """The last JSON line of a command that must have succeeded."""
    no_traceback(out, what)
    assert out.returncode == 0, f"{what} exited {out.returncode}:\n{out.stderr}\n{out.stdout}"
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


class Clock:
    """Wall times of the commands of one test, printed at the end (``pytest -s``)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, float, str]] = []

    def run(
        self, node: PrefixedNode, label: str, *args: str, note: str = ""
    ) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        out = node.run(*args)
        self.rows.append((label, time.monotonic() - t0, note))
        return out

    def print(self) -> None:
        print(f"\n{self.title}")
        for label, seconds, note in self.rows:
            print(f"  {label:<44} {seconds:6.1f} s  {note}")


def backup(clock: Clock, owner: PrefixedNode, label: str, src: Path) -> dict[str, Any]:
    out = clock.run(owner, label, "backup", *SHARDS, str(src))
    summary = summary_of(out, label)
    assert summary["errors"] == 0, summary
    clock.rows[-1] = (*clock.rows[-1][:2], f"members up {summary['members_up']}")
    return summary


def restore_identical(
    clock: Clock, owner: PrefixedNode, label: str, snapshot: str, src: Path, target: Path
) -> dict[str, Any]:
    """Restore ``snapshot`` into ``target``: it must come back whole and identical."""
    out = clock.run(owner, label, "restore", snapshot, "--target", str(target))
    summary = summary_of(out, label)
    assert not summary["errors"], summary
    assert not summary["failed_packs"], summary
    assert summary["files_restored"] == TREE_FILES, summary
    assert describe(target / src.relative_to("/")) == describe(src), f"{label}: not identical"
    served = ", ".join(f"{k} {v}" for k, v in sorted(summary["served_by"].items()))
    down = f"; down: {sorted(summary['down'])}" if summary["down"] else ""
    clock.rows[-1] = (*clock.rows[-1][:2], f"shards from {served}{down}")
    return summary


def check_everything(clock: Clock, owner: PrefixedNode, label: str) -> dict[str, Any]:
    """``check --read-data`` with every member answering: exit 0, nothing missing."""
    out = clock.run(owner, label, "check", "--read-data")
    summary = summary_of(out, label)
    assert summary["ok"], summary
    assert summary["members_down"] == {}, summary
    assert summary["packs_read"] == summary["packs"], summary
    clock.rows[-1] = (
        *clock.rows[-1][:2],
        f"{summary['packs']} packs, {summary['shards_expected']} shards",
    )
    return summary


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("friends", [3, 4], ids=["three-friends", "a-spare-friend"])
def test_thirty_percent_loss_to_one_friend_loses_nothing(netns: Netns, friends: int) -> None:
    """2-of-3 with three friends, then four; f1's link loses 30 % of its packets both ways.

    At 30 % loss TCP to f1 crawls (a few KB/s: most losses end in a retransmission
    timeout, which doubles each time), so a shard for f1 does not arrive within the
    owner's network timeout, or f1 does not even answer the first probe: f1 is dropped
    for the rest of the run. With a spare friend the backup goes on with the others and
    must succeed. With three friends that leaves two holders for the next pack, fewer
    than the k + 1 = 3 that protocol/snapshots.md §6 requires, so the backup is refused
    (exit 75) unless f1 kept up; both outcomes are allowed, and a refusal must name f1
    and why. Whatever happens, every snapshot restores identical during the loss, and
    once the link is healthy again the refused backup succeeds, restores identical and
    ``check --read-data`` finds every shard intact on every member.

    The owner's network timeout is 10 s instead of 30 s, so that giving up on f1 costs
    10 s plus its bytes at 256 KiB/s rather than 30 s: the same path, sooner.
    """
    base = Path(tempfile.mkdtemp(prefix="pbk-loss-"))
    names = ["owner", *(f"f{i}" for i in range(1, friends + 1))]
    nodes = [PrefixedNode(base, name, netns.prefix) for name in names]
    owner, f1 = nodes[0], nodes[1]
    clock = Clock(
        f"{LOSS_PERCENT} % packet loss to and from f1 ({LOSSY_ADDRESS}), {friends} friends"
    )
    try:
        for node in nodes:
            node.init(*(["--listen", LOSSY_ADDRESS] if node is f1 else []))
        owner.append_config(f"\n[network]\ntimeout = {LOSSY_TIMEOUT}\n")
        start_pool(nodes)
        before, during = make_tree(base / "before", 1), make_tree(base / "during", 2)

        first = backup(clock, owner, "backup, no loss", before)
        restore_identical(
            clock, owner, "restore, no loss", first["snapshot_id"], before, base / "r1"
        )

        netns.add_loss(LOSSY_ADDRESS, LOSS_PERCENT)
        out = clock.run(owner, "backup during the loss", "backup", *SHARDS, str(during))
        no_traceback(out, "backup during the loss")
        second: dict[str, Any] | None = None
        refusal = ""
        if out.returncode == 0 or friends > 3:
            second = summary_of(out, "backup during the loss")
            assert second["errors"] == 0, second
            clock.rows[-1] = (*clock.rows[-1][:2], f"members up {second['members_up']}")
        else:
            refusal = out.stderr.strip()
            error = json.loads(refusal.splitlines()[-1])
            assert out.returncode == 75, refusal
            assert error["message_type"] == "exit_error", refusal
            assert error["error"] == "PeerUnavailable", refusal
            # Who and why: named in the refusal (f1 did not answer the probe) or in the
            # warning about the shard that did not arrive (f1 failed during the run).
            assert any(
                who in refusal for who in ("Unreachable: f1 (", "Left out: f1 (", " to f1: ")
            ), refusal
            assert "did not answer" in refusal or "cannot reach" in refusal, refusal
            clock.rows[-1] = (*clock.rows[-1][:2], "refused (exit 75)")
        # The snapshot made during the loss, or if it was refused the one made before.
        made, src = (first, before) if second is None else (second, during)
        restore_identical(
            clock, owner, "restore during the loss", made["snapshot_id"], src, base / "r2"
        )
        losses = netns.counters()
        dropped = [int(n) for n in re.findall(r"counter packets (\d+) bytes \d+ drop", losses)]
        assert len(dropped) == 2, losses
        assert all(dropped), f"no packet was dropped one way: {losses}"
        netns.heal()

        if second is None:
            second = backup(clock, owner, "backup again, link healthy", during)
        restore_identical(
            clock, owner, "restore, link healthy", second["snapshot_id"], during, base / "r3"
        )
        check_everything(clock, owner, "check --read-data, link healthy")
        clock.print()
        if refusal:
            print(f"  the refusal, as printed:\n    {refusal.replace(chr(10), chr(10) + '    ')}")
        print(f"  packets dropped to f1, from f1: {dropped[0]}, {dropped[1]}")
    finally:
        stop_all(nodes)
        shutil.rmtree(base, ignore_errors=True)


def test_two_second_round_trip_to_one_friend_loses_nothing(relay: DelayRelay) -> None:
    """Owner + three friends, 2-of-3; f1 is reached through the relay, 1 s each way.

    A member 2 s away is slow, not dead: the backup must use it (every shard placed,
    f1's included), the restore must be identical, and ``check --read-data`` (after the
    delay is gone, so that it is quick) must find every shard on every member.
    """
    base = Path(tempfile.mkdtemp(prefix="pbk-latency-"))
    nodes = [PrefixedNode(base, name) for name in NAMES]
    owner, f1 = nodes[0], nodes[1]
    clock = Clock(f"{2 * ONE_WAY_DELAY:.0f} s more per round trip to f1 (relay, 127.0.0.1)")
    try:
        for node in nodes:
            node.init()
        # Friends reach f1 only through the relay: its advertised address, set before it
        # joins (addresses are exchanged at join).
        f1.set_config("advertise = []", f'advertise = ["127.0.0.1:{relay.port}"]')
        f1.start()
        relay.target_port = f1.port()
        for node in (owner, *nodes[2:]):
            node.start()
        for joiner in nodes[1:]:
            joiner.cli("join", owner.cli("invite")["token"])
        before, during = make_tree(base / "before", 1), make_tree(base / "during", 2)

        first = backup(clock, owner, "backup, no delay", before)
        restore_identical(
            clock, owner, "restore, no delay", first["snapshot_id"], before, base / "r1"
        )

        relay.delay = ONE_WAY_DELAY
        used = relay.connections
        second = backup(clock, owner, "backup, 2 s round trip to f1", during)
        assert second["members_up"] == 3, second  # slow is not dead
        assert second["manifest_copies"] == 3, second
        restore_identical(
            clock, owner, "restore, 2 s round trip to f1",
            second["snapshot_id"], during, base / "r2",
        )  # fmt: skip
        assert relay.connections > used  # the owner did go through the relay
        relay.delay = 0.0

        check = check_everything(clock, owner, "check --read-data, no delay")
        # Every pack has all n = 3 shards: f1 took its share despite the delay.
        assert check["shards_expected"] == 3 * check["packs"], check
        clock.print()
        print(f"  connections through the relay: {relay.connections}")
    finally:
        stop_all(nodes)
        shutil.rmtree(base, ignore_errors=True)
