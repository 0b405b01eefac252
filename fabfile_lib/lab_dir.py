"""The lab's private directory on the cluster: made 0700, files written 0600, read back, found again.

Each lab lives in ``<lab.remote_dir>/<name>-<8 hex>``: the launch script, the token, the job log,
Jupyter's runtime file, and ``lab.json`` -- name, job id, mode, creation time and tool version, never the
token -- from which any machine with the user's login can find the lab again (``lab.list --cluster``,
``lab.attach``, ``lab.cancel``).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import stat
from dataclasses import asdict, dataclass

import paramiko

from .errors import LabError
from .hops import Hops, run_command
from .untrusted import host as valid_host

# What a lab's directory holds (the batch script names the same files).
META = "lab.json"
JOB_LOG = "job.log"  # sbatch's --output
TOKEN_FILE = "token"  # JUPYTER_TOKEN_FILE, 0600
RUNTIME_DIR = "runtime"  # JUPYTER_RUNTIME_DIR: Jupyter's jpserver-PID.json says its port
SCRIPT = "launch.sh"
NODE = "node"  # written by the job as it starts: the node it runs on
ENDED = "ended"  # written by the job as it ends: the batch script's exit status
# What the tool makes: the only shape `rm -rf` is ever given.
PATTERN = re.compile(r"^/.+/[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}$")


@dataclass(frozen=True)
class LabMeta:
    """What ``lab.json`` holds: enough to rebuild a local record with the token read beside it."""

    name: str
    job_id: str
    via: str
    created: float
    version: str
    remote_dir: str
    url_path: str = "/lab"
    reverse_target: str = ""
    login_host: str = ""  # the login node the job was submitted from

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def base(hops: Hops, remote_dir: str) -> str:
    """``remote_dir`` as an absolute path on the cluster (``~`` and relative paths are from the home)."""
    home = hops.login().sftp().normalize(".")
    if remote_dir == "~" or remote_dir.startswith("~/"):
        return posixpath.join(home, remote_dir[2:])
    return remote_dir if remote_dir.startswith("/") else posixpath.join(home, remote_dir)


def mkdir_private(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.mkdir(path, 0o700)
    except OSError:
        if not is_dir(sftp, path):
            raise LabError(f"cannot create {path} on the login node.") from None
    sftp.chmod(path, 0o700)


def is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode or 0)
    except OSError:
        return False


def write_private(sftp: paramiko.SFTPClient, path: str, text: str) -> None:
    with sftp.open(path, "w") as fh:
        fh.chmod(0o600)  # before any byte is written
        fh.write(text)


def read(hops: Hops, lab_dir: str, *parts: str) -> str | None:
    """A text file in a lab's directory, or None while it does not exist (yet)."""
    try:
        with hops.login().sftp().open(posixpath.join(lab_dir, *parts)) as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def runtime_info(hops: Hops, lab_dir: str) -> dict | None:
    """Jupyter's runtime file (``jpserver-PID.json``: its port, hostname...), or None before it is written."""
    runtime = posixpath.join(lab_dir, RUNTIME_DIR)
    try:
        files = [f for f in hops.login().sftp().listdir(runtime) if re.fullmatch(r"jpserver-\d+\.json", f)]
    except OSError:
        return None
    for name in files:
        try:
            return json.loads(read(hops, lab_dir, RUNTIME_DIR, name) or "")
        except ValueError:
            continue  # being written
    return None


@dataclass(frozen=True)
class Look:
    """What a lab's directory says about its job, without asking Slurm: where it runs (``node``), that
    it has ended, and Jupyter's runtime file once Jupyter listens."""

    node: str = ""
    ended: bool = False
    runtime: dict | None = None


def look(hops: Hops, lab_dir: str) -> Look:
    """One listing of the lab's directory on the shared filesystem, and the files it shows."""
    try:
        names = set(hops.login().sftp().listdir(lab_dir))
    except OSError:
        return Look()
    node = (read(hops, lab_dir, NODE) or "").strip() if NODE in names else ""
    if node and not valid_host(node):
        raise LabError(f"the job wrote a node name that is not a host name ({node[:40]!r} in {lab_dir}/{NODE}): "
                       "refusing to use it.")
    runtime = runtime_info(hops, lab_dir) if node and RUNTIME_DIR in names else None
    return Look(node, ENDED in names, runtime)


def log_tail(hops: Hops, lab_dir: str, lines: int = 20) -> str:
    """The last ``lines`` of the job's log."""
    text = read(hops, lab_dir, JOB_LOG) or ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def read_from(hops: Hops, path: str, offset: int) -> bytes:
    """What a file holds past ``offset`` (b"" while it is absent): a growing log is read once, not again
    and again from its start."""
    try:
        with hops.login().sftp().open(path) as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""


def find(hops: Hops, remote_dir: str) -> list[LabMeta]:
    """Every lab under ``remote_dir`` that has a ``lab.json``, oldest first (one command on the login node)."""
    root = base(hops, remote_dir)
    script = 'for f in "$1"/*/lab.json; do [ -r "$f" ] && { cat "$f"; echo; }; done; true'
    command = f"sh -c {shlex.quote(script)} sh {shlex.quote(root)}"
    result = run_command(hops.login(), command, timeout=hops.settings.connect_timeout + 10)
    return sorted(parse(result.stdout), key=lambda meta: meta.created)


def parse(text: str) -> list[LabMeta]:
    """``lab.json`` lines; a damaged or foreign file is skipped, not an error."""
    found = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            meta = LabMeta(**{k: data[k] for k in LabMeta.__dataclass_fields__ if k in data})
        except (ValueError, TypeError):
            continue
        if PATTERN.match(meta.remote_dir) and meta.job_id.isdigit():
            found.append(meta)
    return found

