"""A pass-through FUSE file system that refuses one kind of name, as vfat refuses ``:``:
a restore target whose file system cannot hold every name a snapshot has.

``python -m tests.integration.passthrough BACKING MOUNTPOINT`` serves BACKING at
MOUNTPOINT until unmounted; creating anything whose name holds ``:`` fails with EINVAL.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import mfusepy

from peerbak.adapters.fuse import ENCODING, ERRORS, serve

REFUSED = b":"


class Refusing(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: bytes) -> None:
        self.backing = backing

    def _real(self, path: str) -> bytes:
        return self.backing + path.encode(ENCODING, ERRORS)

    def _new(self, path: str) -> bytes:
        """Where a new entry goes; EINVAL for a name this file system cannot hold."""
        if REFUSED in path.encode(ENCODING, ERRORS).rpartition(b"/")[2]:
            raise mfusepy.FuseOSError(errno.EINVAL)
        return self._real(path)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
        return {
            "st_mode": st.st_mode,
            "st_size": st.st_size,
            "st_nlink": st.st_nlink,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_rdev": st.st_rdev,
            "st_blocks": st.st_blocks,
            "st_atime": st.st_atime_ns,
            "st_mtime": st.st_mtime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        names = os.listdir(self._real(path))
        return [".", "..", *(n.decode(ENCODING, ERRORS) for n in names)]

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path)).decode(ENCODING, ERRORS)

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._new(path), mode)
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        os.mknod(self._new(path), mode, dev)
        return 0

    def symlink(self, path: str, target: str) -> int:
        os.symlink(target.encode(ENCODING, ERRORS), self._new(path))
        return 0

    def link(self, path: str, existing: str) -> int:
        os.link(self._real(existing), self._new(path), follow_symlinks=False)
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._new(new))
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path), follow_symlinks=False)
        else:
            os.utime(self._real(path), ns=times, follow_symlinks=False)
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._real(path), length)
        return 0

    def create(self, path: str, mode: int, flags: int) -> int:
        return os.open(self._new(path), flags | os.O_CREAT, mode)

    def open(self, path: str, flags: int) -> int:
        return os.open(self._real(path), flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        os.fsync(fh)
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree")
        return {k: getattr(st, k) for k in keys} | {"f_namemax": 255}


def main() -> None:
    backing, mountpoint = sys.argv[1:3]
    serve(Refusing(os.fsencode(backing)), mountpoint, read_only=False, name="refusing")


if __name__ == "__main__":
    main()
