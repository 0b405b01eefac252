"""A Fabric ``Connection`` to the login node whose commands and SFTP ride the cluster's OpenSSH master.

Why not ``Connection(gateway="ssh -S ... -W %h:%p")``? That would make Paramiko log in to the login node a
second time inside the stream: a second handshake on every task, and a second prompt wherever the login
node itself wants a code. Here nothing authenticates again: ``run`` executes ``ssh -S CTL DEST COMMAND``
through Invoke's own local runner (so ``hide``, ``warn``, ``timeout``, watchers and ``Result`` behave as
with any Connection), and ``sftp()`` is Paramiko's SFTP client speaking over ``ssh -s DEST sftp``.
Teams keep programming against a Fabric ``Connection``; OpenSSH carries the bytes.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
from collections.abc import Iterator

import paramiko
from fabric import Config, Connection
from invoke.runners import Local

from . import openssh, procs
from .errors import ConnectError
from .master import Master


class _SftpSocket(socket.socket):
    """Our end of the pipe to ``ssh -s sftp``: a real socket (Paramiko's SFTP polls it with select) with
    the one Channel method its logging wants."""

    def get_name(self) -> str:
        return "openssh-sftp"


class MasterRemote(Local):
    """Invoke's local runner, running the command on the far side of the master."""

    def start(self, command: str, shell: str, env: dict) -> None:
        prefix = self.context.inline_env()
        remote = f"{prefix}sh -c {shlex.quote(command)}" if prefix else command
        argv = self.context.master.address.command(remote)
        super().start(shlex.join(argv), "/bin/sh", env)


class MasterConnection(Connection):
    """A Fabric Connection riding ``master``: ``run``, ``sudo``, ``sftp``, ``put``/``get`` and
    ``forward_local`` work as usual; there is no Paramiko ``transport``."""

    rides_master = True  # an exit status of 255 is ssh's own failure (remote.run_command)

    def __init__(self, master: Master, host: str, user: str, port: int = 22, *, opened: bool = False) -> None:
        """``opened``: the caller has just made sure the master lives (no second ``ssh -O check``)."""
        # An explicit empty SSHConfig: the master already applied the user's config, through OpenSSH.
        super().__init__(host, user=user, port=port, config=Config(ssh_config=paramiko.SSHConfig()))
        self.master = master
        self._sftp_proc: subprocess.Popen | None = None
        self._opened = opened

    @property
    def is_connected(self) -> bool:
        return self._opened

    def open(self) -> None:
        if not self._opened:
            self.master.open(interactive=False)
            self._opened = True

    def inline_env(self) -> str:
        """Only the variables the caller set for this command, through ``env`` (any login shell has it; csh
        has no ``export``); the command then runs under ``sh -c``."""
        wanted = self.config.run.env or {}
        return f"env {shlex.join(f'{k}={v}' for k, v in sorted(wanted.items()))} " if wanted else ""

    def _remote_runner(self):
        return MasterRemote(context=self)

    def sftp(self) -> paramiko.SFTPClient:
        self.open()
        if self._sftp_proc is not None and self._sftp_proc.poll() is not None:  # its ssh ended: open anew
            self.close()
            self.open()
        if self._sftp is None:
            pair, theirs = socket.socketpair()
            ours = _SftpSocket(fileno=pair.detach())
            argv = self.master.address.argv("-T", "-s", self.master.address.dest, "sftp")
            # A session of its own: the terminal's Ctrl-C is for us (which then cancels a pending job over
            # this very channel), not for the ssh that carries it.
            self._sftp_proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                               close_fds=True, start_new_session=True)
            theirs.close()
            try:
                self._sftp = paramiko.SFTPClient(ours)
            except (EOFError, OSError, paramiko.SSHException) as exc:
                ours.close()
                self._sftp_proc.kill()
                stderr = self._sftp_proc.communicate(timeout=5)[1].decode(errors="replace")
                self._sftp_proc = None
                raise openssh.explain(stderr or str(exc), f"cannot open SFTP on {self.master.label}") from None
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError):
                self._sftp.close()
            self._sftp = None
        if self._sftp_proc is not None:
            procs.end_child(self._sftp_proc, terminate=False)  # its socket closed: ssh -s ends by itself
            self._sftp_proc.stderr.close()
            self._sftp_proc = None
        self._opened = False

    def create_session(self):
        raise ConnectError("this Connection rides an OpenSSH master and has no Paramiko session: use run().")

    @contextlib.contextmanager
    def forward_local(self, local_port, remote_port=None, remote_host="localhost", local_host="localhost"
                      ) -> Iterator[None]:
        """Like Fabric's, but the listener is OpenSSH's, on the master (``ssh -O forward``)."""
        self.open()
        specs = [f"{local_host}:{local_port}:{remote_host}:{remote_port or local_port}"]
        self.master.forward(specs)
        try:
            yield
        finally:
            self.master.forward(specs, cancel=True)
