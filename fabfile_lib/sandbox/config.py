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
from .addresses import HOSTS, Addresses, Link

__all__ = ["HOSTS", "Addresses", "Link", "SandboxConfig"]
_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")


class _Under:
    """A path under the sandbox's directory, as an attribute: ``cfg.ssh_config`` is ``cfg.path / "ssh_config"``."""

    def __init__(self, *parts: str):
        self.parts = parts

    def __get__(self, cfg: SandboxConfig | None, owner: type | None = None):
        return self if cfg is None else cfg.path.joinpath(*self.parts)


def _login_nodes(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise LabError(f"sandbox.login_nodes must be 1 or 2, not {value!r}.") from None


_COERCE = {"jupyter_packages": tuple, "mfa": bool, "login_nodes": _login_nodes}


@dataclass(frozen=True)
class SandboxConfig:
    name: str = "sbx"
    subnet: str = "10.250.0.0/24"
    dir: str = ""  # empty: /var/tmp/fabfile-lab/<name>
    user: str = ""
    venv: str = "/var/tmp/fabfile-lab/jupyter-venv"
    # The apps tested here, and what labs start from their notebooks (Dask: LocalCluster, SLURMCluster).
    jupyter_packages: tuple[str, ...] = ("jupyterlab", "notebook", "marimo", "distributed", "dask-jobqueue", "bokeh")
    code_server: str = "/var/tmp/fabfile-lab/code-server"  # where code-server is built once ("": none)
    mfa: bool = False  # the jump host demands publickey, then a TOTP code (keyboard-interactive, PAM)
    login_nodes: int = 1  # 2: a second login node with the first's host key, both behind one name

    def __post_init__(self) -> None:
        if not self.dir:
            object.__setattr__(self, "dir", f"/var/tmp/fabfile-lab/{self.name}")

    @classmethod
    def from_mapping(cls, data: dict) -> SandboxConfig:
        """Build from the ``sandbox`` section of an Invoke config, validating every field."""
        known = {k: _COERCE.get(k, str)(data[k]) for k in cls.__dataclass_fields__ if data.get(k) is not None}
        cfg = cls(**known)
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
        return self.addresses.network

    @property
    def addresses(self) -> Addresses:
        """Where each host of this sandbox is (its links, routes and addresses)."""
        return Addresses(self.subnet, self.login_nodes)

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
    def cluster_name(self) -> str:
        """The one name the login nodes sit behind (with two login nodes)."""
        return f"{self.name}-cluster"

    def address(self, host: str) -> str:
        """The address by which a host is reached from the host before it in the chain."""
        return self.addresses.of(host)

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

    totp_secret = _Under("mfa", "totp.secret")  # base32, as authenticator apps and pyotp take it
    oath_users = _Under("mfa", "users.oath")
