"""The Paramiko carrier: every hop a Paramiko-backed Fabric Connection built here, where OpenSSH cannot hold
a ControlMaster (Windows) or ``lab.transport: paramiko`` says so.

Why build the hops instead of letting Fabric read the ssh config? Fabric hard-codes ``AutoAddPolicy``,
never loads known_hosts, and builds the ProxyJump gateways it finds with that same policy, so a hop whose
key changed would be trusted silently. Here every Connection in the chain -- gateways included -- gets
the known hosts and ``RejectPolicy`` before it opens, keyboard-interactive (a second factor) is answered
on the terminal at most once per hop and run (``prompts.py``), and the chain is closed as a whole
(``Connection.close()`` leaves its gateway open).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from fabric import Config, Connection

from . import openssh, untrusted
from .errors import AuthenticationError, ConnectError, HostKeyError, LabError
from .hop_spec import HopSpec, load_ssh_config, pinned, resolve, resolve_openssh
from .master_shell import Result, text_of
from .prompts import Prompter
from .remote import run
from .settings import LabSettings

if TYPE_CHECKING:
    from .master import Master

_log = logging.getLogger(__name__)


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's ``accept-new``: trust and record a host seen for the first time; a changed key is still
    refused (Paramiko raises BadHostKeyException before asking a policy)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path, "a", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _InteractiveClient(paramiko.SSHClient):
    """Paramiko's client, whose "publickey, then keyboard-interactive" step asks through ``handler``
    instead of reading stdin (Paramiko's ``auth_interactive_dumb``)."""

    def __init__(self, handler):
        super().__init__()
        self._kbd_handler = handler

    def _auth(self, username, *args, **kwargs):
        transport = self._transport
        transport.auth_interactive_dumb = (
            lambda user, handler=None, submethods="": transport.auth_interactive(user, self._kbd_handler, submethods))
        return super()._auth(username, *args, **kwargs)


def _prepare(conn: Connection, spec: HopSpec, prompter: Prompter) -> None:
    conn.client = _InteractiveClient(prompter.handler(spec.label))
    keys = conn.client.get_host_keys()
    for path in spec.known_hosts:
        if Path(path).exists():
            try:
                keys.load(path)
            except OSError as exc:
                raise LabError(f"cannot read known hosts file {path}: {exc}") from None
    policy = AcceptNewPolicy(spec.known_hosts[0]) if spec.accept_new else paramiko.RejectPolicy()
    conn.client.set_missing_host_key_policy(policy)


def _open(conn: Connection, spec: HopSpec, settings: LabSettings, via: str) -> None:
    where = f"{spec.label} ({spec.user}@{spec.hostname}:{spec.port}{via})"
    files = ", ".join(spec.known_hosts)
    try:
        conn.open()
    except paramiko.BadHostKeyException:
        raise HostKeyError(
            f"host key of {where} does not match the one in {files}: refusing to connect. If the host was "
            f"really re-keyed, verify the new key and replace its line (ssh-keygen -R {spec.hostname})."
        ) from None
    except paramiko.AuthenticationException as exc:
        raise AuthenticationError(f"authentication to {where} failed ({exc}): check the user and "
                                  "IdentityFile.") from None
    except paramiko.ProxyCommandFailure as exc:
        raise ConnectError(f"cannot reach {where}: the ProxyCommand failed ({exc}).") from None
    except paramiko.SSHException as exc:
        if "known_hosts" in str(exc):
            raise HostKeyError(
                f"{where} is not in the known hosts ({files}): refusing an unverified host. Connect once "
                "with ssh to check and record its key, or set lab.accept_new_host_keys: true."
            ) from None
        raise ConnectError(f"cannot connect to {where}: {exc or type(exc).__name__}") from None
    except (OSError, EOFError) as exc:
        raise ConnectError(f"cannot reach {where}: {exc or type(exc).__name__}") from None
    conn.transport.set_keepalive(settings.keepalive)


def connect(spec: HopSpec, gateway: Connection | str | None, settings: LabSettings, prompter: Prompter, *,
            via: str = "", sock: paramiko.ProxyCommand | None = None) -> Connection:
    """A Paramiko hop: ``spec`` reached through ``gateway`` (a Connection, a ProxyCommand string, or None
    for a direct TCP connection) or ``sock``; ``via`` says how, in messages. Host keys are checked against
    the spec's known hosts before any authentication."""
    key_files = list(spec.identities) or None
    kwargs = {"key_filename": key_files, "look_for_keys": not spec.identities_only,
              "allow_agent": not spec.identities_only, "banner_timeout": settings.connect_timeout,
              "auth_timeout": settings.connect_timeout}
    if sock is not None:
        kwargs["sock"] = sock
    conn = Connection(
        spec.hostname, user=spec.user, port=spec.port, gateway=gateway,
        connect_timeout=settings.connect_timeout, connect_kwargs=kwargs,
        # An explicit empty SSHConfig: Fabric must not re-apply the file with its own policies.
        config=Config(ssh_config=paramiko.SSHConfig()),
    )
    _prepare(conn, spec, prompter)
    _log.debug("hop %s: connecting to %s@%s:%s%s (Paramiko)", spec.label, spec.user, spec.hostname, spec.port, via)
    _open(conn, spec, settings, via)
    _log.debug("hop %s: connected, host key verified", spec.label)
    return conn


def proxy_command(words: str) -> paramiko.ProxyCommand:
    return paramiko.ProxyCommand(words)


class FedShell:
    """Commands on a Paramiko Connection with their standard input given whole (an upload in one command):
    Invoke's runner would read an ``in_stream`` a byte at a time, seconds for a few kilobytes."""

    def __init__(self, conn: Connection):
        self.conn, self.host = conn, conn.host

    def run(self, command: str, *, hide: bool = True, warn: bool = True, in_stream: object = False,
            timeout: float | None = None, data: bytes | None = None) -> Result:
        stdin, stdout, stderr = self.conn.client.exec_command(command, timeout=timeout)
        with stdin:
            stdin.write(data or b"")
            stdin.channel.shutdown_write()
        out, err = stdout.read(), stderr.read()
        return Result(command, text_of(out), text_of(err), stdout.channel.recv_exit_status())


class ParamikoCarrier:
    """The hops of one run as Paramiko Connections: jump host (``lab.jump``, else the login alias's
    ProxyJump or ProxyCommand), login node, compute nodes through the login node."""

    def __init__(self, settings: LabSettings, *, pin: str, interactive: bool, prompter: Prompter):
        self.settings, self.pin, self.prompter = settings, pin, prompter
        self._config: paramiko.SSHConfig | None = None
        self._asked: dict = {}  # ssh -G's answers in this run
        self._opened: list[Connection] = []
        self._login: tuple[Connection, HopSpec] | None = None
        self._learnt: tuple[str, tuple[str, ...]] | None = None

    def resolve(self, spec: str) -> HopSpec:
        """Where ``spec`` (an alias or ``[user@]host[:port]``) really is, as ``ssh -G`` says, or Paramiko's
        SSHConfig where there is no OpenSSH."""
        if openssh.ssh_binary():
            return resolve_openssh(spec, self.settings, memo=self._asked)
        if self._config is None:
            self._config = load_ssh_config(self.settings.ssh_config_path)
        return resolve(spec, self._config, self.settings)

    def _connect(self, spec: HopSpec, gateway: Connection | str | None, via: str) -> Connection:
        conn = connect(spec, gateway, self.settings, self.prompter, via=via)
        self._opened.append(conn)
        return conn

    def _reach(self, target: str) -> tuple[Connection, HopSpec]:
        spec = self.resolve(target)
        gateway, via = self._gateway(spec)
        return self._connect(spec, gateway, via), spec

    def _gateway(self, spec: HopSpec) -> tuple[Connection | str | None, str]:
        """What carries the connection to ``spec``: its ProxyJump chain (opened now) or ProxyCommand."""
        if spec.proxy_jump:
            first, *rest = [hop.strip() for hop in spec.proxy_jump.split(",")]
            gateway, _ = self._reach(first)
            for hop in rest:
                gateway = self._connect(self.resolve(hop), gateway, " via the previous hop")
            return gateway, f" via {spec.proxy_jump}"
        if spec.proxy_command:
            return spec.proxy_command, f" via ProxyCommand {spec.proxy_command!r}"
        return None, ""

    def _log_in(self) -> tuple[Connection, HopSpec]:
        if self.settings.jump:
            jump, _ = self._reach(self.settings.jump)
            spec = pinned(self.resolve(self.settings.login), self.pin)
            return self._connect(spec, jump, f" via {self.settings.jump}"), spec
        if self.pin:
            from .hops import pinned_unreachable

            spec = pinned(self.resolve(self.settings.login), self.pin)
            gateway, via = self._gateway(spec)
            try:
                return self._connect(spec, gateway, via), spec
            except ConnectError as exc:
                raise pinned_unreachable(self.pin, exc) from None
        return self._reach(self.settings.login)

    def login(self) -> Connection:
        if self._login is None:
            self._login = self._log_in()
        return self._login[0]

    def login_spec(self) -> HopSpec:
        """Where the login node is, as learnt while logging in (the hops to it opened first)."""
        self.login()
        assert self._login is not None
        return self._login[1]

    def shell(self) -> Connection:
        return self.login()

    def feeder(self) -> FedShell:
        return FedShell(self.login())

    def home(self) -> str:
        return self._facts()[0]

    def login_names(self) -> tuple[str, ...]:
        return self._facts()[1]

    def _facts(self) -> tuple[str, tuple[str, ...]]:
        """The login node's home and names: one command per login, as the OpenSSH master learns them."""
        if self._learnt is None:
            self._learnt = untrusted.login_facts(run(self.login(), untrusted.FACTS_COMMAND, check=False))
        return self._learnt

    def node(self, spec: HopSpec) -> Connection:
        return self._connect(spec, self.login(), f" via {self.settings.login}")

    def node_ssh(self, spec: HopSpec, *words: str, control: str = "") -> list[str]:
        raise LabError("an ssh to a compute node needs the OpenSSH transport (lab.transport: paramiko is set, or "
                       "no OpenSSH client is installed).")

    @property
    def master(self) -> Master:
        raise LabError("there is no OpenSSH master on the Paramiko transport.")

    def close(self) -> None:
        for conn in reversed(self._opened):
            conn.close()
        self._opened.clear()
        self._login = self._learnt = None
