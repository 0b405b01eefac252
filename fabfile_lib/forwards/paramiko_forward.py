"""Local port forwarding over a Paramiko transport: ``forward_local``, shaped like Fabric's.

Fabric's stock ``Connection.forward_local`` binds inside its thread (a busy port does not fail the
``with``), dies for good on the first failed channel open, listens on IPv4 only, and copies 1 KiB at a
time without half-close. This one binds before the body runs, keeps serving when one client's channel
cannot be opened, listens on 127.0.0.1 and ::1 only (never on other interfaces), copies in 32 KiB reads,
and passes EOF on in each direction separately.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .forward import Forward, bind_loopback

if TYPE_CHECKING:
    import paramiko

CHUNK = 32 * 1024

Log = Callable[[str], None]


def _pump(client: socket.socket, chan: paramiko.Channel, stop: socket.socket) -> None:
    """Copy both ways until both sides have sent EOF, or ``stop`` is readable (the forward closes); pass
    each EOF on as a half-close."""
    import paramiko
    open_in = {client: True, chan: True}
    try:
        while any(open_in.values()):
            readable, _, _ = select.select([s for s, o in open_in.items() if o] + [stop], [], [])
            if stop in readable:
                return
            for src in readable:
                dst = chan if src is client else client
                data = src.recv(CHUNK)
                if data:
                    dst.sendall(data)
                    continue
                open_in[src] = False
                if dst is chan:
                    chan.shutdown_write()
                else:
                    with contextlib.suppress(OSError):
                        client.shutdown(socket.SHUT_WR)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        chan.close()
        client.close()


class Heartbeat:
    """OpenSSH's ServerAliveInterval/CountMax for a Paramiko transport: a ``keepalive@openssh.com`` request
    every ``interval`` seconds, and the connection counts as dead once ``count`` intervals pass without an
    answer. (Paramiko's own keepalive sends but never listens: a dead hop would go unnoticed until TCP gives
    up, many minutes later.)"""

    def __init__(self, transport: paramiko.Transport, interval: float, count: int = 3):
        self.transport, self.interval, self.count = transport, interval, count
        self.answered = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and self.transport.is_active():
            # Blocks until an answer comes (sshd refuses this request: a refusal is an answer too) or the
            # transport closes; alive() below is the timeout.
            self.transport.global_request("keepalive@openssh.com", wait=True)
            if self.transport.is_active():
                self.answered = time.monotonic()

    def alive(self) -> bool:
        if not self.transport.is_active():
            return False
        if time.monotonic() - self.answered > self.interval * self.count + min(1.0, self.interval):  # slack
            self.transport.close()  # dead: end it, so everything waiting on it fails now
            return False
        return True


@contextlib.contextmanager
def forward_local(
    transport: paramiko.Transport,
    remote_host: str,
    remote_port: int,
    local_port: int = 0,
    *,
    open_timeout: float = 15,
    log: Log | None = None,
) -> Iterator[Forward]:
    """Forward 127.0.0.1/::1 ``local_port`` to ``remote_host:remote_port`` as seen from ``transport``'s
    server, for the duration of the ``with`` body."""
    import paramiko

    listeners = bind_loopback(local_port)
    fwd = Forward(listeners[0].getsockname()[1], f"{remote_host}:{remote_port}", alive=transport.is_active)
    # Closing ``stopping`` makes ``stop`` readable in every select of the forward: its threads end at once,
    # rather than at their next timeout.
    stop, stopping = socket.socketpair()
    workers: list[threading.Thread] = []

    def serve(client: socket.socket) -> None:
        try:
            chan = transport.open_channel("direct-tcpip", (remote_host, remote_port),
                                          client.getpeername()[:2], timeout=open_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            msg = f"could not open a channel to {remote_host}:{remote_port}: {exc}"
            fwd.errors.append(msg)
            if log:
                log(msg)
            client.close()
            return
        _pump(client, chan, stop)

    def accept_loop() -> None:
        while True:
            ready, _, _ = select.select([*listeners, stop], [], [])
            if stop in ready:
                return
            for sock in ready:
                try:
                    client, _ = sock.accept()
                except (BlockingIOError, OSError):
                    continue
                client.setblocking(True)
                fwd.connections += 1
                worker = threading.Thread(target=serve, args=(client,), daemon=True)
                worker.start()
                workers.append(worker)

    acceptor = threading.Thread(target=accept_loop, name=f"forward-{fwd.port}", daemon=True)
    acceptor.start()
    try:
        yield fwd
    finally:
        stopping.close()
        acceptor.join(timeout=2)
        for sock in listeners:
            sock.close()
        for worker in workers:
            worker.join(timeout=2)
        if not acceptor.is_alive() and not any(w.is_alive() for w in workers):
            stop.close()  # else a thread still selects on it: it goes with the last of them
