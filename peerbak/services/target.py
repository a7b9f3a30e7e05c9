"""A restore target, written only through directory file descriptors.

A target may already hold entries that someone else planted: a symlink where the
snapshot has a directory (``docs -> /etc``), a symlink or a FIFO where it has a file. A
path string would follow them out of the target. So every path is walked from the
target's own descriptor one name at a time (``openat`` with ``O_NOFOLLOW`` and
``O_DIRECTORY``), and whatever stands where the snapshot has something else is removed
and replaced, never followed, as restic does. Modes, owners and times are set through
a descriptor of the restored entry, or without following; the temporary names and the
final rename are relative to the parent's descriptor too.

Paths here are relative to the target, as bytes: ``b"photos/2024/a.jpg"``. A name that
is empty, ``.``, ``..`` or holds a ``/`` or NUL is refused: a snapshot cannot name a
place outside its target either.

What this does not stop: someone who can write into the target while the restore runs
can move a directory that is already open elsewhere, and what is then written into it
follows it. Restore into a directory that only you can write to.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from peerbak.core.errors import IntegrityError, StorageError

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: What opening a name with O_NOFOLLOW and O_DIRECTORY says when a non-directory is there.
_NOT_A_DIR: Final = (errno.ELOOP, errno.ENOTDIR)
#: Directory descriptors kept open: a restore of a deep tree touches a few at a time.
DIR_CACHE: Final = 256


def check_name(name: bytes) -> bytes:
    """One path component, or IntegrityError: a tree entry may name nothing else."""
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise IntegrityError(
            f"a tree entry is named {name!r}, which is no file name",
            obj="tree",
            check="name",
        )
    return name


class TargetDir:
    """The restore target's root descriptor and a few of its directories, opened safely.

    Thread-safe: restore writes packs from several threads. Every method that returns a
    descriptor returns one of the caller's own, to be closed by the caller.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # The target itself is the user's choice: a link the user names is followed.
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root = root
        self._dirs: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()
            if self._root >= 0:
                os.close(self._root)
                self._root = -1

    # -- directories ---------------------------------------------------------------------

    def make_dir(self, rel: bytes) -> None:
        """Make ``rel`` and every directory above it that is missing (mode 0700 for now)."""
        with self._lock:
            self._dir(rel)

    @contextmanager
    def parent(self, rel: bytes) -> Iterator[tuple[int, bytes]]:
        """(a descriptor of ``rel``'s directory, made if missing; ``rel``'s own name)."""
        head, _, name = rel.rpartition(b"/")
        with self._lock:
            fd = os.dup(self._dir(head))
        try:
            yield fd, check_name(name)
        finally:
            os.close(fd)

    def _dir(self, rel: bytes) -> int:
        """The cached descriptor of directory ``rel`` (caller holds the lock)."""
        if not rel:
            return self._root
        fd = self._dirs.get(rel)
        if fd is not None:
            self._dirs.move_to_end(rel)
            return fd
        # Start from the deepest ancestor already open.
        names = rel.split(b"/")
        depth, fd = 0, self._root
        for i in range(len(names) - 1, 0, -1):
            cached = self._dirs.get(b"/".join(names[:i]))
            if cached is not None:
                depth, fd = i, cached
                break
        for i in range(depth, len(names)):
            fd = self._enter(fd, check_name(names[i]))
            self._remember(b"/".join(names[: i + 1]), fd)
        return fd

    def _remember(self, rel: bytes, fd: int) -> None:
        self._dirs[rel] = fd
        while len(self._dirs) > DIR_CACHE:
            _, old = self._dirs.popitem(last=False)
            os.close(old)

    def _enter(self, parent: int, name: bytes) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in _NOT_A_DIR:
                raise
            remove(parent, name)  # a link, file or device where a directory belongs
        with suppress(FileExistsError):  # another thread made it meanwhile
            os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)

    # -- files -------------------------------------------------------------------------------

    def open_file(self, rel: bytes) -> int:
        """A descriptor for writing regular file ``rel``, created (0600) if missing.

        Whatever else stands at that name (a symlink, a FIFO, a device, a directory) is
        removed first: opening a FIFO would block and a device could do anything."""
        with self.parent(rel) as (parent, name):
            return open_regular(parent, name)

    def open_read(self, rel: bytes) -> int:
        """A descriptor for reading the regular file ``rel`` back (never through a link)."""
        with self.parent(rel) as (parent, name):
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)

    def replace(self, src: bytes, dst: bytes) -> None:
        """Rename ``src`` over ``dst``, both in the same directory; a directory at ``dst``
        (the snapshot has a file there) is removed first."""
        with self.parent(dst) as (parent, name):
            src_name = check_name(src.rpartition(b"/")[2])
            try:
                os.replace(src_name, name, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as exc:
                if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise
                remove(parent, name)
                os.replace(src_name, name, src_dir_fd=parent, dst_dir_fd=parent)

    def remove(self, rel: bytes) -> None:
        """Remove whatever stands at ``rel`` (a temporary file of an entry left out)."""
        with self.parent(rel) as (parent, name):
            remove(parent, name, missing_ok=True)

    def link(self, existing: bytes, new: bytes) -> None:
        """Hard link ``new`` to the restored file ``existing``, replacing what is there."""
        with self.parent(existing) as (src_parent, src_name), self.parent(new) as (parent, name):
            remove(parent, name, missing_ok=True)
            os.link(src_name, name, src_dir_fd=src_parent, dst_dir_fd=parent, follow_symlinks=False)

    def symlink(self, rel: bytes, target: bytes, uid: int, gid: int, mtime_ns: int) -> None:
        with self.parent(rel) as (parent, name):
            remove(parent, name, missing_ok=True)
            os.symlink(target, name, dir_fd=parent)
            if uid >= 0:
                with suppress(OSError):
                    os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            with suppress(NotImplementedError, OSError):
                os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)

    def mknod(
        self, rel: bytes, kind: int, mode: int, rdev: int, uid: int, gid: int, mtime_ns: int
    ) -> None:
        """A FIFO or device node, its attributes set through an ``O_PATH`` descriptor."""
        with self.parent(rel) as (parent, name):
            remove(parent, name, missing_ok=True)
            os.mknod(name, mode | kind, rdev, dir_fd=parent)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                if stat.S_IFMT(os.fstat(fd).st_mode) != kind:
                    raise StorageError(f"{os.fsdecode(rel)} was replaced while restoring it")
                # fchmod refuses O_PATH descriptors; the /proc link reaches this inode only.
                via = f"/proc/self/fd/{fd}"
                if uid >= 0:
                    with suppress(OSError):
                        os.chown(via, uid, gid)
                os.chmod(via, mode)
                os.utime(via, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)

    def open_dir(self, rel: bytes) -> int:
        """A descriptor of directory ``rel`` (made if missing), to set its attributes."""
        with self._lock:
            return os.dup(self._dir(rel))


def open_regular(parent: int, name: bytes) -> int:
    """Open ``name`` in ``parent`` for writing, as a regular file and nothing else."""
    for _ in range(3):
        with suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                remove(parent, name)
        try:
            fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        except OSError as exc:
            # ELOOP: a symlink; ENXIO: a FIFO; EISDIR: a directory, each planted meanwhile.
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                continue
            raise
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    raise StorageError(f"{os.fsdecode(name)}: something keeps replacing it while it is restored")


def remove(parent: int, name: bytes, *, missing_ok: bool = False) -> None:
    """Remove whatever is at ``name`` in ``parent``, a whole directory tree included,
    without following a link anywhere (``shutil.rmtree`` walks by descriptor)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(os.fsdecode(name), dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)
