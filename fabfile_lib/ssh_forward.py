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
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

from . import openssh, procs
from .errors import ConnectError, LabError
from .forwards import Forward, bind_loopback, check_port_free
from .master import Master


def free_port() -> int:
    """A port free on both 127.0.0.1 and ::1 right now (OpenSSH binds it a moment later)."""
    socks = bind_loopback(0)
    port = socks[0].getsockname()[1]
    for sock in socks:
        sock.close()
    return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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
        if not _taken(port):
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
    pid = master.check().pid
    logged = master.log_size()
    # A master replaced between two looks (a logout and login back to back) is alive but has lost the
    # forwards of the old one: only the very master that carries this forward counts.
    try:
        yield Forward(port, far, alive=lambda: _same_master(master, pid),
                      refusals=lambda: master.said_since(logged).count("open failed"))
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
        while not _is_socket(self.control):
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


def _same_master(master: Master, pid: int) -> bool:
    info = master.check()
    return info.alive and (not pid or info.pid == pid)


def _held_by_another(port: int) -> LabError:
    return LabError(f"local port {port} is held by another process on 127.0.0.1 or ::1: nothing was sent to it. "
                    "Choose another lab.local_port (or 0 for any free one).")


def _taken(port: int) -> bool:
    try:
        check_port_free(port)
    except LabError:
        return True
    return False


class _OverSocket:
    """The socket-like half of a stream: what a probe calls on it goes to ``self.sock``."""

    sock: socket.socket

    def settimeout(self, seconds: float) -> None:
        self.sock.settimeout(seconds)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)


class Stream(_OverSocket):
    """A byte stream to ``host:port`` through ``ssh -W`` (socket-like: sendall, recv, settimeout, close)."""

    def __init__(self, argv: list[str], what: str):
        self.what = what
        self.sock, theirs = socket.socketpair()
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=self._err, start_new_session=True)
        self._failure: LabError | None = None
        theirs.close()

    def failure(self) -> LabError | None:
        """Why ssh ended, if it ended with an error (known once the stream is closed)."""
        if self._failure is None and not self._err.closed and self.proc.poll() not in (None, 0):
            self._err.seek(0)
            self._failure = openssh.explain(self._err.read(), self.what, self.proc.returncode)
        return self._failure

    def close(self) -> None:
        self.sock.close()
        procs.end_child(self.proc, terminate=False)  # our end closed: ssh -W ends by itself
        self.failure()
        self._err.close()


@contextlib.contextmanager
def unix_via_ssh(argv: list[str], local: str, what: str, timeout: float = 30) -> Iterator[Callable[[], str]]:
    """A child ``ssh -N`` whose ``-L`` listens on the Unix socket ``local`` (in a private directory of
    ours); yields what ssh has said about channels it could not open (the far socket not there yet)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=procs.die_with_parent)
        try:
            deadline = time.monotonic() + timeout
            while not _is_socket(local):
                if proc.poll() is not None:
                    err.seek(0)
                    raise openssh.explain(err.read(), what, proc.returncode)
                if time.monotonic() > deadline:
                    raise ConnectError(f"{what}: the forward did not come up within {timeout:.0f} s.")
                time.sleep(0.05)
            yield lambda: _open_failure(os.pread(err.fileno(), 1 << 16, 0).decode(errors="replace"))
        finally:
            procs.end_child(proc)


@contextlib.contextmanager
def unix_on_master(master: Master, local: str, far: str) -> Iterator[Callable[[], str]]:
    """``-L local:far`` on the master itself, removed afterwards; what went wrong is what the master wrote
    to its log meanwhile (a channel it could not open)."""
    spec = [f"{local}:{far}"]
    before = master.log_size()
    master.forward(spec)
    try:
        yield lambda: _open_failure(master.said_since(before))
    finally:
        master.forward(spec, cancel=True)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _open_failure(said: str) -> str:
    lines = [ln.strip() for ln in said.splitlines() if "open failed" in ln]
    return lines[-1] if lines else ""


class UnixStream(_OverSocket):
    """A byte stream to a Unix socket on the far side (socket-like, as :class:`Stream`): ssh forwards a
    Unix socket of ours, in a new 0700 directory, to it. ``opened(local)`` is the forward's context
    (:func:`unix_via_ssh`, :func:`unix_on_master`). ``ssh -W`` cannot reach a socket; ``-L`` can."""

    def __init__(self, opened: Callable[[str], contextlib.AbstractContextManager[Callable[[], str]]]):
        self._stack = contextlib.ExitStack()
        self._said: Callable[[], str] = lambda: ""
        self._failure: LabError | None = None
        try:
            where = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fl-"))  # 0700
            local = os.path.join(where, "s")
            self._said = self._stack.enter_context(opened(local))
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._stack.callback(self.sock.close)
            self.sock.settimeout(10)
            self.sock.connect(local)
        except BaseException:
            self._stack.close()
            raise

    def failure(self) -> LabError | None:
        return self._failure

    def close(self) -> None:
        said = self._said()
        self._stack.close()
        if said and self._failure is None:
            self._failure = openssh.refused(said) or ConnectError(said)
