"""A running forward and its local end: listeners on loopback only (127.0.0.1 and, where the machine has
it, ::1), never on other interfaces, and the checks that a port is free before anything is submitted.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import LabError


@dataclass
class Forward:
    """A running forward: ``port`` is the local port (useful when 0 was asked for)."""

    port: int
    remote: str  # what the far end connects to: host:port, or a Unix socket's path
    alive: Callable[[], bool] = lambda: True  # False once the connection carrying it has ended
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    # How many connections to the far end have been refused so far: Jupyter gone, its job may have ended.
    refusals: Callable[[], int] | None = None
    # Another forward on the same connection: (far end, local port) -> a context holding it.
    add: Callable[[str, int], contextlib.AbstractContextManager[Forward]] | None = None

    def refused(self) -> int:
        return self.refusals() if self.refusals else len(self.errors)


def _listen(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: SO_REUSEADDR there would let another socket steal it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    sock.setblocking(False)
    return sock


def bind_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1 and, where the machine has IPv6, ::1 -- the same port on both."""
    try:
        v4 = _listen(socket.AF_INET, "127.0.0.1", port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise LabError(f"local port {port} is already in use: choose another lab.local_port, "
                           "or 0 for any free port.") from None
        raise LabError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    socks = [v4]
    with contextlib.suppress(OSError):
        socks.append(_listen(socket.AF_INET6, "::1", v4.getsockname()[1]))
    return socks


def check_port_free(port: int) -> None:
    """Fail early, before anything is submitted, if a fixed local port is taken."""
    if port:
        for sock in bind_loopback(port):
            sock.close()


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 right now (OpenSSH binds it a moment later)."""
    socks = bind_loopback(0)
    port = socks[0].getsockname()[1]
    for sock in socks:
        sock.close()
    return port


def port_taken(port: int) -> bool:
    try:
        check_port_free(port)
    except LabError:
        return True
    return False
