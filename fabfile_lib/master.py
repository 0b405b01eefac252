"""One authenticated OpenSSH connection per cluster (a ``ControlMaster``), shared by everything after it.

Most sites ask for a second factor at the first hop (TOTP, Duo, a FIDO touch) and tell users to share one
login with ``ControlMaster``/``ControlPersist``. So the first task that needs the cluster starts the
master in the foreground -- OpenSSH itself asks for passphrase, code or touch on the terminal -- and
OpenSSH keeps it in the background for ``lab.persist``. Every later command, upload, forward and background
forward rides it (``ssh -S``), and asks for nothing while it lives.

The master is to the login node, through the jump host as the user's config (or ``lab.jump``) says. Its
socket lives in a private (0700) directory under the state directory; where the user's config already has
a ``ControlPath`` for that host, the user's own master is used instead.

Most large sites put several login nodes behind one name, and each new login may land on another one.
Whatever lives on one login node (reverse mode's far end) is reached through a *pinned* master: the same
alias -- its hops, HostKeyAlias, known hosts and certificates kept, so a shared host key or a site CA
still verifies -- with ``HostName`` set to that node's own name. The cluster's master is used instead
whenever it has landed on that very node (each master learns its node's names once: no second login).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from functools import cached_property

from . import commands, locks, master_login, openssh, untrusted
from .errors import ConnectError, LabError, PromptNeeded
from .master_address import MasterAddress, cluster_key, control_dir, describe
from .master_marks import LoginFacts, MasterMarks, pinned_nodes
from .settings import LabSettings

__all__ = ["LoginFacts", "Master", "MasterInfo", "cluster_key", "control_dir", "masters", "plan"]

log = logging.getLogger(__name__)

_PID = re.compile(r"pid=(\d+)")
_SEEN_FOR = 2.0  # seconds a master just seen alive counts as alive (no second ``-O check`` right after open)


@dataclass(frozen=True)
class MasterInfo:
    alive: bool
    pid: int = 0
    created: float = 0.0  # when the tool started it (0 for the user's own master)


@dataclass(frozen=True)
class Master:
    """The process behind one :class:`MasterAddress`: started, checked, asked to forward, ended."""

    address: MasterAddress
    _seen: dict = field(default_factory=dict, compare=False, repr=False)  # the last check that found it alive

    @cached_property
    def marks(self) -> MasterMarks:
        return MasterMarks(self.address)

    @property
    def label(self) -> str:
        return self.address.label

    def check(self) -> MasterInfo:
        """Whether a master answers on the socket (``ssh -O check``), and what we recorded about it."""
        a = self.address
        proc = _run(a.argv("-O", "check", a.dest), timeout=10)
        log.debug("master of %s: %s", a.label, proc.stderr.strip() or f"exit {proc.returncode}")
        match = _PID.search(proc.stderr)
        info = MasterInfo(proc.returncode == 0, int(match.group(1)) if match else 0, self.marks.created())
        if info.alive:
            self._seen.update(info=info, when=time.monotonic())
            self.marks.seen_process(info.pid)
        return info

    def _alive(self) -> MasterInfo:
        """The master as just seen, or as the process a ``-O check`` last named (that very process still
        running, its socket in place: a command's first hop then starts no ``ssh -O check``, which proves
        no more -- it asks the local master process, not the cluster), else as ``-O check`` finds it now."""
        if self._seen and time.monotonic() - self._seen["when"] < _SEEN_FOR:
            return self._seen["info"]
        pid = self.marks.running()
        if not pid:
            return self.check()
        self._seen.update(info=MasterInfo(True, pid, self.marks.created()), when=time.monotonic())
        return self._seen["info"]

    def landed(self) -> tuple[str, ...]:
        """The names of the login node this (live) master is connected to -- ``hostname`` and, where it
        differs, ``hostname -f`` -- learnt once per master process and kept beside its socket."""
        facts = self.facts()
        return facts.names if facts else ()

    def home(self) -> str:
        """The user's home directory on the login node this (live) master is connected to (learnt once,
        with its names); a ConnectError if the master cannot say."""
        facts = self.facts()
        if facts is None:
            raise ConnectError(f"cannot learn the home directory on {self.label} through its master.")
        return facts.home

    def facts(self) -> LoginFacts | None:
        """What this master process learnt of its login node (one command, the first time), or None
        while no master lives or the login node does not say."""
        info = self._alive()
        if not info.alive:
            return None
        known = self.marks.landed(info.pid)
        if known is not None:
            return known
        a = self.address
        proc = _run(a.command(shlex.join(untrusted.FACTS_COMMAND)), timeout=a.connect_timeout + 10)
        home, names = untrusted.login_facts(proc.stdout)
        if proc.returncode != 0 or not names or not home:
            return None
        facts = LoginFacts(names, home)
        self.marks.learnt(info.pid, facts)
        return facts

    def open(self, *, interactive: bool) -> bool:
        """Make sure a master lives; return True if this call started it.

        Started in the foreground (``-f`` backgrounds it only once authenticated), so OpenSSH asks for
        whatever the site wants on the user's terminal. ``interactive=False`` forbids any prompt: a login
        that needs one fails with :class:`PromptNeeded` instead of hanging.
        """
        if self._alive().alive:
            return False
        with self._starting():  # one start per cluster at a time: two would leave an untracked session
            if self.check().alive:  # started by another process while this one waited for the lock
                return False
            if not interactive and self.marks.logged_out.exists():
                raise PromptNeeded(f"you logged out of {self.label} (`{commands.run('logout')}`): "
                                   f"`{commands.run('login')}` to resume.")
            self.marks.clear_stale_socket()
            self.marks.logged_out.unlink(missing_ok=True)
            master_login.log_in(self.address, self.marks, batch=not interactive or not openssh.tty_available())
            self.marks.started(time.time())
            return True

    @contextlib.contextmanager
    def _starting(self):
        if self.address.user_managed:  # the user's own ControlMaster auto settles its own races
            yield
            return
        self.address.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locks.exclusive(self.address.socket_dir / f"{self.address.key}.lock"):
            yield

    def close(self, *, logout: bool = False) -> bool:
        """End the master (``ssh -O exit``); True if one was running. ``logout``: and keep background
        forwards from logging in again by themselves until the user does (``lab.login``, any task)."""
        if logout:
            self.address.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.marks.logged_out.touch(mode=0o600)
        alive = self.check().alive
        if alive:
            _run(self.address.argv("-O", "exit", self.address.dest), timeout=10)
            deadline = time.monotonic() + 5
            while self.check().alive and time.monotonic() < deadline:
                time.sleep(0.1)
        self._seen.clear()
        self.marks.ended()
        return alive

    def forward(self, specs: list[str], *, cancel: bool = False) -> None:
        """Add (or remove) ``-L`` forwards on the master itself (``ssh -O forward``/``-O cancel``); with
        ExitOnForwardFailure, a bind that fails is a failure of the whole request."""
        a = self.address
        words = [w for spec in specs for w in ("-L", spec)]
        proc = _run(a.argv("-o", "ExitOnForwardFailure=yes", "-O", "cancel" if cancel else "forward", *words, a.dest),
                    timeout=15)
        if proc.returncode != 0 and not cancel:
            raise openssh.explain(proc.stderr, f"cannot forward {specs[0]} through the master to {a.label}",
                                  proc.returncode)


def _run(argv: list[str], timeout: float, detach: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False, start_new_session=detach)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", f"`{' '.join(argv[:1])}` timed out after {timeout} s")


def plan(settings: LabSettings, pin: str = "", *, memo: dict | None = None) -> Master:
    """The master for ``settings``' cluster: the user's own if their config names a ControlPath, else ours.

    ``pin``: the master must reach the login node of that name -- the cluster's own master if it is
    there now, else a master of its own to that node."""
    shared = Master(describe(settings, memo=memo))
    if not pin:
        return shared
    if not untrusted.host(pin):
        raise LabError(f"{pin!r} is not a host name: the lab's record is damaged.")
    if pin in shared.landed():
        return shared
    return Master(describe(settings, pin, memo=memo))


def masters(settings: LabSettings) -> list[Master]:
    """The cluster's master and the masters pinned to its login nodes that the tool keeps now."""
    shared = describe(settings)
    return [Master(shared), *(Master(describe(settings, pin)) for pin in pinned_nodes(shared.socket_dir, shared.key))]
