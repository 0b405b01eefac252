"""Which config files the ``fabfile-lab`` command reads, and which of their keys it takes.

A config value can run code as the user: ``lab.ssh_config`` names a file whose ``Match exec`` and
``ProxyCommand`` ssh runs, ``lab.setup``/``command``/``env`` run on the cluster, ``lab.login``/``jump``
receive the user's password and second factor, ``lab.state_dir`` moves the records that hold the token,
and keys outside ``lab:`` steer Invoke itself (``tasks.executor_class`` imports a module). So:

- the system file (``/etc/fabfile-lab.yaml``) is read only if root owns it and nobody else can write it or
  a directory above it; the user's own file, only if the user (or root) does;
- a project's ``fabfile-lab.yaml`` (found from the current directory upwards: a cloned repository, or
  ``/tmp``) only on the same condition, and then only for :data:`PROJECT_KEYS` -- resources, a name, a
  mode: data --, unless the user allowed that file as it is now (``fabfile-lab config allow``, recorded by
  content hash, as ``direnv allow`` does). An edited file must be allowed again.

A file that fails the check is skipped, not an error: the task goes on with the user's own settings, and
the command says which file and why in one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import file_trust, paths, state
from .errors import ConfigError
from .settings import DEFAULTS

SYSTEM_FILE = paths.SYSTEM_CONFIG
_MOST = 1 << 20  # a config file is small; a larger one is refused unread

# What a project may share: values that are data. (What else a `lab` mapping can hold reaches a shell, an
# ssh option, a host, a path of the laptop or the state.)
PROJECT_KEYS = frozenset({"name", "via", "app", "notebook_dir", "sbatch", "profiles", "local_port", "wait_timeout",
                          "keepalive", "connect_timeout", "persist", "idle"})
# sbatch options a project may set: resources and bookkeeping, exactly these names (sbatch would take any
# abbreviation of the options the tool sets itself; an exact list leaves none).
PROJECT_SBATCH = frozenset({
    "partition", "time", "time-min", "cpus-per-task", "mem", "mem-per-cpu", "mem-per-gpu", "gpus", "gres",
    "gpus-per-node", "gpus-per-task", "cpus-per-gpu", "nodes", "ntasks", "ntasks-per-node", "account", "qos",
    "constraint", "reservation", "exclusive", "licenses", "comment", "begin", "nice", "job-name", "tmp",
})


@dataclass(frozen=True)
class FileRead:
    """What one config file gave: its data (None if skipped), and what the user is told about it."""

    level: str  # "system", "user", "project", "runtime" (-f FILE)
    path: Path
    data: dict | None
    skipped: str = ""  # why the file was not read at all
    taken: tuple[str, ...] = ()  # a project file's keys that were taken
    refused: tuple[str, ...] = ()  # and those that were not
    allowed: bool = False  # a project file the user allowed as it is

    def line(self, allow_command: str) -> str:
        """The one line the command prints about this file, or "" when there is nothing to say."""
        if self.skipped:
            return (f"warning: skipped {self.path}: {self.skipped} (only files that you or root own, in directories "
                    "nobody else can write, configure the tool).")
        if self.refused:
            took = ", ".join(self.taken) or "nothing"
            return (f"warning: {self.path}: took {took}; refused {', '.join(self.refused)} (a project file may set "
                    f"resources and names, not what runs code or chooses hosts): `{allow_command}` trusts this "
                    "file as it is now.")
        return ""


_READ: list[FileRead] = []  # what this process read, for `config show` and the warning lines


def reads() -> list[FileRead]:
    return list(_READ)


def origins(key: str) -> dict[str, str]:
    """For a mapping setting (``lab.apps``): the file each of its entries came from, the last one read."""
    found: dict[str, str] = {}
    for read in _READ:
        section = (read.data or {}).get("lab") if isinstance(read.data, dict) else None
        entries = section.get(key) if isinstance(section, dict) else None
        if isinstance(entries, dict):
            found.update({str(name): str(read.path) for name in entries})
    return found


def _owners(level: str) -> set[int] | None:
    return {file_trust.ROOT} if level == "system" else None  # None: the user and root


def _load(path: Path, level: str) -> tuple[bytes | None, str]:
    """The file's bytes and "" -- or None and why it is skipped ("" too when there is no file)."""
    if not path.is_file():
        return None, ""
    why = file_trust.untrusted_because(path, _owners(level)) if level != "runtime" else ""  # -f: you chose it
    if why:
        return None, why
    try:
        with path.open("rb") as fh:
            data = fh.read(_MOST + 1)
    except OSError as exc:
        return None, f"it cannot be read ({exc.strerror})"
    if len(data) > _MOST:
        return None, f"it is larger than {_MOST >> 20} MiB"
    return data, ""


