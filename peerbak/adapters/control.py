"""The CLI's side of the control socket: one JSON request, one JSON reply.

The socket is ``run/daemon.sock`` in the node home, created 0600 by the daemon: only
the user running the node may control it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Final

from peerbak.core import errors
from peerbak.core.errors import PeerbakError, PeerUnavailable

TIMEOUT: Final = 120.0
MAX_REPLY: Final = 16 << 20


class DaemonNotRunning(PeerUnavailable):
    """No daemon answers on the node's control socket."""

    code = "no-daemon"


def call(path: Path, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send ``request`` to the daemon; its failures come back as the same error classes."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n") and len(reply) < MAX_REPLY:
                piece = sock.recv(1 << 16)
                if not piece:
                    break
                reply += piece
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(
            "the node's daemon is not running: start it with `peerbak daemon`"
        ) from None
    except TimeoutError:
        raise PeerUnavailable(f"the daemon did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise PeerUnavailable(f"cannot talk to the daemon: {exc}") from None
    try:
        answer = json.loads(reply)
    except ValueError:
        raise PeerUnavailable("the daemon closed the control connection") from None
    if not isinstance(answer, dict):
        raise PeerUnavailable("the daemon answered nonsense")
    if not answer.get("ok"):
        cls = getattr(errors, str(answer.get("error")), PeerbakError)
        if not (isinstance(cls, type) and issubclass(cls, PeerbakError)):
            cls = PeerbakError
        raise cls(str(answer.get("message", "the daemon refused")))
    return answer
