"""The SSH hops from the laptop to the cluster: jump host, login node and, on demand, compute node.

Why not let Fabric read the ssh config by itself? Fabric hard-codes ``AutoAddPolicy``, never loads
known_hosts, and builds the ProxyJump gateways it finds in ssh_config with that same policy, so a hop
whose key changed would be trusted silently. Here each alias is resolved with Paramiko's ``SSHConfig``
(user, port, identity files, known hosts files, ProxyJump, ProxyCommand), every ``Connection`` in the
chain -- gateways included -- gets the known hosts loaded and ``RejectPolicy`` before it opens, and the
chain is closed as a whole (``Connection.close()`` leaves its gateway open).
"""

from __future__ import annotations

import getpass
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection

from .errors import LabError
from .settings import LabSettings


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


def resolve(spec: str, config: paramiko.SSHConfig, settings: LabSettings) -> HopSpec:
    """What OpenSSH would use for ``spec`` (an alias or ``[user@]host[:port]``) under ``config``."""
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
        proxy_jump="" if opts.get("proxyjump", "none").lower() == "none" else opts["proxyjump"],
        proxy_command="" if opts.get("proxycommand", "none").lower() == "none" else opts["proxycommand"],
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


def _prepare(conn: Connection, spec: HopSpec) -> None:
    client = conn.client
    keys = client.get_host_keys()
    for path in spec.known_hosts:
        if Path(path).exists():
            try:
                keys.load(path)
            except OSError as exc:
                raise LabError(f"cannot read known hosts file {path}: {exc}") from None
    policy = AcceptNewPolicy(spec.known_hosts[0]) if spec.accept_new else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)


def _open(conn: Connection, spec: HopSpec, settings: LabSettings, via: str) -> None:
    where = f"{spec.label} ({spec.user}@{spec.hostname}:{spec.port}{via})"
    files = ", ".join(spec.known_hosts)
    try:
        conn.open()
    except paramiko.BadHostKeyException:
        raise LabError(
            f"host key of {where} does not match the one in {files}: refusing to connect. If the host was "
            f"really re-keyed, verify the new key and replace its line (ssh-keygen -R {spec.hostname})."
        ) from None
    except paramiko.AuthenticationException as exc:
        raise LabError(f"authentication to {where} failed ({exc}): check the user and IdentityFile.") from None
    except paramiko.SSHException as exc:
        if "known_hosts" in str(exc):
            raise LabError(
                f"{where} is not in the known hosts ({files}): refusing an unverified host. Connect once "
                "with ssh to check and record its key, or set lab.accept_new_host_keys: true."
            ) from None
        raise LabError(f"cannot connect to {where}: {exc or type(exc).__name__}") from None
    except (OSError, EOFError) as exc:
        raise LabError(f"cannot reach {where}: {exc or type(exc).__name__}") from None
    conn.transport.set_keepalive(settings.keepalive)


@dataclass
class Hops:
    """One connection per hop, opened on first use and reused for every step of one run.

    Use as a context manager, or call :meth:`close`: it closes the whole chain, innermost first.
    """

    settings: LabSettings
    _config: paramiko.SSHConfig | None = None
    _opened: list[Connection] = field(default_factory=list)
    _login: Connection | None = None
    _login_spec: HopSpec | None = None
    _nodes: dict[str, Connection] = field(default_factory=dict)

    def __enter__(self) -> Hops:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ssh_config(self) -> paramiko.SSHConfig:
        if self._config is None:
            self._config = load_ssh_config(self.settings.ssh_config_path)
        return self._config

    def connect(self, spec: HopSpec, gateway: Connection | str | None, via: str = "") -> Connection:
        key_files = list(spec.identities) or None
        conn = Connection(
            spec.hostname, user=spec.user, port=spec.port, gateway=gateway,
            connect_timeout=self.settings.connect_timeout,
            connect_kwargs={"key_filename": key_files, "look_for_keys": not spec.identities_only,
                            "allow_agent": not spec.identities_only,
                            "banner_timeout": self.settings.connect_timeout,
                            "auth_timeout": self.settings.connect_timeout},
            # An explicit empty SSHConfig: Fabric must not re-apply the file with its own policies.
            config=Config(ssh_config=paramiko.SSHConfig()),
        )
        _prepare(conn, spec)
        _open(conn, spec, self.settings, via)
        self._opened.append(conn)
        return conn

    def _reach(self, target: str) -> tuple[Connection, HopSpec]:
        spec = resolve(target, self.ssh_config, self.settings)
        gateway: Connection | str | None = None
        via = ""
        if spec.proxy_jump:
            first, *rest = [hop.strip() for hop in spec.proxy_jump.split(",")]
            gateway, _ = self._reach(first)
            for hop in rest:
                gateway = self.connect(resolve(hop, self.ssh_config, self.settings), gateway, " via the previous hop")
            via = f" via {spec.proxy_jump}"
        elif spec.proxy_command:
            gateway, via = spec.proxy_command, f" via ProxyCommand {spec.proxy_command!r}"
        return self.connect(spec, gateway, via), spec

    def login(self) -> Connection:
        """The login node, through the jump host (``lab.jump``, else the ssh config's ProxyJump or
        ProxyCommand for the login alias)."""
        if self._login is None:
            if self.settings.jump:
                jump, _ = self._reach(self.settings.jump)
                spec = resolve(self.settings.login, self.ssh_config, self.settings)
                self._login = self.connect(spec, jump, f" via {self.settings.jump}")
            else:
                self._login, spec = self._reach(self.settings.login)
            self._login_spec = spec
        return self._login

    def node(self, address: str) -> Connection:
        """A compute node, through the login node, with the login node's user, keys and known hosts."""
        if address not in self._nodes:
            login = self.login()
            base = self._login_spec
            assert base is not None
            spec = HopSpec(label=address, hostname=address, user=base.user, identities=base.identities,
                           identities_only=base.identities_only, known_hosts=base.known_hosts,
                           accept_new=base.accept_new)
            self._nodes[address] = self.connect(spec, login, f" via {self.settings.login}")
        return self._nodes[address]

    def close(self) -> None:
        for conn in reversed(self._opened):
            conn.close()
        self._opened.clear()
        self._nodes.clear()
        self._login = None


def run(conn: Connection, argv: list[str], *, check: bool = True, timeout: float = 60) -> str:
    """Run ``argv`` on ``conn`` with every word shell-quoted; a failure becomes a LabError."""
    try:
        result = conn.run(shlex.join(argv), hide=True, warn=True, in_stream=False, timeout=timeout)
    except (TimeoutError, paramiko.SSHException, OSError) as exc:
        raise LabError(f"`{argv[0]}` on {conn.host} failed: {exc}") from None
    except Exception as exc:  # invoke's CommandTimedOut and friends
        raise LabError(f"`{argv[0]}` on {conn.host} did not finish: {exc}") from None
    if check and result.exited != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"`{argv[0]}` on {conn.host} failed: {lines[-1] if lines else f'exit {result.exited}'}")
    return result.stdout
