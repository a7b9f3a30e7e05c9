"""FUSE (libfuse 2 or 3, through mfusepy's ctypes binding): a
:class:`~peerbak.ports.browse.Browsable` served to the kernel as a read-only file system.

libfuse calls back from threads of its own; the view is asynchronous and lives in an
event loop on another thread (the one that owns the repository), so each callback hands
that loop a coroutine and waits for its answer. Importing this module on a machine
without libfuse raises :class:`~peerbak.core.errors.Unavailable`, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from peerbak.core.errors import InputError, PeerbakError, StorageError, Unavailable
from peerbak.ports.browse import Browsable, Stat

try:
    import mfusepy
except ImportError:
    raise Unavailable("mounting needs the mfusepy package (pip install mfusepy)") from None
except OSError as exc:  # mfusepy looks for libfuse when imported
    raise Unavailable(
        f"mounting needs libfuse ({exc}): apt-get install fuse3 (or fuse), "
        "dnf install fuse3, or your system's equivalent"
    ) from None

T = TypeVar("T")

#: How names travel between the kernel and Python: bytes that are not UTF-8 survive.
ENCODING: Final = "utf-8"
ERRORS: Final = "surrogateescape"


def _raw(path: str) -> bytes:
    return path.encode(ENCODING, ERRORS)


def _text(name: bytes) -> str:
    return name.decode(ENCODING, ERRORS)


def attributes(st: Stat) -> dict[str, int]:
    """A :class:`Stat` as libfuse's ``struct stat`` fields (times in nanoseconds)."""
    return {
        "st_mode": st.mode,
        "st_size": st.size,
        "st_nlink": st.nlink,
        "st_uid": st.uid,
        "st_gid": st.gid,
        "st_rdev": st.rdev,
        "st_blocks": (st.size + 511) // 512,
        "st_mtime": st.mtime_ns,
        "st_atime": st.mtime_ns,
        "st_ctime": st.mtime_ns,
    }


def _refuse(*_: object) -> int:
    raise mfusepy.FuseOSError(errno.EROFS)


class SnapshotFS(mfusepy.Operations):  # type: ignore[misc]
    """The kernel's questions, answered from ``view`` in ``loop``. Failures of the pool
    (not enough shards, damaged bytes) are EIO, and said through ``warn``."""

    use_ns = True  # times in nanoseconds, as the snapshot keeps them

    def __init__(
        self, view: Browsable, loop: asyncio.AbstractEventLoop, warn: Callable[[str], None]
    ) -> None:
        self.view = view
        self.loop = loop
        self.warn = warn

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except OSError:
            raise  # FileNotFoundError and its kind: their errno is the answer
        except PeerbakError as exc:
            self.warn(str(exc))
            raise mfusepy.FuseOSError(errno.EIO) from None
        except Exception as exc:
            self.warn(f"internal error: {type(exc).__name__}: {exc}")
            raise mfusepy.FuseOSError(errno.EIO) from None

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        return attributes(self._call(self.view.stat(_raw(path))))

    def readdir(self, path: str, fh: int) -> list[str | tuple[str, dict[str, int], int]]:
        listed = self._call(self.view.listdir(_raw(path)))
        return [".", "..", *((_text(n), {"st_mode": st.mode}, 0) for n, st in listed)]

    def readlink(self, path: str) -> str:
        st = self._call(self.view.stat(_raw(path)))
        if not st.target:
            raise mfusepy.FuseOSError(errno.EINVAL)
        return _text(st.target)

    def open(self, path: str, flags: int) -> int:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise mfusepy.FuseOSError(errno.EROFS)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self._call(self.view.read(_raw(path), offset, size))

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # Read-only: the mount says so (the kernel refuses first), and so does every writer.
    chmod = chown = create = link = mkdir = mknod = rename = _refuse
    rmdir = symlink = truncate = unlink = utimens = write = _refuse


def check_mountpoint(mountpoint: str) -> None:
    """Refuse what FUSE would refuse less clearly: no FUSE device, no directory there."""
    if not os.path.exists("/dev/fuse"):
        raise Unavailable("mounting needs /dev/fuse (modprobe fuse; in a container, --device)")
    if not os.path.isdir(mountpoint):
        raise InputError(f"{mountpoint}: not a directory to mount on")
    if os.path.ismount(mountpoint):
        raise InputError(f"{mountpoint}: something is mounted there already")
    if os.listdir(mountpoint):
        raise InputError(f"{mountpoint}: not empty (mount on an empty directory)")


def serve(
    ops: mfusepy.Operations,
    mountpoint: str,
    *,
    read_only: bool = True,
    allow_other: bool = False,
    name: str = "peerbak",
) -> None:
    """Mount ``ops`` at ``mountpoint`` and answer the kernel until it is unmounted
    (``fusermount -u``) or the process gets SIGINT, SIGTERM or SIGHUP (libfuse then
    unmounts it); runs in the main thread, which must not block those signals."""
    check_mountpoint(mountpoint)
    options: dict[str, Any] = {
        "foreground": True,
        "fsname": name,
        "subtype": name,
        "default_permissions": True,  # the kernel checks each file's mode and owner
    }
    if read_only:
        options["ro"] = True
    if allow_other:
        options["allow_other"] = True
    try:
        mfusepy.FUSE(ops, mountpoint, encoding=ENCODING, errors=ERRORS, **options)
    except RuntimeError as exc:  # libfuse refused to mount, and said why on stderr
        raise StorageError(f"cannot mount at {mountpoint} (libfuse error {exc})") from None
