"""The local record of each lab: one 0600 JSON file per lab name in a 0700 directory.

It holds what every later step needs -- where the cluster is, job id, node, ports, token, mode, remote
directory, the background forward's pid -- so that ``lab.tunnel``, ``lab.status`` or ``lab.cancel`` work
from another terminal, after a reboot of the laptop, or from a team's own tasks.

The record is also what a task and the lab's background forward tell each other, so every change is a
read-modify-write under a lock file (``locks.py``) (:func:`update`), and every write replaces the file atomically.
Reads never create anything.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import apps, commands, locks, untrusted
from .errors import LabError
from .modes import Endpoint
from .settings import LabSettings, check_name


@dataclass(frozen=True)
class LabRecord:
    name: str
    settings: dict  # the LabSettings the lab was started with, as a mapping
    job_id: str
    remote_dir: str
    token: str
    via: str
    local_port: int = 0
    node: str = ""
    node_addr: str = ""  # Slurm's NodeAddr of the node
    app_port: int = 0  # where the app listens on the node (0 for a socket)
    remote_host: str = ""  # what the far end of the forward connects to (see modes.py)
    remote_port: int = 0  # 0 until Jupyter answers (and for a socket)
    remote_socket: str = ""  # or the Unix socket the far end connects to, private to the user
    url_path: str = "/lab"
    app: str = apps.DEFAULT  # which app (apps.py); its declaration, if not built in, is in settings
    forward_pid: int = 0  # the background forward, if any
    forward_started: str = ""  # its start time, so a reused pid is never taken for it
    forward_port: int = 0  # the local port it holds
    forward_note: str = ""  # its condition when its URL does not answer ("" while it does)
    hold: str = ""  # the request to hold its forwards in the background (a fresh id each time), "" for none
    forward_error: str = ""  # the kind of error (errors.py) that ended the hold, with its text in forward_note
    forward_refused: str = ""  # for a ForwardingRefused: the kinds of forwarding refused, comma-separated
    job_ends_at: float = 0.0  # when the job reaches its time limit (epoch), as its watcher last learnt from Slurm
    job_end: str = ""  # the same, as Slurm prints it
    created: float = 0.0
    login_host: str = ""  # the login node the job was submitted from, by its own name
    added: tuple = ()  # forwards added while it runs (``added_ports.Added`` as mappings), held by the watcher
    resources: dict = field(default_factory=dict)  # what the job was given (``job_resources``), as it started
    jobs: tuple = ()  # the ids of the Slurm jobs the lab has started, as its watcher last read them

    @property
    def reachable(self) -> bool:
        """Jupyter has answered: where the far end of the forward connects to is known."""
        return bool(self.remote_port or self.remote_socket)

    @property
    def far(self) -> str:
        """What the far end of the forward connects to: a socket path, or ``host:port``."""
        host = f"[{self.remote_host}]" if ":" in self.remote_host else self.remote_host
        return self.remote_socket or f"{host}:{self.remote_port}"

    def reaching(self, endpoint: Endpoint) -> LabRecord:
        """This record with the far end of its forward."""
        return replace(self, remote_host=endpoint.host, remote_port=endpoint.port, remote_socket=endpoint.socket)

    @property
    def app_title(self) -> str:
        return self.app_spec.title

    @property
    def app_spec(self) -> apps.App:
        """The app this lab runs (as declared when it started)."""
        return apps.lookup(self.app, apps.declared(self.settings.get("apps")))

    def base_url(self, port: int | None = None) -> str:
        """``http://127.0.0.1:PORT`` of the lab's local forward ("" while it has no port)."""
        port = port or self.forward_port or self.local_port
        return f"http://127.0.0.1:{port}" if port else ""

    def url(self, port: int | None = None) -> str:
        """The URL the browser opens: with the secret where the app logs in by URL."""
        base = self.base_url(port)
        return f"{base}{self.url_path}{self.app_spec.url_query(self.token)}" if base else ""


HOST_FIELDS = ("node", "node_addr", "remote_host", "login_host")  # a record's hosts, all from the cluster


def settings_of(record: LabRecord, **overrides) -> LabSettings:
    """The settings a lab was started with: its cluster does not change with the current config."""
    return LabSettings.from_config(record.settings, name=record.name, **overrides)


def _labs(state_dir: Path) -> Path:
    return state_dir / "labs"


def make_dirs(state_dir: Path) -> Path:
    labs = _labs(state_dir)
    labs.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (state_dir, labs):
        path.chmod(0o700)
    return labs


def path_for(state_dir: Path, name: str) -> Path:
    """The record of lab ``name``; a name that could leave the state directory is refused."""
    return _record_path(state_dir, check_name(name))


