"""What the tool keeps beside a master's socket, in its private (0700) socket directory; every file 0600.

- ``KEY.json`` beside the socket: when the tool started that master and for which cluster and login
  node (so ``logout`` finds the masters pinned to the cluster's login nodes).
- ``KEY.log``: what the master says once in the background (a channel sshd refused), via ``ssh -E``.
- ``KEY.process``: the master process now on the socket (pid and start time), once a ``-O check`` has
  named it, so that a later command knows it lives without starting an ``ssh -O check`` of its own.
- ``KEY.PID.landed``: the names of the login node that master process landed on, and the home directory
  there, learnt once.
- ``CLUSTER.logged-out``: the user logged out; nothing logs in again by itself until they log in.

A master on the user's own ControlPath leaves nothing here but the logout mark.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import paths, procs, untrusted
from .master_address import MasterAddress


def _write_json(path: Path, data: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class LoginFacts:
    """What one master process learnt of the login node it landed on: its names and the user's home."""

    names: tuple[str, ...]
    home: str


@dataclass(frozen=True)
class MasterMarks:
    """The files beside one master's socket (see the module's docstring)."""

    address: MasterAddress

    @property
    def _dir(self) -> Path:
        return self.address.socket_dir

    @functools.cached_property  # read at every look of a held forward: made once (see state._record_path)
    def log_path(self) -> Path:
        return self._dir / f"{self.address.key}.log"

    @property
    def logged_out(self) -> Path:
        return self._dir / f"{self.address.cluster or self.address.key}.logged-out"

    def stderr_file(self) -> IO[str]:
        """Where the master's stderr goes: its log (kept while it lives), or for the user's own master a
        temporary file."""
        if self.address.user_managed:
            return tempfile.TemporaryFile(mode="w+")
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "w+")

    def said_since(self, offset: int) -> str:
        """What the master printed after ``offset`` bytes of its log (at most 16 KiB); "" for a master the
        tool did not start."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read(16384).decode(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def created(self) -> float:
        """When the tool started the master now on the socket (0: not the tool's, or unknown)."""
        meta = _read_json(Path(f"{self.address.control_path}.json")) if self.address.control_path else None
        return float(meta.get("created", 0.0)) if isinstance(meta, dict) else 0.0

    def started(self, when: float) -> None:
        a = self.address
        if a.control_path:
            _write_json(Path(f"{a.control_path}.json"),
                        {"created": when, "persist": a.persist, "label": a.label, "cluster": a.cluster, "pin": a.pin})

    @functools.cached_property
    def _process_path(self) -> Path:
        return self._dir / f"{self.address.key}.process"

    def running(self) -> int:
        """The pid of the master process a ``-O check`` last named on the socket, if that very process (pid
        and start time) still runs and its socket is in place; else 0 (unknown: ask ``-O check``)."""
        data = None if self.address.user_managed else _read_json(self._process_path)
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not data.get("started"):
            return 0
        alive = procs.alive(data["pid"], data["started"]) and paths.is_socket(self.address.control_path)
        return data["pid"] if alive else 0

    def clear_stale_socket(self) -> None:
        """A socket left by a master that was killed (no ``-O check`` answers it): OpenSSH would start a
        master without multiplexing beside it ("already exists, disabling multiplexing")."""
        if self.address.user_managed:
            return
        path = Path(self.address.control_path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink(missing_ok=True)

    def seen_process(self, pid: int) -> None:
        """A ``-O check`` named master process ``pid`` on the socket (ours only: the user's own master is
        theirs to keep)."""
        started = procs.start_time(pid) if pid and not self.address.user_managed else None
        if started and _read_json(self._process_path) != {"pid": pid, "started": started}:
            _write_json(self._process_path, {"pid": pid, "started": started})

    def landed(self, pid: int) -> LoginFacts | None:
        """What master process ``pid`` learnt of its login node, if it did (checked again as it is read)."""
        data = _read_json(self._landed_path(pid))
        if not isinstance(data, dict) or not isinstance(data.get("names"), list):
            return None
        names = tuple(str(n) for n in data["names"] if untrusted.host(n))
        home = data.get("home")
        return LoginFacts(names, home) if names and untrusted.home(home) else None

    def learnt(self, pid: int, facts: LoginFacts) -> None:
        self.forget_landed()  # of masters that have ended
        _write_json(self._landed_path(pid), {"names": list(facts.names), "home": facts.home})

    def forget_landed(self) -> None:
        for known in self._dir.glob(f"{self.address.key}.*.landed"):
            known.unlink(missing_ok=True)

    def ended(self) -> None:
        """The master ended: its metadata, log and learnt names go."""
        if self.address.control_path:
            Path(f"{self.address.control_path}.json").unlink(missing_ok=True)
            self.log_path.unlink(missing_ok=True)
            self._process_path.unlink(missing_ok=True)
        self.forget_landed()

    def _landed_path(self, pid: int) -> Path:
        return self._dir / f"{self.address.key}.{pid}.landed"


def pinned_nodes(socket_dir: Path, cluster: str) -> list[str]:
    """The login nodes of ``cluster`` that the tool keeps a pinned master to (by the masters' metadata)."""
    pins = []
    for meta in socket_dir.glob("*.json"):
        data = _read_json(meta)
        if isinstance(data, dict) and data.get("cluster") == cluster and untrusted.host(data.get("pin")):
            pins.append(data["pin"])
    return pins
