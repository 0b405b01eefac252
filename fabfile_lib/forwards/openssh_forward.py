"""Forwards and streams carried by OpenSSH: as fast as ``ssh -L``, because they are ``ssh -L``.

- To the login node's side (``login`` and ``reverse`` modes): a ``-L`` added to the cluster's master
  (``ssh -O forward``) and removed at the end (``-O cancel``). No new connection at all.
- To a compute node (``compute`` mode): a node link -- one ``ssh -N -M`` to the node whose ProxyCommand
  is ``ssh -W`` over the master, so the node's own host key is checked and no hop before it authenticates
  again -- and the forward added to it with ``-O forward``.
- A stream (``ssh -W host:port``) over the same paths, for probing Jupyter without a local port; to a
  Unix socket, whose path ``-W`` cannot take, a ``-L`` from a Unix socket of ours in a private directory.

Every listener is on ``localhost`` (127.0.0.1 and ::1), never on other interfaces; ``ExitOnForwardFailure``
makes a port that cannot be bound an error, not a forward that silently is not there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

from .. import openssh, paths, procs
from ..errors import ConnectError, LabError
from ..master import Master
from .forward import Forward, bind_loopback, free_port, port_taken


def _specs(port: int, far: str) -> list[str]:
    """``-L`` specs for 127.0.0.1 and, where the machine has it, ::1 -- each address named, so that with
    ExitOnForwardFailure a port someone else holds on either is a failure. (``localhost:PORT`` succeeds
    when only one of the two binds, and a local user who holds the other would get the browser's token.)
    ``far`` is ``host:port`` (``[v6]:port``) or the path of a Unix socket on the far side."""
    return [f"{bind}:{port}:{far}" for bind in _loopbacks()]


@functools.cache
def _loopbacks() -> tuple[str, ...]:
    socks = bind_loopback(0)
    for sock in socks:
        sock.close()
    return ("127.0.0.1", "[::1]")[:len(socks)]


def _added(forward: Callable[..., None], far: str, local_port: int) -> tuple[int, list[str]]:
    """``-L`` specs for ``far`` added with ``forward`` (``ssh -O forward`` on a master of ours): (port, specs)."""
    port = local_port or free_port()
    spec = _specs(port, far)
    try:
        forward(spec)
    except LabError:
        if not port_taken(port):
            raise
        if local_port:
            raise _held_by_another(port) from None
        port = free_port()  # lost the race for a port we picked: once more with another
        spec = _specs(port, far)
        forward(spec)
    return port, spec


@contextlib.contextmanager
def on_master(master: Master, far: str, local_port: int) -> Iterator[Forward]:
    """``-L`` on the master itself; alive while the master is."""
    port, spec = _added(master.forward, far, local_port)
    logged = master.marks.log_size()
    try:
        yield Forward(port, far, alive=_carrier_alive(master),
                      refusals=lambda: master.marks.said_since(logged).count("open failed"))
    finally:
        master.forward(spec, cancel=True)


class NodeLink:
    """One ssh to a compute node (through the cluster's master) that forwards are added to: a ControlMaster
    of its own (socket in a new 0700 directory, ``ControlPersist no``: it ends with its process). Opened as
    soon as the job's node is known, it logs in to the node while Jupyter starts, and the forward is then
    a ``-O forward`` away. ``argv(words, control)`` builds the ssh words (``Hops.node_ssh``)."""

    def __init__(self, argv: Callable[..., list[str]], what: str, timeout: float = 30):
        self._argv, self.what = argv, what
        self._dir = tempfile.mkdtemp(prefix="fl-")  # 0700
        self.control = os.path.join(self._dir, "n")
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv("-N", control=self.control), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err, start_new_session=True,
                                     preexec_fn=procs.die_with_parent)
        try:
            self._until_up(timeout)
        except BaseException:
            self.close()
            raise

    def _until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not paths.is_socket(self.control):
            if self.proc.poll() is not None:
                raise openssh.explain(self.said(), self.what, self.proc.returncode)
            if time.monotonic() > deadline:
                raise ConnectError(f"{self.what}: no connection within {timeout:.0f} s.")
            time.sleep(0.02)

    def said(self) -> str:
        return os.pread(self._err.fileno(), 1 << 20, 0).decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def forward(self, specs: list[str], *, cancel: bool = False) -> None:
        words = [w for spec in specs for w in ("-L", spec)]
        proc = subprocess.run(self._argv("-o", "ExitOnForwardFailure=yes", "-O", "cancel" if cancel else "forward",
                                         *words, control=self.control),
                              capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0 and not cancel:
            raise openssh.explain(proc.stderr, self.what, proc.returncode)

    def close(self) -> None:
        procs.end_child(self.proc)
        self._err.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NodeLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def on_link(link: NodeLink, far: str, local_port: int) -> Iterator[Forward]:
    """``-L`` on a node link; alive while its ssh runs, its refused channels counted from what it said."""
    port, spec = _added(link.forward, far, local_port)
    try:
        yield Forward(port, far, alive=link.alive, refusals=lambda: link.said().count("open failed"))
    finally:
        if link.alive():
            link.forward(spec, cancel=True)


def _carrier_alive(master: Master) -> Callable[[], bool]:
    """Whether the very master process that carries a forward still runs (the forward lives in it): by its
    pid and start time, no ``ssh -O check`` per look. A master replaced between two looks (a logout and a
    login back to back) is alive but has lost the old one's forwards: it does not count."""
    pid = master.check().pid
    started = procs.start_time(pid) if pid else None
    if started:
        return lambda: procs.alive(pid, started)
    return lambda: master.check().alive  # an ssh that names no pid: ask it each time


def _held_by_another(port: int) -> LabError:
    return LabError(f"local port {port} is held by another process on 127.0.0.1 or ::1: nothing was sent to it. "
                    "Choose another lab.local_port (or 0 for any free one).")

