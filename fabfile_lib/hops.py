"""The hops from the laptop to the cluster -- jump host, login node, compute node -- as Fabric Connections.

Two carriers, one interface. Where the laptop's OpenSSH can hold a ControlMaster (Linux, macOS), the login
node is a :class:`~fabfile_lib.master_connection.MasterConnection` riding one authenticated master per
cluster: OpenSSH does authentication (second factor, FIDO keys, certificates, agent) and host-key checks
with the user's own config, once. Elsewhere (Windows, or ``lab.transport: paramiko``) every hop is a
Paramiko Connection built here.

Why build the Paramiko hops instead of letting Fabric read the ssh config? Fabric hard-codes
``AutoAddPolicy``, never loads known_hosts, and builds the ProxyJump gateways it finds with that same
policy, so a hop whose key changed would be trusted silently. Here each alias is resolved (by ``ssh -G``
where ssh exists, else Paramiko's ``SSHConfig``), every Connection in the chain -- gateways included --
gets the known hosts and ``RejectPolicy`` before it opens, keyboard-interactive (a second factor) is
answered on the terminal at most once per hop and run, and the chain is closed as a whole
(``Connection.close()`` leaves its gateway open).
"""

from __future__ import annotations

import base64
import dataclasses
import getpass
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection

from . import commands, modes, openssh, untrusted
from .errors import AuthenticationError, ConnectError, HostKeyError, LabError, PromptNeeded
from .master import Master, plan
from .master_connection import MasterConnection
from .settings import LabSettings

_log = logging.getLogger(__name__)

@dataclass(frozen=True)
class HopSpec:
    label: str
    hostname: str
    user: str
    port: int = 22
    identities: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = ()
    accept_new: bool = False
    proxy_jump: str = ""
    proxy_command: str = ""


def _split(spec: str) -> tuple[str, str, int | None]:
    user, _, hostport = spec.rpartition("@")
    host, sep, port = hostport.partition(":")
    if sep and not port.isdigit():
        raise LabError(f"host {spec!r}: the port after ':' must be a number.")
    return user, host, int(port) if sep else None


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    if path is None:
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise LabError(f"cannot read ssh config {path}: {exc}") from None


def _none(value: str) -> str:
    return "" if not value or value.lower() == "none" else value


def resolve(spec: str, config: paramiko.SSHConfig, settings: LabSettings) -> HopSpec:
    """What OpenSSH would use for ``spec`` (an alias or ``[user@]host[:port]``), read by Paramiko's
    ``SSHConfig``: the fallback where there is no ``ssh`` to ask."""
    user, host, port = _split(spec)
    opts = config.lookup(host)
    files = opts.get("userknownhostsfile", "~/.ssh/known_hosts").split()
    strict = opts.get("stricthostkeychecking", "").lower()
    return HopSpec(
        label=spec,
        hostname=opts.get("hostname", host),
        user=user or opts.get("user") or getpass.getuser(),
        port=port or int(opts.get("port", 22)),
        identities=tuple(str(Path(p).expanduser()) for p in opts.get("identityfile", [])),
        identities_only=opts.get("identitiesonly", "no").lower() == "yes",
        known_hosts=tuple(str(Path(f).expanduser()) for f in files),
        accept_new=settings.accept_new_host_keys or strict == "accept-new",
        proxy_jump=_none(opts.get("proxyjump", "")),
        proxy_command=_none(opts.get("proxycommand", "")),
    )


def resolve_openssh(spec: str, settings: LabSettings) -> HopSpec:
    """The same, read from ``ssh -G``: OpenSSH's own answer (Include, Match, defaults and all)."""
    opts = openssh.effective(spec, settings.ssh_config_path)
    first = openssh.first
    files = " ".join(opts.get("userknownhostsfile", ["~/.ssh/known_hosts"])).split()
    return HopSpec(
        label=spec,
        hostname=first(opts, "hostname", _split(spec)[1]),
        user=first(opts, "user") or getpass.getuser(),
        port=int(first(opts, "port", "22")),
        identities=openssh.existing_files(opts.get("identityfile", [])),
        identities_only=first(opts, "identitiesonly", "no") in ("yes", "true"),
        known_hosts=tuple(str(Path(f).expanduser()) for f in files),
        accept_new=settings.accept_new_host_keys or first(opts, "stricthostkeychecking") == "accept-new",
        proxy_jump=_none(first(opts, "proxyjump")),
        proxy_command=_none(first(opts, "proxycommand")),
    )


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


