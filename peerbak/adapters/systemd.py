"""systemd on this machine: where unit files go, who owns a home, and ``systemctl``.

``systemctl`` is found on ``$PATH`` and run as a subprocess, so what peerbak asks of systemd
is exactly the command lines it runs (and a test can put a recording ``systemctl`` first).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Final

from peerbak.adapters.files import storage_error, write_atomic
from peerbak.core.errors import ServiceError

SYSTEM_UNIT_DIR: Final = Path("/etc/systemd/system")
LINGER_DIR: Final = Path("/var/lib/systemd/linger")
SYSTEMCTL_TIMEOUT: Final = 120.0


def unit_dir(user_mode: bool) -> Path:
    """Where the administrator's units live, or this user's (``$XDG_CONFIG_HOME``)."""
    if not user_mode:
        return SYSTEM_UNIT_DIR
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def is_root() -> bool:
    return os.geteuid() == 0


def owner_of(path: Path) -> tuple[str, str]:
    """The account owning ``path`` and its primary group, by name (by number when the
    account database does not know them, as in some containers)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise storage_error(exc, f"cannot read {path}") from None
    try:
        entry = pwd.getpwuid(st.st_uid)
    except KeyError:
        return str(st.st_uid), str(st.st_gid)
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return entry.pw_name, group


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def lingering(user: str) -> bool:
    """Whether ``user``'s services run without a login (``loginctl enable-linger``)."""
    return (LINGER_DIR / user).exists()


def write_unit(path: Path, text: str) -> None:
    """The unit file, 0644 (systemd and ``systemctl cat`` read it), atomically."""
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_atomic(path, text.encode(), 0o644)
    except OSError as exc:
        raise storage_error(exc, f"cannot write {path}") from None


def remove_unit(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        raise storage_error(exc, f"cannot remove {path}") from None


def systemctl(user_mode: bool, *args: str, unit_path: Path) -> None:
    """Run ``systemctl [--user] ARGS``; a missing or failing one is a :class:`ServiceError`
    naming the command, what it said, and ``unit_path`` (the file it is about)."""
    argv = ["systemctl", *(["--user"] if user_mode else []), *args]
    command = " ".join(argv)
    program = shutil.which("systemctl")
    if program is None:
        raise ServiceError(
            f"systemctl is not on PATH, so `{command}` could not run (is this a systemd "
            f"machine?); the unit file is {unit_path}"
        )
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program with our own arguments
            [program, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{command}` failed: {exc}; the unit file is {unit_path}") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split()) or "no message"
        raise ServiceError(
            f"`{command}` failed (exit {done.returncode}): {said}; the unit file is {unit_path}"
        )
