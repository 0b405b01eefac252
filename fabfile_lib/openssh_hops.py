"""The OpenSSH carrier: the login node through one authenticated master per cluster (``master.py``), compute
nodes through that master's ``ssh -W``.

OpenSSH does authentication (second factor, FIDO keys, certificates, agent) and host-key checks with the
user's own config, once; everything after rides the master and asks for nothing. Commands go as ``ssh
-S``: through a Fabric Connection (``master_connection.py``) where a team's code programs against one,
or without Fabric (``master_shell.py``) where only the output is wanted.
"""

from __future__ import annotations

import logging
import shlex
from typing import TYPE_CHECKING

from . import openssh
from .errors import AuthenticationError, ConnectError, HostKeyError, PromptNeeded
from .hop_spec import HopSpec, pinned, resolve_openssh
from .master import Master, plan
from .master_shell import MasterShell
from .prompts import Prompter
from .settings import LabSettings

if TYPE_CHECKING:
    from fabric import Connection

_log = logging.getLogger(__name__)


class OpenSSHCarrier:
    """The hops of one run over the cluster's master: opened on first use, the master kept as
    ``lab.persist`` says."""

    def __init__(self, settings: LabSettings, *, pin: str, interactive: bool, prompter: Prompter):
        self.settings, self.pin, self.interactive, self.prompter = settings, pin, interactive, prompter
        self._master: Master | None = None
        self._started_master = False
        self._opened: list = []
        self._login: Connection | None = None
        self._login_spec: HopSpec | None = None
        self._shell: MasterShell | None = None
        self._asked: dict = {}  # ssh -G's answers in this run: the master's address and the login's spec agree

    @property
    def master(self) -> Master:
        """The cluster's master (pinned to one login node when ``pin`` says so), opened on first use."""
        if self._master is None:
            master = plan(self.settings, self.pin, memo=self._asked)
            try:
                self._started_master = master.open(interactive=self.interactive)
            except (HostKeyError, AuthenticationError, PromptNeeded):
                raise
            except ConnectError as exc:
                if not self.pin:
                    raise
                master = self._shared_on_pin()
                if master is None:
                    from .hops import pinned_unreachable

                    raise pinned_unreachable(self.pin, exc) from None
            self._master = master
        return self._master

    def _shared_on_pin(self) -> Master | None:
        """The cluster's own master, if it lands on the pinned node: where that node's own name does not
        resolve from the proxy, the cluster's name may still lead there (always, with one login node)."""
        shared = plan(self.settings, memo=self._asked)
        try:
            self._started_master = shared.open(interactive=self.interactive)
        except ConnectError:
            return None
        return shared if self.pin in shared.landed() else None

    def login_spec(self) -> HopSpec:
        """The login node as ``ssh -G`` resolves it (pinned where the lab lives on one): nothing opened."""
        if self._login_spec is None:
            self._login_spec = pinned(resolve_openssh(self.settings.login, self.settings, memo=self._asked), self.pin)
        return self._login_spec

    def login(self) -> Connection:
        """A Fabric Connection riding the master (opened on first use)."""
        if self._login is None:
            from .master_connection import MasterConnection

            spec = self.login_spec()
            self._say(spec)
            self._login = MasterConnection(self.master, spec.hostname, spec.user, spec.port, opened=True)
            self._opened.append(self._login)
        return self._login

    def shell(self) -> MasterShell:
        """Plain ``ssh -S`` commands (no Fabric loaded): cheaper than the login Connection's runner even when
        that is open."""
        if self._shell is None:
            spec = self.login_spec()
            self._say(spec)
            self._shell = MasterShell(self.master, spec.hostname)
        return self._shell

    def feeder(self) -> MasterShell:
        """The same: ``ssh -S`` takes a command's standard input whole."""
        return self.shell()

    def home(self) -> str:
        return self.master.home()

    def _say(self, spec: HopSpec) -> None:
        _log.debug("hop %s: %s@%s:%s through %s (OpenSSH master)", spec.label, spec.user, spec.hostname,
                   spec.port, self.settings.jump or spec.proxy_jump or spec.proxy_command or "no jump")

    def login_names(self) -> tuple[str, ...]:
        return self.master.landed()

    def node(self, spec: HopSpec) -> Connection:
        """A compute node as a Paramiko Connection whose socket is the master's ``ssh -W``."""
        from . import paramiko_hops

        login = self.master.address
        sock = paramiko_hops.proxy_command(shlex.join(login.argv("-W", f"{spec.hostname}:22", login.dest)))
        conn = paramiko_hops.connect(spec, None, self.settings, self.prompter, via=f" via {self.settings.login}",
                                     sock=sock)
        self._opened.append(conn)
        return conn

    def node_ssh(self, spec: HopSpec, *words: str, control: str = "") -> list[str]:
        """``ssh`` to a compute node through the master, checking the node's key; ``control``: the path of a
        ControlMaster socket of its own (a node link, ``forwards.openssh_forward.NodeLink``), else none."""
        master = self.master
        multiplex = ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", "ControlPersist=no"] \
            if control else ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        opts = ["-o", f"ProxyCommand={master.address.proxy_command()}", *multiplex,
                "-o", "BatchMode=yes", "-l", spec.user, "-p", "22",
                "-o", f"UserKnownHostsFile={' '.join(spec.known_hosts)}",
                "-o", f"StrictHostKeyChecking={'accept-new' if spec.accept_new else 'yes'}",
                "-o", f"IdentitiesOnly={'yes' if spec.identities_only else 'no'}",
                "-o", f"ConnectTimeout={max(1, int(self.settings.connect_timeout))}",
                "-o", f"ServerAliveInterval={self.settings.keepalive}", "-o", "ServerAliveCountMax=3"]
        for ident in spec.identities:
            opts += ["-i", ident]
        return [openssh.ssh_binary() or "ssh", *openssh.config_args(self.settings.ssh_config_path), *opts, "-T",
                *words, spec.hostname]

    def close(self) -> None:
        for conn in reversed(self._opened):
            conn.close()
        self._opened.clear()
        if self._master is not None and self._started_master and self._master.address.persist == "0":
            self._master.close()  # lab.persist 0: no login is kept between tasks
        self._master = None
        self._login = None
        self._shell = None
