"""The local record of each lab: one 0600 JSON file per lab name in a 0700 directory.

It holds what every later step needs -- where the cluster is, job id, node, ports, token, mode, remote
directory, the background forward's pid -- so that ``lab.tunnel``, ``lab.status`` or ``lab.cancel`` work
from another terminal, after a reboot of the laptop, or from a team's own tasks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import LabError
from .settings import check_name


@dataclass
class LabRecord:
    name: str
    settings: dict
    job_id: str
    remote_dir: str
    token: str
    via: str
    local_port: int = 0
    node: str = ""
    node_addr: str = ""
    jupyter_port: int = 0
    remote_host: str = ""
    remote_port: int = 0
    url_path: str = "/lab"
    forward_pid: int = 0
    forward_started: str = ""
    forward_port: int = 0
    created: float = 0.0

    def url(self, port: int | None = None) -> str:
        port = port or self.forward_port or self.local_port
        return f"http://127.0.0.1:{port}{self.url_path}?token={self.token}" if port else ""


def _dir(state_dir: Path) -> Path:
    labs = state_dir / "labs"
    labs.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (state_dir, labs):
        path.chmod(0o700)
    return labs


def path_for(state_dir: Path, name: str) -> Path:
    """The record of lab ``name``; a name that could leave the state directory is refused."""
    return _dir(state_dir) / f"{check_name(name)}.json"


def save(state_dir: Path, record: LabRecord) -> None:
    """Write atomically (temp file + rename), created 0600 so the token is never readable by others."""
    target = path_for(state_dir, record.name)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(record), fh, indent=2)
    os.replace(tmp, target)


def load(state_dir: Path, name: str) -> LabRecord:
    path = path_for(state_dir, name)
    if not path.exists():
        raise LabError(f"no lab named {name!r} is recorded here: `inv lab.list` shows the labs, "
                       "`inv lab.start --name NAME` starts one.")
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(LabRecord)}
        return LabRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as exc:
        raise LabError(f"the record {path} is damaged ({exc}): remove it and cancel the job by hand.") from None


def exists(state_dir: Path, name: str) -> bool:
    return path_for(state_dir, name).exists()


def remove(state_dir: Path, name: str) -> None:
    """Forget a lab: its record, its background forward's log and its ssh config entry."""
    path_for(state_dir, name).unlink(missing_ok=True)
    log_path(state_dir, name).unlink(missing_ok=True)
    ssh_entry_path(state_dir, name).unlink(missing_ok=True)


def names(state_dir: Path) -> list[str]:
    return sorted(p.stem for p in _dir(state_dir).glob("*.json"))


def log_path(state_dir: Path, name: str) -> Path:
    """The background forward's own log (never holds the token)."""
    return _dir(state_dir) / f"{check_name(name)}.forward.log"


def ssh_dir(state_dir: Path) -> Path:
    """ssh config entries for IDEs (``lab.vscode``), one file per lab."""
    return state_dir / "ssh"


def ssh_entry_path(state_dir: Path, name: str) -> Path:
    return ssh_dir(state_dir) / f"{check_name(name)}.conf"
