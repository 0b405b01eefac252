"""Where a hop really is: an alias or ``[user@]host[:port]`` resolved as OpenSSH would (``ssh -G``), or by
Paramiko's ``SSHConfig`` where there is no ssh to ask."""

from __future__ import annotations

import dataclasses
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import openssh, untrusted
from .errors import LabError
from .settings import LabSettings

if TYPE_CHECKING:
    import paramiko


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
    import paramiko

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


def checked_node(address: str) -> str:
    """A node's name or address from the cluster, before it becomes a HostName, a -W target or a host key's
    name; a LabError if it is not one."""
    if not untrusted.host(address):
        raise LabError(f"the job's node is named {untrusted.quoted(address)}, which is not a host name or an IP "
                       "address: refusing it.")
    return address


def pinned(spec: HopSpec, pin: str) -> HopSpec:
    """``spec`` with the pinned login node's own name as its host name (everything else kept); a
    ProxyCommand that named the host gets the pinned name instead."""
    if not pin:
        return spec
    command = spec.proxy_command.replace(spec.hostname, pin) if spec.hostname else spec.proxy_command
    return dataclasses.replace(spec, hostname=pin, proxy_command=command)


def node_spec(login: HopSpec, address: str) -> HopSpec:
    """A compute node, reached with the login node's user, keys and known hosts."""
    address = checked_node(address)
    return HopSpec(label=address, hostname=address, user=login.user, identities=login.identities,
                   identities_only=login.identities_only, known_hosts=login.known_hosts, accept_new=login.accept_new)


def resolve_openssh(spec: str, settings: LabSettings, *, memo: dict | None = None) -> HopSpec:
    """The same, read from ``ssh -G``: OpenSSH's own answer (Include, Match, defaults and all)."""
    opts = openssh.effective(spec, settings.ssh_config_path, memo=memo)
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
