"""Small file-system helpers shared by the adapters that own files (home, store)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from peerbak.core.errors import StorageError


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def storage_error(exc: OSError, what: str) -> StorageError:
    """One clear line for a failed file operation; a full disk says so."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"{what}: the disk is full ({exc.strerror})")
    return StorageError(f"{what}: {exc.strerror or exc}")


def write_private(path: Path, data: bytes) -> None:
    """Atomically and 0600 from creation: temp file, fsync, rename, fsync directory."""
    write_atomic(path, data, 0o600)


def write_private_once(path: Path, data: bytes) -> bool:
    """Like :func:`write_private`, but only if ``path`` does not exist yet: the file is
    linked into place whole, so of two writers racing one wins and the other learns it
    (False) and reads what the winner wrote."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)
    return True


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Atomically with exactly ``mode`` (whatever the umask): no reader ever sees a
    half-written file under ``path``, and a crash leaves the old one or the new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # a full disk mid-write leaves no temp file behind either
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
