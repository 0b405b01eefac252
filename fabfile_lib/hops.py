"""The hops from the laptop to the cluster -- jump host, login node, compute node -- as Fabric Connections.

Two carriers, one interface. Where the laptop's OpenSSH can hold a ControlMaster (Linux, macOS), the hops
ride one authenticated master per cluster (``openssh_hops.py``): OpenSSH does authentication and host-key
checks with the user's own config, once. Elsewhere (Windows, or ``lab.transport: paramiko``) every hop is
a Paramiko Connection built with known hosts and ``RejectPolicy`` (``paramiko_hops.py``). :class:`Hops`
chooses between them; a team's code sees Fabric Connections either way. Neither Fabric nor Paramiko is
imported until a hop needs it, so a command that only asks Slurm a question never loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import commands, modes, openssh, untrusted
from .errors import ConnectError, LabError
from .hop_spec import HopSpec, checked_node, load_ssh_config, node_spec, resolve, resolve_openssh
from .master import Master
from .prompts import Prompter
from .remote import bash_script, run, run_command
from .settings import LabSettings

if TYPE_CHECKING:
    from fabric import Connection

__all__ = ["HopSpec", "Hops", "Prompter", "bash_script", "choose_transport", "load_ssh_config", "pinned_unreachable",
           "resolve", "resolve_openssh", "run", "run_command"]


def choose_transport(settings: LabSettings) -> str:
    """``openssh`` wherever an OpenSSH client that can hold a ControlMaster exists, unless told otherwise."""
    if settings.transport == "paramiko":
        return "paramiko"
    if openssh.ssh_binary() is None:
        if settings.transport == "openssh":
            raise LabError("lab.transport is openssh but no OpenSSH client with ControlMaster is installed "
                           "here: install it, or set lab.transport: paramiko.")
        return "paramiko"
    return "openssh"


class Carrier(Protocol):
    """What carries the hops of one run (``openssh_hops.OpenSSHCarrier``, ``paramiko_hops.ParamikoCarrier``):
    each opens what it needs on first use and keeps it until :meth:`close`."""

    def login(self) -> Connection: ...
    def login_spec(self) -> HopSpec: ...
    def shell(self) -> Any: ...
    def feeder(self) -> Any: ...
    def home(self) -> str: ...
    def login_names(self) -> tuple[str, ...]: ...
    def node(self, spec: HopSpec) -> Connection: ...
    def node_ssh(self, spec: HopSpec, *words: str, control: str = "") -> list[str]: ...
    @property
    def master(self) -> Master: ...
    def close(self) -> None: ...


@dataclass
class Hops:
    """One connection per hop, opened on first use and reused for every step of one run.

    ``interactive``: whether logging in may ask the user (passphrase, second factor) on the terminal;
    the watcher passes False and gets :class:`PromptNeeded` instead of a prompt.
    Use as a context manager, or call :meth:`close`: it closes the whole chain, innermost first.
    """

    settings: LabSettings
    interactive: bool = True
    transport: str = ""
    pin: str = ""  # a login node's own name: reach that node, not whichever the cluster's name gives
    _carrier: Carrier = field(init=False)
    _nodes: dict[str, Connection] = field(default_factory=dict)

    @classmethod
    def for_lab(cls, settings: LabSettings, via: str, login_host: str, interactive: bool = True) -> Hops:
        """The hops to a lab: pinned to the login node it was submitted from when its mode lives there."""
        return cls(settings, interactive=interactive, pin=modes.mode(via).pin(login_host))

    def __post_init__(self) -> None:
        if self.pin and not untrusted.host(self.pin):  # from the cluster: it becomes a HostName or a gateway
            raise LabError(f"the lab names its login node {untrusted.quoted(self.pin)}, which is not a host name: "
                           "refusing it.")
        self.transport = self.transport or choose_transport(self.settings)
        if self.openssh:
            from .openssh_hops import OpenSSHCarrier as carrier
        else:
            from .paramiko_hops import ParamikoCarrier as carrier
        self._carrier = carrier(self.settings, pin=self.pin, interactive=self.interactive,
                                prompter=Prompter(self.interactive))

    def __enter__(self) -> Hops:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def openssh(self) -> bool:
        return self.transport == "openssh"

    @property
    def master(self) -> Master:
        """The cluster's OpenSSH master (OpenSSH transport only), opened on first use."""
        return self._carrier.master

    def login(self) -> Connection:
        """The login node, through the jump host (``lab.jump``, else the ssh config's ProxyJump or
        ProxyCommand for the login alias)."""
        return self._carrier.login()

    def shell(self):
        """Something to run commands on the login node with (``remote.run``): on OpenSSH a plain ``ssh -S``
        (no Fabric, no Paramiko loaded), else the login Connection itself."""
        return self._carrier.shell()

    def feeder(self):
        """Something to run a command with its standard input given whole (``remote.run_command(...,
        data=)``): an upload in the same command as what uses it, never in a command line."""
        return self._carrier.feeder()

    def home(self) -> str:
        """The user's home directory on the login node (on OpenSSH learnt once per master)."""
        return self._carrier.home()

    def login_names(self) -> tuple[str, ...]:
        """The login node this run reaches, by its own names: ``hostname`` and, where it differs,
        ``hostname -f`` (checked: host names only)."""
        return self._carrier.login_names()

    def login_spec(self) -> HopSpec:
        """The login node as resolved (on OpenSSH, without opening anything: the master is enough)."""
        return self._carrier.login_spec()

    def node_spec(self, address: str) -> HopSpec:
        """A compute node is reached with the login node's user, keys and known hosts (its name checked
        before anything is opened)."""
        address = checked_node(address)
        return node_spec(self.login_spec(), address)

    def node(self, address: str) -> Connection:
        """A compute node as a Paramiko Connection, through the login node (over the master's ``ssh -W``
        on the OpenSSH transport)."""
        if address not in self._nodes:
            self._nodes[address] = self._carrier.node(self.node_spec(address))
        return self._nodes[address]

    def node_ssh(self, address: str, *words: str, control: str = "") -> list[str]:
        """``ssh`` to a compute node through the master (OpenSSH transport), checking the node's key;
        ``control``: a ControlMaster socket of its own (``forwards.openssh_forward.NodeLink``)."""
        return self._carrier.node_ssh(self.node_spec(address), *words, control=control)

    def close(self) -> None:
        self._carrier.close()
        self._nodes.clear()


def pinned_unreachable(pin: str, exc: LabError) -> ConnectError:
    """The lab lives on login node ``pin``, which cannot be reached by its own name: say so, and what works."""
    return ConnectError(f"login node {pin} cannot be reached by its own name ({exc}); a reverse-mode lab ends "
                        "on that node, so its forward cannot open. The job is kept. Compute and login modes work "
                        f"from any login node: `{commands.run('cancel')}` this lab and start the next with "
                        "`--via compute` (or login).")
