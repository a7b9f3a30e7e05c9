"""Generated trees for the demo, the benchmarks and the tests, and a byte-for-byte check.

A sample tree is reproducible from its seed and has what real homes have: text that
compresses, photos that do not, duplicates, empty files, deep and unicode names,
symlinks, hard links, executable bits and old mtimes.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path
from typing import Final

_WORDS: Final = (
    "the pool keeps every shard of every pack on a friend's disk and a lost friend "
    "costs nothing while k of n answer photos music notes code invoices tax holiday "
    "garden bicycle kitchen winter summer river mountain letter family birthday"
)
_NAMES: Final = ["photos", "notes", "code", "Ünïcödé", "日本語", "music", "tax 2019", "src"]


def _text(rnd: random.Random, size: int) -> bytes:
    words = rnd.choices(_WORDS.split(), k=max(1, size // 6))
    return " ".join(words).encode()[:size]


def make_tree(  # noqa: PLR0912, PLR0915 - one kind of file after another
    root: Path, total: int, *, files: int = 0, seed: int = 1, big: int = 0
) -> dict[str, int]:
    """Write a tree of about ``total`` bytes (and at least ``files`` files) under ``root``.

    ``big`` adds one incompressible file of that size. Returns counts by kind.
    """
    rnd = random.Random(seed)  # noqa: S311 - reproducible sample data, not secrets
    root.mkdir(parents=True, exist_ok=True)
    counts = {"files": 0, "bytes": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "empty": 0}
    dirs = [root]
    for i in range(max(8, files // 40)):
        parent = rnd.choice(dirs)
        d = parent / f"{rnd.choice(_NAMES)}-{i}"
        d.mkdir(exist_ok=True)
        dirs.append(d)
        counts["dirs"] += 1
    deep = root
    for level in range(12):
        deep = deep / f"level-{level}"
    deep.mkdir(parents=True)
    dirs.append(deep)
    (root / "empty dir").mkdir()
    written = 0
    earlier: list[bytes] = []
    n = 0
    old = 946_684_800  # 2000-01-01
    while written < total - big or n < files:
        d = rnd.choice(dirs)
        kind = rnd.random()
        if kind < 0.05:
            data = b""
            counts["empty"] += 1
        elif kind < 0.12 and earlier:
            data = rnd.choice(earlier)
        elif kind < 0.55:
            data = _text(rnd, int(rnd.expovariate(1 / 12_000)) + 1)
        elif kind < 0.97:
            data = rnd.randbytes(int(rnd.expovariate(1 / 60_000)) + 1)
        else:
            data = rnd.randbytes(rnd.randint(1 << 20, 6 << 20))
        if 10_000 < len(data) < (1 << 20) and len(earlier) < 64:
            earlier.append(data)
        name = f"{rnd.choice(['file', 'IMG', 'résumé', 'données', 'ファイル'])}-{n}"
        path = d / (name + rnd.choice([".txt", ".jpg", ".json", "", ".tar"]))
        path.write_bytes(data)
        if rnd.random() < 0.03:
            path.chmod(0o755)
        if rnd.random() < 0.2:
            when = old + rnd.randint(0, 20 * 365 * 86400)
            os.utime(path, (when, when))
        written += len(data)
        n += 1
    if big:
        big_path = root / "video.mkv"
        with big_path.open("wb") as f:
            left = big
            while left:
                piece = min(left, 8 << 20)
                f.write(rnd.randbytes(piece))
                left -= piece
        written += big
        n += 1
    files_made = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for i in range(max(2, n // 500)):
        src = rnd.choice(files_made)
        link = src.with_name(src.name + f".link{i}")
        os.symlink(src.name, link)
        counts["symlinks"] += 1
        hard = rnd.choice(dirs) / f"hardlink-{i}"
        if not hard.exists():
            os.link(src, hard)
            counts["hardlinks"] += 1
    os.symlink("/nonexistent/target", root / "dangling")
    counts["symlinks"] += 1
    counts["files"], counts["bytes"] = n, written
    return counts


def describe(root: Path) -> dict[str, tuple[object, ...]]:
    """Relative path → (type, mode, size, mtime_ns, digest or link target, link group).

    Two trees restored correctly describe equal, hard links included (files sharing
    an inode are numbered in order of first appearance).
    """
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[tuple[int, int], int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", mode, info.st_mtime_ns)
            elif stat.S_ISREG(info.st_mode):
                group = 0
                if info.st_nlink > 1:
                    key = (info.st_dev, info.st_ino)
                    group = inodes.setdefault(key, len(inodes) + 1)
                digest = hashlib.blake2b(path.read_bytes()).hexdigest()
                out[rel] = ("file", mode, info.st_size, info.st_mtime_ns, digest, group)
            else:
                out[rel] = ("special", stat.S_IFMT(info.st_mode), mode)
    return out


def differences(expected: Path, actual: Path, limit: int = 10) -> list[str]:
    """What differs between two trees (empty when identical)."""
    a, b = describe(expected), describe(actual)
    diffs = [f"missing: {p}" for p in sorted(a.keys() - b.keys())]
    diffs += [f"unexpected: {p}" for p in sorted(b.keys() - a.keys())]
    diffs += [
        f"differs: {p}: {a[p]} != {b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]
    ]
    return diffs[:limit]
