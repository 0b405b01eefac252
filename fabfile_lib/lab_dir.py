"""The lab's private directory on the cluster: made 0700, files written 0600, read back, found again.

Each lab lives in ``<lab.remote_dir>/<name>-<8 hex>``: the launch script, the token, the job log,
Jupyter's runtime file, and ``lab.json`` -- name, job id, mode, creation time and tool version, never the
token -- from which any machine with the user's login can find the lab again (``lab.list --cluster``,
``lab.attach``, ``lab.cancel``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
import re
import shlex
import threading
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from . import modes, untrusted
from .errors import LabError
from .remote import run_command
from .untrusted import host as valid_host

if TYPE_CHECKING:
    import paramiko

    from .hops import Hops

_log = logging.getLogger(__name__)

# What a lab's directory holds (the batch script names the same files).
META = "lab.json"
JOB_LOG = "job.log"  # sbatch's --output
TOKEN_FILE = "token"  # the app's secret, 0600
RUNTIME_DIR = "runtime"  # the app's runtime files (Jupyter's jpserver-PID.json), and ours:
APP_FILE = "app.json"  # where the app listens, written by the batch script once it does
SCRIPT = "launch.sh"
NODE = "node"  # written by the job as it starts: the node it runs on
ENDED = "ended"  # written by the job as it ends: the batch script's exit status
JOBS = "jobs"  # the ids of the jobs the lab submitted (its sbatch, in the batch script), one per line
KEEP_JOBS = "keep-jobs"  # written by `cancel --keep-jobs`: the job's end leaves them running
# What the tool makes: the only shape `rm -rf` is ever given (see is_lab_dir).
PATTERN = re.compile(r"/(?:[^/\x00-\x1f]+/)+[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{8}")
READ_LIMIT = 1 << 20  # the most any small file of a lab's directory is read (a lab.json, a token, a log tail)
_URL_PATH = re.compile(r"/[A-Za-z0-9/_.-]*")


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
    app: str = "jupyterlab"  # which app (apps.py): an attaching machine must know it by that name

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def is_lab_dir(path: object, base_dir: str | None = None) -> bool:
    """Whether ``path`` is a lab directory the tool makes: ``BASE/NAME-<8 hex>``, absolute, normalised
    (no ``..``, no ``//``, no newline), and -- when ``base_dir`` is known -- right under it."""
    if not isinstance(path, str) or not PATTERN.fullmatch(path) or posixpath.normpath(path) != path:
        return False
    if any(part in (".", "..") for part in path.split("/")):
        return False
    return base_dir is None or posixpath.dirname(path) == posixpath.normpath(base_dir)


def base(hops: Hops, remote_dir: str) -> str:
    """``remote_dir`` as an absolute path on the cluster (``~`` and relative paths are from the home)."""
    if remote_dir.startswith("/"):
        return remote_dir
    home = hops.home()
    if not untrusted.home(home):
        raise LabError(f"the login node gives {untrusted.quoted(home)} as your home directory, which is not an "
                       "absolute path: set lab.remote_dir to one.")
    if remote_dir == "~" or remote_dir.startswith("~/"):
        return posixpath.join(home, remote_dir[2:])
    return posixpath.join(home, remote_dir)


# One command on the login node: the base (if missing) and the lab's new directory made 0700, the files
# unpacked from a tar stream on stdin (umask 077: 0600, whatever modes an archive claims), then the command
# that uses them, run in that directory.
# A directory made in a setgid one (a group's project directory) would inherit the bit: chmod clears it,
# as SFTP's chmod did (and `chmod 700` alone would not: it keeps a directory's set-id bits).
_CREATE = ('umask 077 && { [ -d "$1" ] || { mkdir -m 700 -- "$1" && chmod u=rwx,go=,g-s -- "$1"; } 2>/dev/null '
           '|| [ -d "$1" ]; } || exit 71; mkdir -m 700 -- "$2" && chmod u=rwx,go=,g-s -- "$2" || exit 72; '
           'cd -- "$2" && tar -xmf - || exit 73; ')
_WRITE = 'umask 077 && cat > "$1"'
_NOT_MADE = {71: "cannot create {base} on the login node.", 72: "cannot create {where} on the login node."}


def create(hops: Hops, base_dir: str, where: str, files: dict[str, str], then: str):
    """Make the lab's private directory ``where`` (new) under ``base_dir``, write ``files`` in it (0600),
    and run ``then`` there -- one command on the login node, the files (a token among them) on its standard
    input, never in a command line. Returns ``then``'s Result; a LabError if the directory or its files
    could not be made."""
    script = _CREATE + then
    command = f"sh -c {shlex.quote(script)} sh {shlex.quote(base_dir)} {shlex.quote(where)}"
    result = run_command(hops.feeder(), command, data=_archive(files), timeout=hops.settings.connect_timeout + 60)
    if result.exited in _NOT_MADE:
        raise LabError(_NOT_MADE[result.exited].format(base=base_dir, where=where))
    if result.exited == 73:
        lines = result.stderr.strip().splitlines()
        raise LabError(f"cannot write the lab's files in {where} on the login node: "
                       f"{untrusted.printable(lines[-1]) if lines else 'tar failed'}")
    return result


def write(hops: Hops, path: str, text: str) -> None:
    """Replace a small file of the lab's directory (0600), its text on the command's standard input."""
    command = f"sh -c {shlex.quote(_WRITE)} sh {shlex.quote(path)}"
    result = run_command(hops.feeder(), command, data=text.encode(), timeout=hops.settings.connect_timeout + 30)
    if result.exited != 0:
        raise LabError(f"cannot write {path} on the login node: exit {result.exited}")


def _archive(files: dict[str, str]) -> bytes:
    import io
    import tarfile
    import time

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_GUARD = threading.Lock()
_SESSION_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _session(hops: Hops) -> Iterator[paramiko.SFTPClient]:
    """The login's SFTP session, one request sequence at a time: Paramiko's SFTP client answers whichever
    thread reads next, so two threads of a hold (its watch, its readers beside it) would take each other's
    replies and wait for ever."""
    sftp = hops.login().sftp()
    with _GUARD:
        lock = _SESSION_LOCKS.setdefault(sftp, threading.RLock())
    with lock:
        yield sftp


def read(hops: Hops, lab_dir: str, *parts: str, limit: int = READ_LIMIT) -> str | None:
    """A text file in a lab's directory (at most ``limit`` bytes of it), or None while it does not exist
    (yet) or is not a regular file (a FIFO would never end, a link may point anywhere): one command on the
    login node (``hops.shell()``, a plain ``ssh -S`` on OpenSSH), so a watcher that only reads never loads
    Fabric or Paramiko, and no file session stays open for it."""
    result = _regular_file(hops, "head", posixpath.join(lab_dir, *parts), limit)
    return result.stdout if result.exited == 0 else None


# A regular file's first or last bytes (``$1``: head or tail), under sh whatever the login shell is.
_REGULAR = 'test -f "$2" && test ! -L "$2" && exec "$1" -c "$3" -- "$2"'


def _regular_file(hops: Hops, which: str, path: str, limit: int):
    command = f"sh -c {shlex.quote(_REGULAR)} sh {which} {shlex.quote(path)} {int(limit)}"
    return run_command(hops.shell(), command, timeout=hops.settings.connect_timeout + 20)


def jobs(hops: Hops, lab_dir: str) -> tuple[str, ...]:
    """The jobs the lab has submitted, as its directory lists them (:func:`job_ids`)."""
    return job_ids(read(hops, lab_dir, JOBS, limit=256 * 1024))


def job_ids(text: str | None) -> tuple[str, ...]:
    """Job ids only (anything else in the file is left out), each once, in the order submitted."""
    return tuple(dict.fromkeys(w for w in (text or "").split() if untrusted.job_id(w)))


def _runtime(text: str, lab_dir: str) -> dict | None:
    """Where the app listens, as the batch script wrote it once the app did (``runtime/app.json``: its
    port or socket, and the host it bound). From the cluster: checked here."""
    try:
        data = json.loads(text)
    except ValueError:
        return None  # being written (it is moved into place whole, so only a forgery is torn)
    if not isinstance(data, dict) or not (untrusted.port(data.get("port")) or (
            data.get("port") == 0 and untrusted.socket_path(data.get("sock")))):
        raise LabError(f"the app's runtime file in {lab_dir}/{RUNTIME_DIR} has no valid port or socket: refusing it.")
    return data


@dataclass(frozen=True)
class Look:
    """What a lab's directory says about its job, without asking Slurm: where it runs (``node``), that
    it has ended, and Jupyter's runtime file once Jupyter listens."""

    node: str = ""
    ended: bool = False
    runtime: dict | None = None
    forged_node: str = ""  # what the node file held when it was no host name (quoted): used nowhere

    def checked_node(self, lab_dir: str) -> str:
        """The node, or a LabError if the job wrote one that is not a host name: a step that would reach
        the node stops there; one that only needs the end mark (cancel) goes on."""
        if self.forged_node:
            raise LabError(f"the job wrote a node name that is not a host name ({self.forged_node} in "
                           f"{lab_dir}/{NODE}): refusing to use it.")
        return self.node


# One look at a lab's directory, on the login node: it may first wait there (``$4`` steps of ``$3`` seconds)
# until something a wait is after appears -- the end mark, the node file, then (``$2``: the node is known)
# the app's runtime file. Prints the names it saw, the node file (in hex: whatever bytes a forged one holds
# come back as they are) and the runtime file; regular files only, bounded. Run by bash where the login
# node has it: its pauses are reads, with a timeout, of a pipe that never has data, so a wait that looks
# every 0.01 s starts no process; plain sh pauses with `sleep`, no more often than every 0.05 s.
_WAIT_THEN_SAY = ('while [ ! -e ended ] && { [ ! -e node ] || { [ -n "$2" ] && [ ! -e runtime/app.json ]; }; } '
                  '&& [ "$n" -gt 0 ]; do n=$((n-1)); pause; done; '
                  'for f in ended node runtime; do [ -e "$f" ] && printf "%s " "$f"; done; echo; '
                  '[ -z "$2" ] && [ -f node ] && [ ! -L node ] && head -c 256 node | od -An -tx1 -v | tr -d " \\n"; '
                  'echo; f=runtime/app.json; [ -e node ] && [ -f $f ] && [ ! -L $f ] && head -c 65536 $f; true')
_LOOK_BASH = ('cd -- "$1" 2>/dev/null || exit 3; n=$4 s=$3 t=; exec {t}<> <(:) || t=; '
              'pause() { if [ -n "$t" ]; then read -r -t "$s" -u "$t" _; else sleep "$s"; fi; }; ' + _WAIT_THEN_SAY)
_LOOK = ('command -v bash >/dev/null 2>&1 && exec bash -c "$0" sh "$@" 2>/dev/null; '
         'cd -- "$1" 2>/dev/null || exit 3; n=$4 s=$3; '
         'case $s in 0.0[0-4]) n=$((n * ${s#0.0} / 5)) s=0.05;; esac; '
         'pause() { sleep "$s" 2>/dev/null || sleep 1; }; ' + _WAIT_THEN_SAY)


def look(hops: Hops, lab_dir: str, *, node: str = "", step: float = 0.1, up_to: float = 0.0) -> Look:
    """What the lab's directory on the shared filesystem says now, in one command on the login node (no
    file session). ``node``: what an earlier look read from the node file (the job writes it once as it
    starts), not read again. ``up_to``: first wait there, looking every ``step`` seconds, until the job has
    written its node (or, with ``node``, the app its runtime file) or has ended -- a wait costs one command,
    not one per look."""
    steps = max(0, int(up_to / step + 0.5)) if step > 0 else 0
    command = (f"sh -c {shlex.quote(_LOOK)} {shlex.quote(_LOOK_BASH)} {shlex.quote(lab_dir)} {shlex.quote(node)} "
               f"{step:.2f} {steps}")
    result = run_command(hops.shell(), command, timeout=up_to + hops.settings.connect_timeout + 20)
    if result.exited != 0:
        return Look()
    names, written, app = (result.stdout.split("\n", 2) + ["", ""])[:3]
    seen = set(names.split())
    node = (node or _unhex(written)) if NODE in seen else ""
    if node and not valid_host(node):
        return Look("", ENDED in seen, None, forged_node=untrusted.quoted(node, 40))
    runtime = _runtime(app, lab_dir) if node and RUNTIME_DIR in seen and app.strip() else None
    return Look(node, ENDED in seen, runtime)


def _unhex(text: str) -> str:
    try:
        return bytes.fromhex(text.strip()).decode(errors="replace").strip()
    except ValueError:
        return "?"  # not what od prints: refused as no host name


def log_tail(hops: Hops, lab_dir: str, lines: int = 20, limit: int = 64 * 1024) -> str:
    """The last ``lines`` of the job's log, from its last ``limit`` bytes (a huge log is not downloaded),
    read as :func:`read` reads."""
    result = _regular_file(hops, "tail", posixpath.join(lab_dir, JOB_LOG), limit)
    text = result.stdout if result.exited == 0 else ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def read_from(hops: Hops, path: str, offset: int, limit: int = READ_LIMIT) -> bytes:
    """What a file holds past ``offset``, at most ``limit`` bytes of it (b"" while it is absent): a
    growing log is read once, not again and again from its start."""
    try:
        with _session(hops) as sftp, sftp.open(path) as fh:
            fh.seek(offset)
            return fh.read(limit)
    except OSError:
        return b""


def tail_offset(hops: Hops, path: str, keep: int = 64 * 1024) -> int:
    """Where the last ``keep`` bytes of a file begin (0 while it is absent): following a huge log starts
    near its end, as ``tail -f`` does."""
    try:
        with _session(hops) as sftp:
            return max(0, (sftp.stat(path).st_size or 0) - keep)
    except OSError:
        return 0


def find(hops: Hops, remote_dir: str) -> list[LabMeta]:
    """Every lab under ``remote_dir`` that has a valid ``lab.json``, oldest first (one command on the login
    node: regular files only, the first 4 KiB of each)."""
    root = base(hops, remote_dir)
    script = ('for f in "$1"/*/lab.json; do [ -f "$f" ] && [ ! -L "$f" ] && { head -c 4096 "$f" | tr -d "\\n"; '
              'echo; }; done; true')
    command = f"sh -c {shlex.quote(script)} sh {shlex.quote(root)}"
    result = run_command(hops.shell(), command, timeout=hops.settings.connect_timeout + 10)
    return sorted(parse(result.stdout, root), key=lambda meta: meta.created)


def parse(text: str, base_dir: str | None = None) -> list[LabMeta]:
    """``lab.json`` lines; a damaged, forged or foreign one is skipped (logged), never an error for all."""
    found = []
    for line in text.splitlines():
        try:
            found.append(meta_of(json.loads(line), base_dir))
        except (ValueError, TypeError) as exc:
            _log.info("a lab.json under %s is skipped: %s", base_dir, exc)
    return found


def meta_of(data: object, base_dir: str | None = None) -> LabMeta:
    """A ``lab.json`` as read from the cluster, every field checked; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    fields = {k: data[k] for k in LabMeta.__dataclass_fields__ if k in data}
    meta = LabMeta(**fields)
    for key in ("name", "job_id", "via", "version", "remote_dir", "url_path", "reverse_target", "login_host", "app"):
        if not isinstance(getattr(meta, key), str):
            raise ValueError(f"{key} is not a string")
    if isinstance(meta.created, bool) or not isinstance(meta.created, (int, float)):
        raise ValueError("created is not a number")
    if meta.job_id and not untrusted.job_id(meta.job_id):  # "": submitted while the tool was being killed
        raise ValueError(f"job_id {meta.job_id[:30]!r} is not a Slurm job id")
    if not is_lab_dir(meta.remote_dir, base_dir) or not posixpath.basename(meta.remote_dir).startswith(
            f"{meta.name}-") or not untrusted.lab_name(meta.name):
        raise ValueError(f"remote_dir {meta.remote_dir[:80]!r} is not BASE/NAME-<8 hex> of this lab")
    if meta.via not in modes.NAMES:
        raise ValueError(f"via {meta.via[:20]!r} is not a mode")
    if not _URL_PATH.fullmatch(meta.url_path) or meta.url_path.startswith("//"):
        raise ValueError(f"url_path {meta.url_path[:40]!r} is not a plain path")
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", meta.app):
        raise ValueError(f"app {meta.app[:40]!r} is not an app's name")
    if meta.login_host and not untrusted.host(meta.login_host):
        raise ValueError(f"login_host {meta.login_host[:40]!r} is not a host name")
    if meta.reverse_target and not untrusted.user_at_host(meta.reverse_target):
        raise ValueError("reverse_target is not [user@]host")
    return meta

