"""The ``lab`` configuration: where the cluster is, how to launch Jupyter there, and how to reach it.

Read from Invoke's config (``invoke.yaml``, ``inv -f FILE``, environment), validated once here so that
every later step can trust it and a bad value is reported before anything is submitted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError

MODES = ("compute", "login", "reverse")
TRANSPORTS = ("auto", "openssh", "paramiko")
_PERSIST = re.compile(r"^(0|yes|no|(\d+[smhdwSMHDW]?)+)$")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
# Options the tool sets itself: the job's log must land in the private lab directory.
_RESERVED = {"output", "error", "chdir", "parsable", "wrap", "export", "export-file"}

DEFAULTS: dict = {
    "ssh_config": "~/.ssh/config",
    "login": "",
    "jump": "",
    "via": "compute",
    "sbatch": {"time": "01:00:00"},
    "setup": [],
    "command": "jupyter lab",
    "notebook_dir": "",
    "local_port": 0,
    "name": "default",
    "wait_timeout": 300,
    "accept_new_host_keys": False,
    "reverse_target": "",
    "remote_dir": "~/.fabfile-lab",
    "state_dir": "",
    "keepalive": 15,
    "connect_timeout": 15,
    "transport": "auto",
    "persist": "8h",
}


@dataclass(frozen=True)
class LabSettings:
    login: str
    ssh_config: str = DEFAULTS["ssh_config"]
    jump: str = ""
    via: str = "compute"
    sbatch: Mapping[str, object] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    command: str = "jupyter lab"
    notebook_dir: str = ""
    local_port: int = 0
    name: str = "default"
    wait_timeout: float = 300
    accept_new_host_keys: bool = False
    reverse_target: str = ""
    remote_dir: str = "~/.fabfile-lab"
    state_dir: str = ""
    keepalive: int = 15
    connect_timeout: float = 15
    transport: str = "auto"
    persist: str = "8h"

    @classmethod
    def from_config(cls, data: Mapping, **overrides) -> LabSettings:
        merged = {**DEFAULTS, **{k: v for k, v in dict(data).items() if v is not None}}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in merged.items() if k in names}
        kwargs["setup"] = tuple(str(line) for line in (kwargs.get("setup") or ()))
        kwargs["sbatch"] = dict(kwargs.get("sbatch") or {})
        persist = kwargs.get("persist", "8h")
        kwargs["persist"] = "0" if persist is False or persist == 0 else str(persist).strip()
        try:
            kwargs["local_port"] = int(kwargs["local_port"])
            kwargs["wait_timeout"] = float(kwargs["wait_timeout"])
            kwargs["keepalive"] = int(kwargs["keepalive"])
            kwargs["connect_timeout"] = float(kwargs["connect_timeout"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"lab config: a numeric setting is not a number ({exc}).") from None
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.login:
            raise ConfigError("lab.login is not set: give the login host (ssh alias or [user@]host[:port]) "
                           "in invoke.yaml or with `inv -f FILE`.")
        if self.via not in MODES:
            raise ConfigError(f"lab.via {self.via!r} is unknown: use one of {', '.join(MODES)}.")
        if not _NAME.match(self.name):
            raise ConfigError(f"lab name {self.name!r} is invalid: use letters, digits, '.', '_' or '-'.")
        if not 0 <= self.local_port <= 65535:
            raise ConfigError(f"lab.local_port {self.local_port} is out of range (0 = any free port).")
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"lab.transport {self.transport!r} is unknown: use one of {', '.join(TRANSPORTS)}.")
        if not _PERSIST.match(self.persist):
            raise ConfigError(f"lab.persist {self.persist!r} is not a duration: use e.g. 8h, 30m, 3600, or 0 for off.")
        if self.keepalive < 1:
            raise ConfigError(f"lab.keepalive {self.keepalive} must be at least 1 second.")
        if self.ssh_config and self._ssh_config_set and not Path(self.ssh_config).expanduser().is_file():
            raise ConfigError(f"lab.ssh_config {self.ssh_config!r} does not exist: fix the path, or set it to "
                              f"\"\" to use ssh's defaults.")
        if not self.command.strip():
            raise ConfigError("lab.command is empty: use e.g. 'jupyter lab'.")
        for key, value in self.sbatch.items():
            if not _OPTION.match(str(key)):
                raise ConfigError(f"lab.sbatch option {key!r} is not a long option name (e.g. partition).")
            if str(key) in _RESERVED:
                raise ConfigError(f"lab.sbatch option {key!r} is set by the tool itself; remove it.")
            if "\n" in str(value) or "\r" in str(value):
                raise ConfigError(f"lab.sbatch option {key!r} has a line break in its value.")
        for line in (*self.setup, self.command, self.notebook_dir):
            if "\n" in line or "\r" in line:
                raise ConfigError(f"lab config: {line!r} has a line break; give one setup line per list item.")

    @property
    def state_path(self) -> Path:
        return state_path(self.state_dir)

    @property
    def _ssh_config_set(self) -> bool:
        """The default ~/.ssh/config may be absent; a path the user chose must exist."""
        return self.ssh_config != DEFAULTS["ssh_config"]

    @property
    def ssh_config_path(self) -> Path | None:
        path = Path(self.ssh_config).expanduser() if self.ssh_config else None
        return path if path and path.exists() else None


def state_path(state_dir: str = "") -> Path:
    """Where lab records live: ``lab.state_dir``, else ``$XDG_STATE_HOME/fabfile-lab``."""
    if state_dir:
        return Path(state_dir).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fabfile-lab"


def local_lab(config: Mapping, name: str | None = None) -> tuple[Path, str]:
    """The state directory and lab name from a ``lab`` config, without requiring the cluster settings:
    a recorded lab carries its own."""
    return state_path(str(config.get("state_dir") or "")), name or str(config.get("name") or DEFAULTS["name"])
