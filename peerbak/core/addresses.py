"""``host:port`` text, one way everywhere: the configuration, the dialler and the node.

An IPv6 host is written in brackets (``[::1]:7420``), as in URLs, so the port is always
what follows the last colon. Parsing is syntax only: whether the host is a valid name or
address is the caller's question (the configuration asks it; a dialler lets the resolver
answer). Pure: no resolver, no sockets.
"""

from __future__ import annotations

from peerbak.core.errors import InputError, PeerbakError

__all__ = ["join_host_port", "split_host_port"]


def split_host_port(text: str, error: type[PeerbakError] = InputError) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → ``(host, port)``, the host without brackets.

    The port is 1..65535 in ASCII digits and the host is not empty; otherwise ``error``
    (the caller's: a user's typo is an InputError, a peer's a RemoteProtocolError). An
    unbracketed host with colons is read up to the last one (``::1:80`` is ``::1`` port 80).
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise error(f"not a host:port address: {text!r}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise error(f"not a host:port address: {text!r}")
    return host, number


def join_host_port(host: str, port: int) -> str:
    """The inverse of :func:`split_host_port`: brackets around a host with colons (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
