"""The systemd unit that runs ``peerbak daemon``: its text, from what the caller found.

Pure: the interpreter, the home and the account come in as arguments; the text goes out.
``peerbak install-service`` writes it; ``--print`` shows it.

The daemon speaks ``sd_notify`` itself (READY, STOPPING, WATCHDOG), so the unit is
``Type=notify``. It pings the watchdog every half of ``$WATCHDOG_USEC``, which systemd
sets from ``WatchdogSec=``. The sandbox leaves the whole file system readable (a backup
reads the user's files) and only the node's home writable.

Quoting follows systemd.syntax(7): a word with anything but plain path characters is
double-quoted with ``\\`` and ``"`` escaped, ``%`` (specifiers) is doubled everywhere and
``$`` (variable expansion) is doubled in ``ExecStart=``. Control characters cannot be
written safely and are refused.
"""

from __future__ import annotations

import re
from typing import Final

from peerbak.core.errors import InputError

UNIT_NAME: Final = "peerbak.service"

#: The daemon pings every half of this, so a loop stalled for a full minute is restarted.
WATCHDOG_SEC: Final = 60
#: Above the daemon's STOP_GRACE (10 s for sessions in flight) plus closing links and ledger.
TIMEOUT_STOP_SEC: Final = 30
#: The ledger is verified before READY: a large one on an SD card takes its time.
TIMEOUT_START_SEC: Final = 300
RESTART_SEC: Final = 10

_PLAIN = re.compile(r"[A-Za-z0-9_./:=@+,-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote(word: str, *, exec_line: bool = False) -> str:
    """``word`` as one systemd word: bare when plain, else double-quoted and escaped."""
    if _CONTROL.search(word):
        raise InputError(f"{word!r} holds a control character: systemd cannot be given it")
    text = word if _PLAIN.fullmatch(word) else '"' + re.sub(r'(["\\])', r"\\\1", word) + '"'
    text = text.replace("%", "%%")
    return text.replace("$", "$$") if exec_line else text


def _absolute(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise InputError(f"the {what} must be an absolute path, not {path!r}")
    return path


def unit_text(python: str, home: str, *, user_mode: bool, user: str = "", group: str = "") -> str:
    """``peerbak.service`` running ``python -m peerbak --home HOME daemon``.

    ``python`` is the interpreter as invoked (a venv's ``bin/python``, not what it links
    to, so the venv's packages are the ones found). System mode runs as ``user`` and
    ``group`` (the home's owner: the only account that can open it); a user unit runs as
    whoever owns the user manager and gets ``PrivateUsers=yes``, without which systemd 252
    cannot build the sandbox there and silently runs without it.
    """
    argv = [_absolute(python, "interpreter"), "-m", "peerbak", "--home", _absolute(home, "home")]
    argv.append("daemon")
    exec_start = " ".join(quote(word, exec_line=True) for word in argv)
    lines = ["[Unit]", "Description=peerbak node (backups to a pool of friends)"]
    if not user_mode:  # a user manager has no network-online.target of its own
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += ["", "[Service]", "Type=notify", "NotifyAccess=main"]
    if not user_mode:
        if not (user and group):
            raise InputError("a system service needs the account it runs as")
        lines += [f"User={quote(user)}", f"Group={quote(group)}"]
    lines += [
        f"ExecStart={exec_start}",
        "SyslogIdentifier=peerbak",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        f"WatchdogSec={WATCHDOG_SEC}",
        f"TimeoutStartSec={TIMEOUT_START_SEC}",
        f"TimeoutStopSec={TIMEOUT_STOP_SEC}",
        "UMask=0077",
        "",
        "# Everything readable (backups read your files), only the node's home writable.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        f"ReadWritePaths={quote(home)}",
        "PrivateTmp=yes",
    ]
    if user_mode:
        lines.append("PrivateUsers=yes")
    lines += [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "# AF_NETLINK: the LAN discovery lists the network interfaces through it.",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user_mode else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"
