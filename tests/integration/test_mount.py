"""``peerbak mount`` on four real nodes (owner + three friends, 2-of-3): every file of a
backup read through the kernel, byte for byte, with its attributes; nothing writable;
SIGINT and ``fusermount -u`` unmount and exit 0. And a restore into a FUSE file system
that refuses one name (``a:b``, as vfat): that file alone is named, the rest restored.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from peerbak.tools.localpool import LocalNode, make_pool
from tests.services.kit import read_beneath

pytestmark = pytest.mark.slow

NAMES = ["owner", "f1", "f2", "f3"]
SHARDS = ("--shards", "2/3")
DEADLINE = 60.0


def _fuse_missing() -> str:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    if fusermount is None:
        return "neither fusermount3 nor fusermount is installed"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"libfuse cannot be loaded: {exc}"
    return ""


if _fuse_missing():
    pytest.skip(_fuse_missing(), allow_module_level=True)

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    # Short: the deep path below must stay under PATH_MAX once restored into a mount.
    path = Path(tempfile.mkdtemp(prefix="pbk-m-"))
    try:
        yield path
    finally:
        for mp in path.glob("mp*"):
            if os.path.ismount(mp):
                subprocess.run([FUSERMOUNT, "-u", "-z", str(mp)], check=False)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(base: Path) -> Iterator[list[LocalNode]]:
    nodes = make_pool(base / "nodes", NAMES)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


class Mounted:
    """A FUSE file system served by a child process, mounted once this returns."""

    def __init__(self, argv: list[str], mountpoint: Path, log: Path) -> None:
        mountpoint.mkdir(exist_ok=True)
        self.mountpoint = mountpoint
        self.log = log
        self._err: IO[bytes] = log.open("wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._err
        )
        deadline = time.monotonic() + DEADLINE
        while not os.path.ismount(mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                pytest.fail(f"{mountpoint} never mounted: {self.stderr()}")
            time.sleep(0.05)  # polling the mount table, with a deadline

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, how: signal.Signals | None = signal.SIGINT) -> int:
        """SIGINT (or ``fusermount -u`` when ``how`` is None), then the exit code."""
        if how is None:
            subprocess.run([FUSERMOUNT, "-u", str(self.mountpoint)], check=True)
        elif self.proc.poll() is None:
            self.proc.send_signal(how)
        try:
            return self.proc.wait(DEADLINE)
        finally:
            self._err.close()


def _peerbak(node: LocalNode, *args: str) -> list[str]:
    return [sys.executable, "-m", "peerbak", "--home", str(node.home), *args]


def _same(src: Path, seen: Path) -> int:
    """Every entry below ``src`` is in ``seen`` as it is in ``src``: type and mode,
    owner, mtime (to the nanosecond), size and bytes, link targets. Returns how many."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        here = seen / Path(dirpath).relative_to(src)
        assert sorted(os.listdir(here)) == sorted(dirnames + filenames), here
        for name in dirnames + filenames:
            a, b = Path(dirpath) / name, here / name
            sa, sb = os.lstat(a), os.lstat(b)
            assert (sb.st_mode, sb.st_uid, sb.st_gid) == (sa.st_mode, sa.st_uid, sa.st_gid), b
            assert sb.st_mtime_ns == sa.st_mtime_ns, b
            if stat.S_ISLNK(sa.st_mode):
                assert os.readlink(b) == os.readlink(a), b
            elif stat.S_ISREG(sa.st_mode):
                assert sb.st_size == sa.st_size, b
                assert b.read_bytes() == a.read_bytes(), b
            count += 1
    return count


def _tree(src: Path) -> None:
    rnd = os.urandom
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "big.bin").write_bytes(rnd(5 << 20) + b"tail")  # several chunks
    (src / "small.txt").write_text("hello\n")
    (src / "sub" / "inner.bin").write_bytes(rnd(300_000))
    (src / "sub" / "deeper" / "x").write_bytes(b"x" * 10)
    (src / "empty").write_bytes(b"")
    os.symlink("sub/inner.bin", src / "link")
    os.symlink("/nowhere/at/all", src / "dangling")
    (src / "small.txt").chmod(0o640)
    (src / "sub" / "deeper" / "x").chmod(0o755)
    os.utime(src / "small.txt", ns=(1_600_000_000_123_456_789,) * 2)
    os.utime(src / "sub" / "deeper", ns=(1_500_000_000_987_654_321,) * 2)