class Prompter:
    """Answers keyboard-interactive prompts (a second factor) on the terminal, at most once per hop.

    A run that cannot ask -- no terminal, or a background forward -- refuses with :class:`PromptNeeded`
    instead of hanging on input nobody will give.
    """

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.asked: set[str] = set()

    def handler(self, label: str):
        def answer(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            if not prompts:
                return []
            if not self.interactive or not openssh.tty_available():
                raise PromptNeeded(
                    f"logging in to {label} needs keyboard-interactive answers (a second factor) and nobody can "
                    f"be asked here: use the foreground `{commands.run('tunnel')}`, or lab.transport: openssh (a "
                    "ControlMaster) where OpenSSH is installed.")
            if label in self.asked:
                raise AuthenticationError(f"{label} asked for a second factor again: the code was refused.")
            self.asked.add(label)
            for text in (title, instructions):
                if text.strip():
                    print(text.strip(), file=sys.stderr)
            return [getpass.getpass(text) if not echo else _read_tty(text) for text, echo in prompts]

        return answer


def _read_tty(prompt: str) -> str:
    with open("/dev/tty", "r+") as tty:
        tty.write(prompt)
        tty.flush()
        return tty.readline().rstrip("\n")


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


@dataclass
class Hops:
    """One connection per hop, opened on first use and reused for every step of one run.

    ``interactive``: whether logging in may ask the user (passphrase, second factor) on the terminal;
    a background forward passes False and gets :class:`PromptNeeded` instead of a prompt.
    Use as a context manager, or call :meth:`close`: it closes the whole chain, innermost first.
    """

    settings: LabSettings
    interactive: bool = True
    transport: str = ""
    pin: str = ""  # a login node's own name: reach that node, not whichever the cluster's name gives
    _config: paramiko.SSHConfig | None = None
    _opened: list[Connection] = field(default_factory=list)
    _login: Connection | None = None
    _login_spec: HopSpec | None = None
    _nodes: dict[str, Connection] = field(default_factory=dict)
    _master: Master | None = None
    _started_master: bool = False
    _prompter: Prompter | None = None

    @classmethod
    def for_lab(cls, settings: LabSettings, via: str, login_host: str, interactive: bool = True) -> Hops:
        """The hops to a lab: pinned to the login node it was submitted from when its mode lives there."""
        return cls(settings, interactive=interactive, pin=modes.mode(via).pin(login_host))

    def __post_init__(self) -> None:
        if self.pin and not untrusted.host(self.pin):  # from the cluster: it becomes a HostName or a gateway
            raise LabError(f"the lab names its login node {untrusted.quoted(self.pin)}, which is not a host name: "
                           "refusing it.")
        self.transport = self.transport or choose_transport(self.settings)
        self._prompter = Prompter(self.interactive)

    def __enter__(self) -> Hops:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def openssh(self) -> bool:
        return self.transport == "openssh"

    @property
    def ssh_config(self) -> paramiko.SSHConfig:
        if self._config is None:
            self._config = load_ssh_config(self.settings.ssh_config_path)
        return self._config

    def resolve(self, spec: str) -> HopSpec:
        """Where ``spec`` (an alias or ``[user@]host[:port]``) really is, as ``ssh -G`` says (or
        Paramiko's SSHConfig where there is no OpenSSH)."""
        if openssh.ssh_binary():
            return resolve_openssh(spec, self.settings)
        return resolve(spec, self.ssh_config, self.settings)

    @property
    def master(self) -> Master:
        """The cluster's OpenSSH master (OpenSSH transport only), opened on first use."""
        if self._master is None:
            master = plan(self.settings, self.pin)
            try:
                self._started_master = master.open(interactive=self.interactive)
            except (HostKeyError, AuthenticationError, PromptNeeded):
                raise
            except ConnectError as exc:
                if not self.pin:
                    raise
                master = self._shared_on_pin()
                if master is None:
                    raise pinned_unreachable(self.pin, exc) from None
            self._master = master
        return self._master

    def _shared_on_pin(self) -> Master | None:
        """The cluster's own master, if it lands on the pinned node: where that node's own name does not
        resolve from the proxy, the cluster's name may still lead there (always, with one login node)."""
        shared = plan(self.settings)
        try:
            self._started_master = shared.open(interactive=self.interactive)
        except ConnectError:
            return None
        return shared if self.pin in shared.landed() else None

    def connect(self, spec: HopSpec, gateway: Connection | str | None, via: str = "",
                sock: paramiko.ProxyCommand | None = None) -> Connection:
        """A Paramiko hop: ``spec`` (from :meth:`resolve`) reached through ``gateway`` (a Connection,
        a ProxyCommand string, or None for a direct TCP connection) or ``sock``; ``via`` says how, in
        messages. Host keys are checked against the spec's known hosts before any authentication."""
        key_files = list(spec.identities) or None
        kwargs = {"key_filename": key_files, "look_for_keys": not spec.identities_only,
                  "allow_agent": not spec.identities_only, "banner_timeout": self.settings.connect_timeout,
                  "auth_timeout": self.settings.connect_timeout}
        if sock is not None:
            kwargs["sock"] = sock
        conn = Connection(
            spec.hostname, user=spec.user, port=spec.port, gateway=gateway,
            connect_timeout=self.settings.connect_timeout, connect_kwargs=kwargs,
            # An explicit empty SSHConfig: Fabric must not re-apply the file with its own policies.
            config=Config(ssh_config=paramiko.SSHConfig()),
        )
        assert self._prompter is not None
        _prepare(conn, spec, self._prompter)
        _log.debug("hop %s: connecting to %s@%s:%s%s (Paramiko)", spec.label, spec.user, spec.hostname, spec.port, via)
        _open(conn, spec, self.settings, via)
        _log.debug("hop %s: connected, host key verified", spec.label)
        self._opened.append(conn)
        return conn

    def _reach(self, target: str) -> tuple[Connection, HopSpec]:
        spec = self.resolve(target)
        gateway, via = self._gateway(spec)
        return self.connect(spec, gateway, via), spec

    def _gateway(self, spec: HopSpec) -> tuple[Connection | str | None, str]:
        """What carries the connection to ``spec``: its ProxyJump chain (opened now) or ProxyCommand."""
        if spec.proxy_jump:
            first, *rest = [hop.strip() for hop in spec.proxy_jump.split(",")]
            gateway, _ = self._reach(first)
            for hop in rest:
                gateway = self.connect(self.resolve(hop), gateway, " via the previous hop")
            return gateway, f" via {spec.proxy_jump}"
        if spec.proxy_command:
            return spec.proxy_command, f" via ProxyCommand {spec.proxy_command!r}"
        return None, ""

    def _pinned(self, spec: HopSpec) -> HopSpec:
        """``spec`` with the pinned login node's own name as its host name (everything else kept); a
        ProxyCommand that named the host gets the pinned name instead."""
        if not self.pin:
            return spec
        command = spec.proxy_command.replace(spec.hostname, self.pin) if spec.hostname else spec.proxy_command
        return dataclasses.replace(spec, hostname=self.pin, proxy_command=command)

    def login(self) -> Connection:
        """The login node, through the jump host (``lab.jump``, else the ssh config's ProxyJump or
        ProxyCommand for the login alias)."""
        if self._login is None:
            if self.openssh:
                spec = self._pinned(self.resolve(self.settings.login))
                _log.debug("hop %s: %s@%s:%s through %s (OpenSSH master)", spec.label, spec.user, spec.hostname,
                           spec.port, self.settings.jump or spec.proxy_jump or spec.proxy_command or "no jump")
                conn = MasterConnection(self.master, spec.hostname, spec.user, spec.port, opened=True)
                self._opened.append(conn)
                self._login = conn
            elif self.settings.jump:
                jump, _ = self._reach(self.settings.jump)
                spec = self._pinned(self.resolve(self.settings.login))
                self._login = self.connect(spec, jump, f" via {self.settings.jump}")
            elif self.pin:
                spec = self._pinned(self.resolve(self.settings.login))
                gateway = self._gateway(spec)
                try:
                    self._login = self.connect(spec, gateway[0], gateway[1])
                except ConnectError as exc:
                    raise pinned_unreachable(self.pin, exc) from None
            else:
                self._login, spec = self._reach(self.settings.login)
            self._login_spec = spec
        return self._login

    def login_names(self) -> tuple[str, ...]:
        """The login node this run reaches, by its own names: ``hostname`` and, where it differs,
        ``hostname -f`` (checked: host names only)."""
        if self.openssh:
            return self.master.landed()
        out = run(self.login(), untrusted.NAMES_COMMAND, check=False)
        return untrusted.host_names(out)

    def login_spec(self) -> HopSpec:
        self.login()
        assert self._login_spec is not None
        return self._login_spec

    def node_spec(self, address: str) -> HopSpec:
        """A compute node is reached with the login node's user, keys and known hosts."""
        if not untrusted.host(address):  # from the cluster: it becomes a HostName, a -W target, a host key name
            raise LabError(f"the job's node is named {untrusted.quoted(address)}, which is not a host name or an IP "
                           "address: refusing it.")
        base = self.login_spec()
        return HopSpec(label=address, hostname=address, user=base.user, identities=base.identities,
                       identities_only=base.identities_only, known_hosts=base.known_hosts,
                       accept_new=base.accept_new)

    def node(self, address: str) -> Connection:
        """A compute node as a Paramiko Connection, through the login node (over the master's ``ssh -W``
        on the OpenSSH transport)."""
        if address not in self._nodes:
            spec = self.node_spec(address)
            login = self.login()
            if self.openssh:
                sock = paramiko.ProxyCommand(shlex.join(self.master.argv("-W", f"{address}:22", self.master.dest)))
                conn = self.connect(spec, None, f" via {self.settings.login}", sock=sock)
            else:
                conn = self.connect(spec, login, f" via {self.settings.login}")
            self._nodes[address] = conn
        return self._nodes[address]

    def node_ssh(self, address: str, *words: str) -> list[str]:
        """``ssh`` to a compute node through the master (OpenSSH transport), checking the node's key."""
        spec = self.node_spec(address)
        master = self.master
        opts = ["-o", f"ProxyCommand={master.proxy_command()}", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", "BatchMode=yes", "-l", spec.user, "-p", "22",
                "-o", f"UserKnownHostsFile={' '.join(spec.known_hosts)}",
                "-o", f"StrictHostKeyChecking={'accept-new' if spec.accept_new else 'yes'}",
                "-o", f"IdentitiesOnly={'yes' if spec.identities_only else 'no'}",
                "-o", f"ConnectTimeout={max(1, int(self.settings.connect_timeout))}",
                "-o", f"ServerAliveInterval={self.settings.keepalive}", "-o", "ServerAliveCountMax=3"]
        for ident in spec.identities:
            opts += ["-i", ident]
        return [openssh.ssh_binary() or "ssh", *openssh.config_args(self.settings.ssh_config_path), *opts, "-T",
                *words, address]

    def close(self) -> None:
        for conn in reversed(self._opened):
            conn.close()
        self._opened.clear()
        self._nodes.clear()
        self._login = None
        if self._master is not None and self._started_master and self._master.persist == "0":
            self._master.close()  # lab.persist 0: no login is kept between tasks
        self._master = None


def pinned_unreachable(pin: str, exc: LabError) -> ConnectError:
    """The lab lives on login node ``pin``, which cannot be reached by its own name: say so, and what works."""
    return ConnectError(f"login node {pin} cannot be reached by its own name ({exc}); a reverse-mode lab ends "
                        "on that node, so its forward cannot open. The job is kept. Compute and login modes work "
                        f"from any login node: `{commands.run('cancel')}` this lab and start the next with "
                        "`--via compute` (or login).")


def run_command(conn: Connection, command: str, *, timeout: float = 60):
    """Run a shell ``command`` on ``conn`` and return Invoke's Result (any exit status); a connection that
    fails on the way -- SSH error, dead ProxyCommand or master, timeout -- becomes a ConnectError."""
    _log.debug("on %s: %s", conn.host, command)
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    except LabError:
        raise
    except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectError(f"`{command.split()[0]}` on {conn.host} failed: {exc or type(exc).__name__}") from None
    except Exception as exc:  # invoke's CommandTimedOut and friends
        raise ConnectError(f"`{command.split()[0]}` on {conn.host} did not finish: {exc}") from None
    _log.debug("on %s: exit %s", conn.host, result.exited)
    if isinstance(conn, MasterConnection) and result.exited == 255:
        raise openssh.explain(result.stderr, f"`{command.split()[0]}` on {conn.host}", 255)
    return result


def bash_script(script: str, *args: str) -> str:
    """A command that runs a (multi-line) bash ``script`` with ``args`` whatever the user's login shell is:
    the script travels base64-encoded on one line, which csh and tcsh pass on as sh does (a multi-line
    quoted ``bash -c`` would not survive them), and the script's stdin stays the command's own."""
    encoded = base64.b64encode(script.encode()).decode()
    inner = 'eval "$(printf %s ' + encoded + ' | base64 -d)"'
    return f"bash -c {shlex.quote(inner)} bash {shlex.join(args)}".rstrip()


def run(conn: Connection, argv: list[str], *, check: bool = True, timeout: float = 60) -> str:
    """Run ``argv`` on ``conn`` with every word shell-quoted; a failure becomes a LabError."""
    result = run_command(conn, shlex.join(argv), timeout=timeout)
    if check and result.exited != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"`{argv[0]}` on {conn.host} failed: {lines[-1] if lines else f'exit {result.exited}'}")
    return result.stdout
