"""What one sandbox is called, where it lives and which addresses it uses.

Everything a sandbox creates on the machine is derived from three settings -- ``name``, ``subnet`` and
``dir`` -- so that two sandboxes with different settings never touch each other's namespaces, links,
routes, processes or files, and so that ``down`` can find everything ``up`` made even when ``up`` was
interrupted half way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabError

HOSTS = ("jump", "login", "compute")
_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


@dataclass(frozen=True)
class Link:
    """A veth pair: ``left`` side (``None`` = the root namespace, the laptop) and ``right`` side."""

    left: str | None
    right: str
    left_addr: str
    right_addr: str
    prefix: int = 30


class _Under:
    """A path under the sandbox's directory, as an attribute: ``cfg.ssh_config`` is ``cfg.path / "ssh_config"``."""

    def __init__(self, *parts: str):
        self.parts = parts

    def __get__(self, cfg: SandboxConfig | None, owner: type | None = None):
        return self if cfg is None else cfg.path.joinpath(*self.parts)


@dataclass(frozen=True)
class SandboxConfig:
    name: str = "sbx"
    subnet: str = "10.250.0.0/24"
    dir: str = ""  # empty: /var/tmp/fabfile-lab/<name>
    user: str = ""
    venv: str = "/var/tmp/fabfile-lab/jupyter-venv"
    jupyter_packages: tuple[str, ...] = ("jupyterlab",)
    mfa: bool = False  # the jump host demands publickey, then a TOTP code (keyboard-interactive, PAM)
    login_nodes: int = 1  # 2: a second login node with the first's host key, both behind one name

    def __post_init__(self) -> None:
        if not self.dir:
            object.__setattr__(self, "dir", f"/var/tmp/fabfile-lab/{self.name}")

    @classmethod
    def from_mapping(cls, data: dict) -> SandboxConfig:
        """Build from the ``sandbox`` section of an Invoke config, validating every field."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and data[k] is not None}
        if "jupyter_packages" in known:
            known["jupyter_packages"] = tuple(known["jupyter_packages"])
        if "mfa" in known:
            known["mfa"] = bool(known["mfa"])
        if "login_nodes" in known:
            try:
                known["login_nodes"] = int(known["login_nodes"])
            except (TypeError, ValueError):
                raise LabError(f"sandbox.login_nodes must be 1 or 2, not {known['login_nodes']!r}.") from None
        typed = ("jupyter_packages", "mfa", "login_nodes")
        cfg = cls(**{k: (str(v) if k not in typed else v) for k, v in known.items()})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise LabError(
                f"sandbox.name {self.name!r} is invalid: use 1-10 lower-case letters or digits, "
                "starting with a letter (it prefixes namespace and interface names)."
            )
        net = self.network
        if not net.is_private or net.prefixlen > 28:
            raise LabError(
                f"sandbox.subnet {self.subnet!r} must be a private IPv4 range of /28 or larger, "
                "e.g. 10.250.0.0/24."
            )
        if not Path(self.dir).is_absolute():
            raise LabError(f"sandbox.dir {self.dir!r} must be an absolute path.")
        if self.login_nodes not in (1, 2):
            raise LabError(f"sandbox.login_nodes must be 1 or 2, not {self.login_nodes!r}.")

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise LabError(f"sandbox.subnet {self.subnet!r} is not an IPv4 network: {exc}.") from None

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def username(self) -> str:
        """The cluster user; one per sandbox by default, so each sandbox has its own home."""
        return self.user or f"{self.name}-user"

    def netns(self, host: str) -> str:
        return f"{self.name}-{host}"

    def hostname(self, host: str) -> str:
        return f"{self.name}-{host}"

    @property
    def root_ifname(self) -> str:
        """The laptop's end of the laptop--jump link; the only interface made in the root namespace."""
        return f"{self.name}-lap"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts of this sandbox: jump, login (and login2), compute."""
        return HOSTS if self.login_nodes == 1 else ("jump", "login", "login2", "compute")

    @property
    def login_hosts(self) -> tuple[str, ...]:
        return tuple(h for h in self.hosts if h.startswith("login"))

    @property
    def links(self) -> tuple[Link, ...]:
        base = self.network.network_address
        links = (
            Link(None, "jump", str(base + 1), str(base + 2)),
            Link("jump", "login", str(base + 5), str(base + 6)),
            Link("login", "compute", str(base + 9), str(base + 10)),
        )
        if self.login_nodes == 1:
            return links
        # login2: reached from the jump host, reaches the compute node and (for Slurm) the login node.
        return (*links, Link("jump", "login2", str(base + 13), str(base + 14)),
                Link("login2", "compute", str(base + 17), str(base + 18)),
                Link("login", "login2", str(base + 21), str(base + 22)))

    def routes(self, host: str) -> tuple[tuple[str, str], ...]:
        """(destination, gateway) routes a host needs beyond its links: login2 reaches slurmctld and the
        compute node's NodeAddr at the addresses every other host uses (no namespace forwards: the
        gateway is the very host that owns the destination address)."""
        if host != "login2":
            return ()
        base = self.network.network_address
        return ((self.login_from_compute, str(base + 21)), (self.address("compute"), str(base + 18)))

    @property
    def cluster_name(self) -> str:
        """The one name the login nodes sit behind (with two login nodes)."""
        return f"{self.name}-cluster"

    def from_compute(self, host: str) -> str:
        """A login node's address as the compute node reaches it (the target of the reverse hop)."""
        return self.login_from_compute if host == "login" else next(
            link.left_addr for link in self.links if link.left == host and link.right == "compute")

    def address(self, host: str) -> str:
        """The address by which a host is reached from the host before it in the chain."""
        return next(link.right_addr for link in self.links if link.right == host)

    @property
    def login_from_compute(self) -> str:
        """The login node's address on the login--compute link: the target of the reverse hop."""
        return self.links[2].left_addr

    # Files the sandbox writes; every path lives under ``dir``.
    ssh_config = _Under("ssh_config")
    known_hosts = _Under("laptop", "known_hosts")
    identity = _Under("laptop", "id_ed25519")
    lab_config = _Under("lab.yaml")
    slurm_conf = _Under("slurm", "slurm.conf")
    munge_socket = _Under("munge", "munge.socket")
    run_dir = _Under("run")
    log_dir = _Under("log")
    state_file = _Under("sandbox.json")
    resolver = _Under("bin", "resolve")

    @property
    def home(self) -> Path:
        return self.path / "home" / self.username

    # The second factor (``mfa``). PAM reads services only from /etc/pam.d, and sshd names its PAM service
    # after the name it was started as: the jump host's sshd runs as a link named like the service file.
    @property
    def pam_service(self) -> str:
        return f"fabfile-lab-{self.name}"

    @property
    def pam_file(self) -> Path:
        return Path("/etc/pam.d") / self.pam_service

    @property
    def sshd_link(self) -> Path:
        return self.path / "bin" / self.pam_service

    @property
    def totp_secret(self) -> Path:
        """The TOTP secret, base32 (as authenticator apps and pyotp take it)."""
        return self.path / "mfa" / "totp.secret"

    @property
    def oath_users(self) -> Path:
        return self.path / "mfa" / "users.oath"