def test_mount_shows_every_file_read_only_and_unmounts_on_sigint(
    base: Path, pool: list[LocalNode]
) -> None:
    owner = pool[0]
    src = base / "src-mount"
    src.mkdir()
    _tree(src)
    summary: dict[str, Any] = owner.cli("backup", *SHARDS, "--tag", "mnt", str(src))
    short = summary["snapshot_id"][:8]
    inside = src.relative_to("/")

    mp = base / "mp-snapshots"
    mounted = Mounted(_peerbak(owner, "mount", str(mp)), mp, base / "mount.log")
    try:
        assert sorted(os.listdir(mp)) == ["hosts", "ids", "snapshots", "tags"]
        assert short in os.listdir(mp / "ids")
        assert _same(src, mp / "ids" / short / inside) == 9

        # latest: a link to the newest snapshot's directory, and it leads there.
        times = [n for n in os.listdir(mp / "snapshots") if n != "latest"]
        newest = max(times, key=lambda n: os.stat(mp / "snapshots" / n).st_mtime_ns)
        assert os.readlink(mp / "snapshots" / "latest") == newest
        assert (mp / "snapshots" / "latest" / inside / "small.txt").read_text() == "hello\n"
        assert os.readlink(mp / "tags" / "mnt" / "latest") in os.listdir(mp / "tags" / "mnt")
        hosts = os.listdir(mp / "hosts")
        assert len(hosts) == 1
        assert "latest" in os.listdir(mp / "hosts" / hosts[0])

        # Reads at an offset, as a program seeking in a file does.
        big = (src / "big.bin").read_bytes()
        with open(mp / "ids" / short / inside / "big.bin", "rb") as f:
            f.seek(3_000_000)
            assert f.read(2_000_000) == big[3_000_000:5_000_000]

        # Read-only, whatever is tried.
        for attempt in (
            lambda: open(mp / "ids" / short / inside / "small.txt", "w"),  # noqa: SIM115
            lambda: (mp / "ids" / short / inside / "new").write_bytes(b"x"),
            lambda: os.mkdir(mp / "ids" / short / "made"),
            lambda: os.unlink(mp / "ids" / short / inside / "empty"),
            lambda: os.chmod(mp / "ids" / short / inside / "empty", 0o777),
        ):
            with pytest.raises(OSError, match="Read-only file system") as refused:
                attempt()
            assert refused.value.errno == errno.EROFS
    finally:
        code = mounted.stop(signal.SIGINT)
    assert code == 0, mounted.stderr()
    assert not os.path.ismount(mp)
    assert "Traceback" not in mounted.stderr()

    # SIGTERM and fusermount -u end it as cleanly.
    for how in (signal.SIGTERM, None):
        argv = _peerbak(owner, "mount", "--tag", "mnt", str(mp))
        again = Mounted(argv, mp, base / f"again-{how}.log")
        assert os.listdir(mp / "ids") == [short]  # --tag: only this one
        assert again.stop(how) == 0, again.stderr()
        assert not os.path.ismount(mp)


@pytest.mark.parametrize("where", ["missing", "not-empty"])
def test_a_mount_where_none_can_be_is_a_clear_error(
    base: Path, pool: list[LocalNode], where: str
) -> None:
    mp = base / where
    if where == "not-empty":
        mp.mkdir()
        (mp / "file").write_bytes(b"x")
    out = subprocess.run(
        _peerbak(pool[0], "mount", str(mp)),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert out.returncode == 64, out.stderr
    assert "not a directory to mount on" in out.stderr or "not empty" in out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.ismount(mp)


def _awkward(src: Path) -> dict[Path, bytes]:
    """A 255-byte name, a path of about 4,000 bytes, names with newlines, and ``a:b``."""
    deep = src.joinpath(*(f"{i:02}" + "d" * 202 for i in range(19)))  # 19 × 204 bytes
    made = {}
    for path in (
        src / ("n" * 251 + ".txt"),
        src / "line\nbreak",
        src / "two\nnew\nlines",
        deep / "leaf",
        src / "a:b",
        src / "plain.bin",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        body = os.fsencode(str(path)) + os.urandom(1000)
        path.write_bytes(body)
        made[path.relative_to(src)] = body
    assert len(os.fsencode(str((deep / "leaf").relative_to(src)))) > 3800
    return made


def test_a_name_the_target_refuses_fails_alone(base: Path, pool: list[LocalNode]) -> None:
    owner = pool[0]
    src = base / "s"
    made = _awkward(src)
    summary: dict[str, Any] = owner.cli("backup", *SHARDS, str(src))

    backing, mp = base / "backing", base / "mp-refusing"
    backing.mkdir()
    argv = [sys.executable, "-m", "tests.integration.passthrough", str(backing), str(mp)]
    mounted = Mounted(argv, mp, base / "refusing.log")
    try:
        out = owner.cli("restore", summary["snapshot_id"], "--target", str(mp), check=False)
    finally:
        assert mounted.stop(None) == 0, mounted.stderr()
    assert out.returncode == 3, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    restored = json.loads(out.stdout.strip().splitlines()[-1])
    assert restored["names_refused"] == 1
    assert restored["files_restored"] == len(made) - 1
    refused = [e for e in restored["errors"] if "cannot hold this name" in e]
    assert len(refused) == 1
    assert refused[0].startswith(str(src / "a:b").lstrip("/") + ": not restored")

    # Everything else, in the backing directory the mount wrote to.
    root = backing / src.relative_to("/")
    for rel, body in made.items():
        if rel.name == "a:b":
            assert not (root / "a:b").exists()
            continue
        assert read_beneath(root, rel) == body, rel
    left = [f for _, _, files, _ in os.fwalk(backing) for f in files]
    assert len(left) == len(made) - 1
    assert not [f for f in left if f.endswith(".partial") or f.startswith(".peerbak-")]