def _parse(path: Path, raw: bytes) -> dict:
    try:
        data = yaml.safe_load(raw.decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: fix it.") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping (lab: {{...}}), not {type(data).__name__}.")
    misplaced = [str(key) for key in data if key in DEFAULTS]
    if misplaced:
        what = "is a lab setting" if len(misplaced) == 1 else "are lab settings"
        raise ConfigError(f"config file {path}: {', '.join(misplaced)} {what} outside the `lab:` mapping: indent "
                          f"under a `lab:` line (lab: {{{misplaced[0]}: ...}}).")
    return dict(data)


def read(path: Path, level: str) -> FileRead:
    """Read the ``level`` config file at ``path`` as the rules above say, and remember what was read."""
    raw, why = _load(path, level)
    if raw is None:
        found = FileRead(level, path, None, skipped=why)
    else:
        data = _parse(path, raw)
        if level != "project" or is_allowed(path, raw):
            found = FileRead(level, path, data, allowed=level == "project")
        else:
            kept, taken, refused = project_part(data)
            found = FileRead(level, path, kept, taken=taken, refused=refused)
    if found.data is not None or found.skipped:
        _READ.append(found)
    return found


def project_part(data: Mapping) -> tuple[dict, tuple[str, ...], tuple[str, ...]]:
    """What a project file that is not allowed may set: (the data kept, the keys taken, the keys refused)."""
    taken: list[str] = []
    refused = [str(key) for key in data if key != "lab"]
    lab = data.get("lab", {})
    if not isinstance(lab, Mapping):  # no key to take from it: the merge's own one-line error says what is wrong
        return {"lab": lab}, (), tuple(refused)
    kept = _lab_part(lab, "lab.", taken, refused)
    return {"lab": kept}, tuple(taken), tuple(refused)


def _lab_part(lab: Mapping, prefix: str, taken: list[str], refused: list[str]) -> dict:
    kept: dict = {}
    for key, value in lab.items():
        dotted = f"{prefix}{key}"
        if key not in PROJECT_KEYS or (key == "profiles" and prefix != "lab."):
            refused.append(dotted)
        elif key == "sbatch" and isinstance(value, Mapping):
            options = {k: v for k, v in value.items() if str(k) in PROJECT_SBATCH}
            refused += [f"{dotted}.{k}" for k in value if str(k) not in PROJECT_SBATCH]
            if options:
                kept[key] = options
                taken.append(dotted)
        elif key == "profiles" and isinstance(value, Mapping):
            kept[key] = {name: _lab_part(profile, f"{dotted}.{name}.", taken, refused)
                         if isinstance(profile, Mapping) else profile for name, profile in value.items()}
        else:
            kept[key] = value
            taken.append(dotted)
    return kept


# -- files the user allowed --------------------------------------------------------------------------

def allowed_path() -> Path:
    """Where allowed project files are recorded (paths.py: never where a setting says)."""
    return paths.allowed_file()


def _allowed() -> dict[str, str]:
    try:
        data = json.loads(allowed_path().read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def is_allowed(path: Path, raw: bytes) -> bool:
    return _allowed().get(os.path.abspath(path)) == file_trust.digest(raw)


def allow(path: Path) -> Path:
    """Record ``path``, as it is now, as a project file whose every key is taken; return the path."""
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise ConfigError(f"{path} is not a file: give the project file to allow (`config allow FILE`).")
    raw, why = _load(path, "project")
    if raw is None:
        raise ConfigError(f"{path} cannot be allowed: {why}.")
    _parse(path, raw)  # a file that would not load is not recorded
    files = {**_allowed(), str(path): file_trust.digest(raw)}
    where = allowed_path()
    where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    where.parent.chmod(0o700)
    state.write_private(where, json.dumps({"files": files}, indent=2) + "\n")
    return path
