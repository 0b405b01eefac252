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
import getpass
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import commands, file_trust, locks, openssh, paths, untrusted
from .errors import AuthenticationError, ConnectError, HostKeyError, LabError, PromptNeeded
from .settings import LabSettings

log = logging.getLogger(__name__)

_PID = re.compile(r"pid=(\d+)")
_WARNED: set[str] = set()  # logins whose unchecked host keys were already warned about in this process
# A Unix socket path holds about 104 bytes; OpenSSH adds a 17-byte suffix while it creates the socket.
_MAX_SOCKET_PATH = 84


@dataclass(frozen=True)
class MasterInfo:
    alive: bool
    pid: int = 0
    created: float = 0.0  # when the tool started it (0 for the user's own master)


@dataclass(frozen=True)
class Master:
    """How to reach one cluster's login node through its master: the ssh words every command uses."""

    label: str  # lab.login as the user wrote it, for messages
    dest: str  # the ssh destination argument
    options: tuple[str, ...]  # -F, -J and -o words shared by every ssh to the login node
    control_path: str  # "" when the user's own config names it
    persist: str  # ControlPersist; "0" = none kept between tasks
    connect_timeout: float
    marker_dir: Path = Path(".")  # the tool's private socket directory
    key: str = ""  # which cluster: a hash of config, login and jump (and the pinned node)
    pin: str = ""  # the login node's own name, when this master must reach that very node
    cluster: str = ""  # the key of the cluster's own master (a logout ends the pinned ones too)

    @property
    def user_managed(self) -> bool:
        return not self.control_path

    def argv(self, *words: str, batch: bool = True) -> list[str]:
        """``ssh`` riding the master; ``batch`` forbids prompts (a dead master then fails, never asks)."""
        control = ["-o", f"ControlPath={self.control_path}"] if self.control_path else []
        return [openssh.ssh_binary() or "ssh", *self.options, *control, *(["-o", "BatchMode=yes"] if batch else []),
                *words]

    def command(self, *words: str) -> list[str]:
        """``ssh ... DEST WORDS...`` -- a session on the login node through the master."""
        return self.argv("-T", self.dest, *words)

    def proxy_command(self) -> str:
        """A ProxyCommand that reaches ``%h:%p`` from the login node through the master (``ssh -W``)."""
        words = [w.replace("%", "%%") for w in self.argv()]
        return " ".join(shlex.quote(w) for w in words) + f" -W %h:%p {shlex.quote(self.dest.replace('%', '%%'))}"

    def landed(self) -> tuple[str, ...]:
        """The names of the login node this (live) master is connected to -- ``hostname`` and, where it
        differs, ``hostname -f`` -- learnt once per master process and kept beside its socket."""
        info = self.check()
        if not info.alive:
            return ()
        known = self._landed_path(info.pid)
        try:
            return tuple(json.loads(known.read_text()))
        except (OSError, ValueError, TypeError):
            pass
        proc = _run(self.command(shlex.join(untrusted.NAMES_COMMAND)), timeout=self.connect_timeout + 10)
        names = untrusted.host_names(proc.stdout)
        if proc.returncode == 0 and names:
            for old in self.marker_dir.glob(f"{self.key}.*.landed"):  # of masters that have ended
                old.unlink(missing_ok=True)
            fd = os.open(known, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(list(names), fh)
        return names

    def _landed_path(self, pid: int) -> Path:
        return self.marker_dir / f"{self.key}.{pid}.landed"

    # -- state --------------------------------------------------------------------------------------

    def check(self) -> MasterInfo:
        """Whether a master answers on the socket (``ssh -O check``), and what we recorded about it."""
        proc = _run(self.argv("-O", "check", self.dest), timeout=10)
        log.debug("master of %s: %s", self.label, proc.stderr.strip() or f"exit {proc.returncode}")
        match = _PID.search(proc.stderr)
        return MasterInfo(proc.returncode == 0, int(match.group(1)) if match else 0,
                          self._meta().get("created", 0.0))

    def open(self, *, interactive: bool) -> bool:
        """Make sure a master lives; return True if this call started it.

        Started in the foreground (``-f`` backgrounds it only once authenticated), so OpenSSH asks for
        whatever the site wants on the user's terminal. ``interactive=False`` forbids any prompt: a login
        that needs one fails with :class:`PromptNeeded` instead of hanging.
        """
        if self.check().alive:
            return False
        with self._starting():  # one start per cluster at a time: two would leave an untracked session
            return self._open(interactive=interactive)

    @contextlib.contextmanager
    def _starting(self):
        if self.user_managed:  # the user's own ControlMaster auto settles its own races
            yield
            return
        self.marker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locks.exclusive(self.marker_dir / f"{self.key}.lock"):
            yield

    def _open(self, *, interactive: bool) -> bool:
        if self.check().alive:  # started by another process while this one waited for the lock
            return False
        if not interactive and self._logged_out().exists():
            raise PromptNeeded(f"you logged out of {self.label} (`{commands.run('logout')}`): "
                               f"`{commands.run('login')}` to resume.")
        if self.control_path:
            Path(self.control_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.user_managed and Path(self.control_path).is_socket():
                # Left by a master that was killed (no `-O check` answers it): OpenSSH would start a master
                # without multiplexing beside it ("already exists, disabling multiplexing").
                Path(self.control_path).unlink(missing_ok=True)
        self._logged_out().unlink(missing_ok=True)
        batch = not interactive or not openssh.tty_available()
        persist = "yes" if self.persist == "0" else self.persist  # 0: held until the run that made it ends
        # -E: once in the background OpenSSH sends the master's stderr to /dev/null; its log file keeps what
        # it says later (a channel sshd refused), and what it says while logging in, as stderr would. A
        # master on the user's own ControlPath leaves nothing in the tool's directory: a passing file then.
        logged = ["-E", str(self.log_path)] if not self.user_managed else []
        argv = self.argv("-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}", *logged,
                         "-f", "-N", self.dest, batch=batch)
        log.info("opening the ssh master to %s", self.label)
        # stderr to a file, not a pipe: the backgrounded master must not hold our end open.
        with self._stderr_file() as err:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL if batch else None, stdout=subprocess.DEVNULL,
                                      stderr=err, timeout=None if not batch else self.connect_timeout * 3 + 10,
                                      check=False, preexec_fn=_ignore_hangup)
            except subprocess.TimeoutExpired:
                raise ConnectError(f"logging in to {self.label} did not finish within "
                                   f"{self.connect_timeout * 3 + 10:.0f} s.") from None
            err.seek(0)
            stderr = err.read()
        if proc.returncode != 0:
            failure = openssh.explain(stderr, f"cannot log in to {self.label}", proc.returncode)
            if openssh.proxy_died(stderr):
                failure = self._diagnose() or failure
            if batch and "Permission denied" in stderr and "keyboard-interactive" in stderr:
                raise PromptNeeded(f"logging in to {self.label} needs a second factor and nobody can be asked "
                                   f"here: run `{commands.run('login')}` in a terminal, then retry.")
            raise failure
        self._write_meta({"created": time.time(), "persist": self.persist, "label": self.label,
                          "cluster": self.cluster, "pin": self.pin})
        return True

    def close(self, *, logout: bool = False) -> bool:
        """End the master (``ssh -O exit``); True if one was running. ``logout``: and keep background
        forwards from logging in again by themselves until the user does (``lab.login``, any task)."""
        if logout:
            marker = self._logged_out()
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.touch(mode=0o600)
        alive = self.check().alive
        if alive:
            _run(self.argv("-O", "exit", self.dest), timeout=10)
            deadline = time.monotonic() + 5
            while self.check().alive and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.control_path:
            self._meta_path().unlink(missing_ok=True)
            self.log_path.unlink(missing_ok=True)
        for known in self.marker_dir.glob(f"{self.key}.*.landed"):
            known.unlink(missing_ok=True)
        return alive

    def _diagnose(self) -> LabError | None:
        """Why the hop before the login node failed. OpenSSH silences a ProxyCommand's stderr when the
        connection is to become a persistent master, leaving only "Connection closed"; the same hop tried
        once as a plain connection, with no prompt allowed, says why in its own words."""
        # In a session of its own: no terminal, so a hop before this one cannot ask for a code again.
        proc = _run([*self.argv("-o", "ControlMaster=no", "-o", "ControlPath=none"), "-T", self.dest, "true"],
                    timeout=self.connect_timeout * 2 + 5, detach=True)
        if proc.returncode == 0:
            return None
        failure = openssh.explain(proc.stderr, f"cannot log in to {self.label}", proc.returncode)
        specific = isinstance(failure, (HostKeyError, AuthenticationError, PromptNeeded))
        return failure if specific or not openssh.proxy_died(proc.stderr) else None

    # -- forwards on the master ----------------------------------------------------------------------

    def forward(self, specs: list[str], *, cancel: bool = False) -> None:
        """Add (or remove) ``-L`` forwards on the master itself (``ssh -O forward``/``-O cancel``); with
        ExitOnForwardFailure, a bind that fails is a failure of the whole request."""
        words = [w for spec in specs for w in ("-L", spec)]
        proc = _run(self.argv("-o", "ExitOnForwardFailure=yes", "-O", "cancel" if cancel else "forward", *words,
                              self.dest), timeout=15)
        if proc.returncode != 0 and not cancel:
            raise openssh.explain(proc.stderr, f"cannot forward {specs[0]} through the master to {self.label}",
                                  proc.returncode)

    # -- metadata beside the socket (when the tool made it) -----------------------------------------

    def _stderr_file(self):
        """The file the master's stderr goes to: its log (private, kept while it lives), or for the user's
        own master a temporary file."""
        if self.user_managed:
            return tempfile.TemporaryFile(mode="w+")
        self.marker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "w+")

    @property
    def log_path(self) -> Path:
        """What the tool's master of this cluster prints after logging in (0600, in the private directory)."""
        return self.marker_dir / f"{self.key}.log"

    def said_since(self, offset: int) -> str:
        """What the master printed after ``offset`` bytes of its log (at most 16 KiB); "" for a master the
        tool did not start."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read(16384).decode(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _logged_out(self) -> Path:
        """The mark of an explicit logout of the cluster, in the tool's socket directory (for a user-managed
        master too); it holds the pinned masters too."""
        return self.marker_dir / f"{self.cluster or self.key}.logged-out"

    def _meta_path(self) -> Path:
        return Path(f"{self.control_path}.json")

    def _meta(self) -> dict:
        if not self.control_path:
            return {}
        try:
            return json.loads(self._meta_path().read_text())
        except (OSError, ValueError):
            return {}

    def _write_meta(self, data: dict) -> None:
        if self.control_path:
            path = self._meta_path()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)


def _ignore_hangup() -> None:
    """In the master's child before exec: an ignored SIGHUP or SIGINT stays ignored across exec, and ssh
    keeps it so. The master detaches from the terminal once logged in, but its ProxyJump/ProxyCommand
    child (the hop to the jump host) stays in the terminal's process group: closing the terminal would hang
    it up, and a Ctrl-C meant for a task (which then cancels a pending job through this very login) would
    kill it -- and with it the login the user just gave a code for. (OpenSSH's own prompts still read ^C
    from the terminal; a Ctrl-C while it connects ends it through Python.)"""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(argv: list[str], timeout: float, detach: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False, start_new_session=detach)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", f"`{' '.join(argv[:1])}` timed out after {timeout} s")


def control_dir(state_dir: Path) -> Path:
    """The private directory of the tool's master sockets; short enough for a Unix socket path (else in
    ``$XDG_RUNTIME_DIR``, else ``/tmp/fabfile-lab-UID``: a shared directory, so it must be a real
    directory of ours -- never a symlink someone planted)."""
    path, uid = state_dir / "cm", file_trust.me()  # no user ids on Windows
    if len(str(path)) + 14 > _MAX_SOCKET_PATH:
        runtime = paths.runtime_dir()
        path = runtime if runtime and len(str(runtime)) + 14 <= _MAX_SOCKET_PATH else \
            paths.shared_tmp(str(uid) if uid is not None else getpass.getuser())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
        raise LabError(f"{path} is not a directory of yours (a symlink, or another user's): remove it, or set "
                       "lab.state_dir to a short directory of your own.")
    os.chmod(path, 0o700)
    return path


def cluster_key(settings: LabSettings, pin: str = "") -> str:
    ident = f"{settings.ssh_config_path}|{settings.login}|{settings.jump}" + (f"|{pin}" if pin else "")
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def plan(settings: LabSettings, pin: str = "") -> Master:
    """The master for ``settings``' cluster: the user's own if their config names a ControlPath, else ours.

    ``pin``: the master must reach the login node of that name -- the cluster's own master if it is
    there now, else a master of its own to that node."""
    shared = _plan(settings)
    if not pin:
        return shared
    if not untrusted.host(pin):
        raise LabError(f"{pin!r} is not a host name: the lab's record is damaged.")
    if pin in shared.landed():
        return shared
    return _plan(settings, pin)


def masters(settings: LabSettings) -> list[Master]:
    """The cluster's master and the masters pinned to its login nodes that the tool keeps now."""
    shared = _plan(settings)
    pins = []
    for meta in shared.marker_dir.glob("*.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("cluster") == shared.key and untrusted.host(data.get("pin")):
            pins.append(_plan(settings, data["pin"]))
    return [shared, *pins]


def _plan(settings: LabSettings, pin: str = "") -> Master:
    cfg = settings.ssh_config_path
    jump = ["-J", settings.jump] if settings.jump else []
    opts = openssh.effective(settings.login, cfg, jump)
    strict = openssh.first(opts, "stricthostkeychecking", "ask")
    words = [*openssh.config_args(cfg), *jump,
             "-o", f"ConnectTimeout={max(1, int(settings.connect_timeout))}",
             "-o", f"ServerAliveInterval={settings.keepalive}", "-o", "ServerAliveCountMax=3"]
    if pin:  # every other option of the alias kept: its hops, HostKeyAlias, known hosts, certificates
        words += ["-o", f"HostName={pin}"]
    if settings.accept_new_host_keys:
        words += ["-o", "StrictHostKeyChecking=accept-new"]
    elif strict == "ask":  # never a yes/no question mid-task: unknown hosts are refused, as documented
        words += ["-o", "StrictHostKeyChecking=yes"]
    if strict in ("no", "off") and settings.login not in _WARNED:
        _WARNED.add(settings.login)
        log.warning("warning: your ssh config turns host key checking off for %s (StrictHostKeyChecking %s): the "
                    "tool keeps your choice, so that hop's key is not verified.", settings.login, strict)
    user_path = openssh.first(opts, "controlpath", "none")
    sockets, key = control_dir(settings.state_path), cluster_key(settings, pin)
    control = "" if user_path.lower() != "none" else str(sockets / key)
    return Master(label=f"login node {pin} ({settings.login})" if pin else settings.login,
                  dest=openssh.destination(settings.login), options=tuple(words), control_path=control,
                  persist=settings.persist, connect_timeout=settings.connect_timeout, marker_dir=sockets, key=key,
                  pin=pin, cluster=cluster_key(settings))
