"""Logging in: the one moment a master is started, and where a login's failure is explained.

The master starts in the foreground (``-f`` backgrounds it only once authenticated), so OpenSSH itself
asks for passphrase, code or touch on the user's terminal; with no one to ask (``batch``) a login that
needs a second factor fails with :class:`PromptNeeded` instead of hanging.
"""

from __future__ import annotations

import logging
import signal
import subprocess

from . import commands, openssh
from .errors import AuthenticationError, ConnectError, HostKeyError, LabError, PromptNeeded
from .master_address import MasterAddress
from .master_marks import MasterMarks

log = logging.getLogger(__name__)


def log_in(address: MasterAddress, marks: MasterMarks, *, batch: bool) -> None:
    """Start the master of ``address`` (``ssh -f -N`` with ControlMaster) or raise why it could not."""
    persist = "yes" if address.persist == "0" else address.persist  # 0: held until the run that made it ends
    # -E: once in the background OpenSSH sends the master's stderr to /dev/null; its log file keeps what
    # it says later (a channel sshd refused), and what it says while logging in, as stderr would.
    logged = ["-E", str(marks.log_path)] if not address.user_managed else []
    argv = address.argv("-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}", *logged, "-f", "-N",
                        address.dest, batch=batch)
    log.info("opening the ssh master to %s", address.label)
    limit = None if not batch else address.connect_timeout * 3 + 10
    # stderr to a file, not a pipe: the backgrounded master must not hold our end open.
    with marks.stderr_file() as err:
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL if batch else None, stdout=subprocess.DEVNULL,
                                  stderr=err, timeout=limit, check=False, preexec_fn=_ignore_hangup)
        except subprocess.TimeoutExpired:
            raise ConnectError(f"logging in to {address.label} did not finish within {limit:.0f} s.") from None
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        raise _failure(address, stderr, proc.returncode, batch=batch)


def _failure(address: MasterAddress, stderr: str, code: int, *, batch: bool) -> LabError:
    if batch and "Permission denied" in stderr and "keyboard-interactive" in stderr:
        return PromptNeeded(f"logging in to {address.label} needs a second factor and nobody can be asked "
                            f"here: run `{commands.run('login')}` in a terminal, then retry.")
    failure = openssh.explain(stderr, f"cannot log in to {address.label}", code)
    if openssh.proxy_died(stderr):
        failure = _diagnose(address) or failure
    return failure


def _diagnose(address: MasterAddress) -> LabError | None:
    """Why the hop before the login node failed. OpenSSH silences a ProxyCommand's stderr when the
    connection is to become a persistent master, leaving only "Connection closed"; the same hop tried
    once as a plain connection, with no prompt allowed, says why in its own words."""
    argv = [*address.argv("-o", "ControlMaster=no", "-o", "ControlPath=none"), "-T", address.dest, "true"]
    try:
        # In a session of its own: no terminal, so a hop before this one cannot ask for a code again.
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=address.connect_timeout * 2 + 5,
                              stdin=subprocess.DEVNULL, check=False, start_new_session=True)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode == 0:
        return None
    failure = openssh.explain(proc.stderr, f"cannot log in to {address.label}", proc.returncode)
    specific = isinstance(failure, (HostKeyError, AuthenticationError, PromptNeeded))
    return failure if specific or not openssh.proxy_died(proc.stderr) else None


def _ignore_hangup() -> None:
    """In the master's child before exec: an ignored SIGHUP or SIGINT stays ignored across exec, and ssh
    keeps it so. The master detaches from the terminal once logged in, but its ProxyJump/ProxyCommand
    child (the hop to the jump host) stays in the terminal's process group: closing the terminal would hang
    it up, and a Ctrl-C meant for a task (which then cancels a pending job through this very login) would
    kill it -- and with it the login the user just gave a code for. (OpenSSH's own prompts still read ^C
    from the terminal; a Ctrl-C while it connects ends it through Python.)"""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