@functools.lru_cache(maxsize=256)
def _record_path(state_dir: Path, name: str) -> Path:
    # Kept, not made anew at each look: pathlib interns every part it parses (CPython 3.11), and an
    # interned string that dies leaves its slot behind, so a watcher that looks at the records a few
    # times a second would re-size the interpreter's table of interned strings (about 1 MiB) every few
    # minutes, and keep the memory.
    return _labs(state_dir) / f"{name}.json"


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One writer at a time, across processes (the tasks and the background forwards)."""
    make_dirs(state_dir)
    with locks.exclusive(state_dir / "records.lock"):
        yield


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + rename), created 0600 before a byte is written."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _write(state_dir: Path, record: LabRecord) -> None:
    write_private(path_for(state_dir, record.name), json.dumps(asdict(record), indent=2))


def create(state_dir: Path, record: LabRecord) -> bool:
    """Record a new lab; False (and nothing written) if one of that name is recorded already.

    The whole record is written to a private temporary file and hard-linked into place: the link is the
    claim, atomic and exclusive as ``O_EXCL`` is, and a reader never sees half a record. No lock is
    needed, so a start reaches ``sbatch`` without loading the lock library; a file system without hard
    links falls back to the lock."""
    path = path_for(state_dir, record.name)
    make_dirs(state_dir)
    tmp = path.with_suffix(f".new{os.getpid()}")
    write_private(tmp, json.dumps(asdict(record), indent=2))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here
        with _locked(state_dir):
            if exists(state_dir, record.name):
                return False
            _write(state_dir, record)
            return True
    finally:
        tmp.unlink(missing_ok=True)


def save(state_dir: Path, record: LabRecord) -> None:
    """Write the whole record, atomically (temp file + rename)."""
    with _locked(state_dir):
        _write(state_dir, record)


def update(state_dir: Path, name: str, **changes) -> LabRecord | None:
    """Change some fields of a recorded lab and return the new record; None if it is no longer recorded
    (cancelled meanwhile: nothing is written back)."""
    with _locked(state_dir):
        if not exists(state_dir, name):
            return None
        record = replace(load(state_dir, name), **changes)
        _write(state_dir, record)
        return record


def amend(state_dir: Path, name: str, change: Callable[[LabRecord], dict]) -> LabRecord | None:
    """Change the fields ``change(record)`` returns (none: nothing is written), deciding on the record as
    it is under the lock; the new record, or None if the lab is no longer recorded."""
    with _locked(state_dir):
        if not exists(state_dir, name):
            return None
        record = load(state_dir, name)
        changes = change(record)
        if not changes:
            return record
        record = replace(record, **changes)
        _write(state_dir, record)
        return record


def load(state_dir: Path, name: str) -> LabRecord:
    """The record of lab ``name``; a LabError saying what to do if there is none or it is damaged."""
    path = path_for(state_dir, name)
    if not path.exists():
        raise LabError(f"no lab named {name!r} is recorded here: `{commands.run('list')}` shows the labs, "
                       f"`{commands.run('start')} --name NAME` starts one.")
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(LabRecord)}
        record = LabRecord(**{k: v for k, v in data.items() if k in known})
        for key in HOST_FIELDS:  # what the cluster named, before it reaches a HostName, -W or a gateway
            value = getattr(record, key)
            if value and not untrusted.host(value):
                raise ValueError(f"{key} {untrusted.quoted(value)} is not a host name or an IP address")
        return record
    except (ValueError, TypeError) as exc:
        raise LabError(f"the record {path} is damaged ({exc}): remove it and cancel the job by hand.") from None


def exists(state_dir: Path, name: str) -> bool:
    return path_for(state_dir, name).exists()


def stamp(state_dir: Path, name: str) -> tuple[int, int, int] | None:
    """What changes whenever lab ``name``'s record is written (each write replaces the file), None while
    there is none: a watcher that looks often reads and checks the record only when it has changed."""
    try:
        info = os.stat(path_for(state_dir, name))
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def find(state_dir: Path, name: str) -> LabRecord | None:
    """The record of lab ``name``, or None if there is none (a damaged one is a LabError, as in :func:`load`)."""
    return load(state_dir, name) if exists(state_dir, name) else None


def recorded_job(state_dir: Path, name: str) -> str:
    """The job id of lab ``name`` as recorded here; "" if this machine has no record of it."""
    record = find(state_dir, name)
    return record.job_id if record else ""


def remove(state_dir: Path, name: str) -> None:
    """Forget a lab: its record, its background forward's log and its ssh config entry."""
    with _locked(state_dir):
        path_for(state_dir, name).unlink(missing_ok=True)
    log_path(state_dir, name).unlink(missing_ok=True)
    ssh_entry_path(state_dir, name).unlink(missing_ok=True)
    open_page_path(state_dir, name).unlink(missing_ok=True)


def names(state_dir: Path) -> list[str]:
    labs = _labs(state_dir)
    return sorted(p.stem for p in labs.glob("*.json")) if labs.is_dir() else []


def log_path(state_dir: Path, name: str) -> Path:
    """The background forward's own log (never holds the token)."""
    return _labs(state_dir) / f"{check_name(name)}.forward.log"


def open_log(state_dir: Path, name: str) -> int:
    """A file descriptor appending to the lab's forward log, created 0600 (and its directory 0700)."""
    make_dirs(state_dir)
    return os.open(log_path(state_dir, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def open_page_path(state_dir: Path, name: str) -> Path:
    """The private page that opens the lab in the browser (it holds the token: 0600, in a 0700 directory)."""
    return state_dir / "open" / f"{check_name(name)}.html"


def watcher_path(state_dir: Path) -> Path:
    """Which process is the watcher of this state directory: its pid and start time (``watcher.py``)."""
    return state_dir / "watcher.json"


def watcher_log_path(state_dir: Path) -> Path:
    """The watcher's own output (each lab's lines go to that lab's forward log)."""
    return state_dir / "watcher.log"


def ssh_dir(state_dir: Path) -> Path:
    """ssh config entries for IDEs (``lab.vscode``), one file per lab."""
    return state_dir / "ssh"


def ssh_entry_path(state_dir: Path, name: str) -> Path:
    return ssh_dir(state_dir) / f"{check_name(name)}.conf"
