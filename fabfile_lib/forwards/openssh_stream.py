"""Byte streams carried by OpenSSH, for probing a lab without a local port: ``ssh -W host:port`` over the
master (or through it to a node), and to a Unix socket -- whose path ``-W`` cannot take -- a ``-L`` from a
Unix socket of ours, in a new private directory, to it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

from .. import openssh, paths, procs
from ..errors import ConnectError, LabError
from ..master import Master


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
            while not paths.is_socket(local):
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
    before = master.marks.log_size()
    master.forward(spec)
    try:
        yield lambda: _open_failure(master.marks.said_since(before))
    finally:
        master.forward(spec, cancel=True)


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
