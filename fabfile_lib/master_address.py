"""How to reach one cluster's login node through its ControlMaster: the ssh words and the socket, as data.

A :class:`MasterAddress` runs nothing: it is what every command, upload and forward to that cluster says
to OpenSSH (``-S``-style riding of the master's socket, the hops, the host-key policy), and where the
tool keeps the master's socket and the files beside it. The process that logs in and answers on that
socket is ``master.py``'s; what the tool writes beside it is ``master_marks.py``'s.

One cluster is one key: a hash of the ssh config, ``lab.login`` and ``lab.jump``. A master *pinned* to
one login node (reverse mode's far end lives on one) is the same alias with ``HostName`` set to that
node's own name -- its hops, HostKeyAlias, known hosts and certificates kept, so a shared host key or a
site CA still verifies -- and a key of its own.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from . import file_trust, openssh, paths
from .errors import LabError
from .settings import LabSettings

log = logging.getLogger(__name__)

_WARNED: set[str] = set()  # logins whose unchecked host keys were already warned about in this process
# A Unix socket path holds about 104 bytes; OpenSSH adds a 17-byte suffix while it creates the socket.
_MAX_SOCKET_PATH = 84


@dataclass(frozen=True)
class MasterAddress:
    """The ssh words every command to one cluster's login node uses, and where its socket lives."""

    label: str  # lab.login as the user wrote it, for messages
    dest: str  # the ssh destination argument
    options: tuple[str, ...]  # -F, -J and -o words shared by every ssh to the login node
    control_path: str  # "" when the user's own config names it
    persist: str  # ControlPersist; "0" = none kept between tasks
    connect_timeout: float
    socket_dir: Path = Path(".")  # the tool's private socket directory (its marks live there too)
    key: str = ""  # which cluster: a hash of config, login and jump (and the pinned node)
    pin: str = ""  # the login node's own name, when this master must reach that very node
    cluster: str = ""  # the key of the cluster's own master (a logout ends the pinned ones too)

    @property
    def user_managed(self) -> bool:
        """The user's own config names the ControlPath: their master, their ControlPersist."""
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


def describe(settings: LabSettings, pin: str = "", *, memo: dict | None = None) -> MasterAddress:
    """The address of ``settings``' cluster (``pin``: of a master to that login node): the user's own
    master if their config names a ControlPath, else ours. Reads the ssh config (``ssh -G``, asked once per
    ``memo``: see ``openssh.effective``); starts nothing."""
    cfg = settings.ssh_config_path
    jump = ["-J", settings.jump] if settings.jump else []
    opts = openssh.effective(settings.login, cfg, jump, memo=memo)
    words = [*openssh.config_args(cfg), *jump,
             "-o", f"ConnectTimeout={max(1, int(settings.connect_timeout))}",
             "-o", f"ServerAliveInterval={settings.keepalive}", "-o", "ServerAliveCountMax=3"]
    if pin:  # every other option of the alias kept: its hops, HostKeyAlias, known hosts, certificates
        words += ["-o", f"HostName={pin}"]
    words += _host_key_words(settings, openssh.first(opts, "stricthostkeychecking", "ask"))
    user_path = openssh.first(opts, "controlpath", "none")
    sockets, key = control_dir(settings.state_path), cluster_key(settings, pin)
    control = "" if user_path.lower() != "none" else str(sockets / key)
    return MasterAddress(label=f"login node {pin} ({settings.login})" if pin else settings.login,
                         dest=openssh.destination(settings.login), options=tuple(words), control_path=control,
                         persist=settings.persist, connect_timeout=settings.connect_timeout, socket_dir=sockets,
                         key=key, pin=pin, cluster=cluster_key(settings))


def _host_key_words(settings: LabSettings, strict: str) -> list[str]:
    if settings.accept_new_host_keys:
        return ["-o", "StrictHostKeyChecking=accept-new"]
    if strict in ("no", "off") and settings.login not in _WARNED:
        _WARNED.add(settings.login)
        log.warning("warning: your ssh config turns host key checking off for %s (StrictHostKeyChecking %s): the "
                    "tool keeps your choice, so that hop's key is not verified.", settings.login, strict)
    # "ask" would be a yes/no question mid-task: unknown hosts are refused, as documented
    return ["-o", "StrictHostKeyChecking=yes"] if strict == "ask" else []


def cluster_key(settings: LabSettings, pin: str = "") -> str:
    """Which cluster (and login node, for a pinned master) ``settings`` reach: names the socket and marks."""
    ident = f"{settings.ssh_config_path}|{settings.login}|{settings.jump}" + (f"|{pin}" if pin else "")
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


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
