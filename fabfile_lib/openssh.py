"""The user's own OpenSSH client: whether it is there, what it makes of the ssh config, why it failed.

``ssh -G`` prints OpenSSH's own resolution of the config for a destination -- Include, Match,
canonicalisation, HostKeyAlias, CertificateFile, defaults -- which a reimplementation such as Paramiko's
``SSHConfig`` only approximates. Wherever ``ssh`` exists, every host the tool talks to is resolved this way.

OpenSSH reports failures on stderr, in its own words; :func:`explain` turns them into the project's
errors with one line that keeps ssh's reason and says what to do.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import commands
from .errors import AuthenticationError, ConnectError, ForwardingRefused, HostKeyError, LabError, PromptNeeded

Options = dict[str, list[str]]


@functools.cache
def ssh_binary() -> str | None:
    """The ``ssh`` program, if it can hold a ControlMaster (not on Windows, whose port has none)."""
    if sys.platform == "win32":
        return None
    return shutil.which("ssh")


def destination(spec: str) -> str:
    """``[user@]host[:port]`` or an alias, as one ssh destination argument (``ssh://`` for a port)."""
    user, _, hostport = spec.rpartition("@")
    host, sep, port = hostport.partition(":")
    if not sep:
        return spec
    if not port.isdigit():
        raise LabError(f"host {spec!r}: the port after ':' must be a number.")
    return f"ssh://{user + '@' if user else ''}{host}:{port}"


def config_args(ssh_config: Path | None) -> list[str]:
    return ["-F", str(ssh_config)] if ssh_config else []


def effective(dest: str, ssh_config: Path | None, extra: Sequence[str] = (), timeout: float = 10, *,
              memo: dict | None = None) -> Options:
    """OpenSSH's effective options for ``dest`` (``ssh -G``): lower-case keys, every value of each.
    ``memo``: answers already given in this run (one dict per carrier, so an edited config is read anew by
    the next run), by the same words."""
    argv = [ssh_binary() or "ssh", *config_args(ssh_config), *extra, "-G", destination(dest)]
    if memo is not None:
        key = tuple(argv)
        if key not in memo:
            memo[key] = effective(dest, ssh_config, extra, timeout)
        return memo[key]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConnectError(f"`ssh -G {dest}` failed: {exc}") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise LabError(f"ssh cannot read its config for {dest!r}: {lines[-1] if lines else proc.returncode}")
    opts: Options = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key:
            opts.setdefault(key.lower(), []).append(value)
    return opts


def first(opts: Options, key: str, default: str = "") -> str:
    values = opts.get(key)
    return values[0] if values else default


def existing_files(paths: Sequence[str]) -> tuple[str, ...]:
    """ssh -G lists the default identity files whether they exist or not; keep those that do."""
    return tuple(str(Path(p).expanduser()) for p in paths if p and Path(p).expanduser().exists())


def _reason(stderr: str) -> str:
    """ssh's own words, one line: the last line that is not a warning we caused ourselves."""
    noise = ("Pseudo-terminal", "Warning: Permanently added", "@@@", "Control socket connect", "mux_client",
             "Exit request sent", "Killed by signal")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    return lines[-1] if lines else ""


# What ssh says when sshd refuses a forward: a channel refused directly, or through the master (mux).
_REFUSED = ("administratively prohibited", "Session open refused by peer")


def refused(stderr: str, what: str = "forward") -> ForwardingRefused | None:
    """sshd's AllowTcpForwarding/AllowStreamLocalForwarding no, in what ssh said; None if it is not that
    (the caller knows which kind of forwarding it asked for)."""
    word = next((word for word in _REFUSED if word in stderr), "")
    if not word:
        return None
    said = _line_with(stderr, word)
    return ForwardingRefused(f"{what}: the site does not allow this forwarding (ssh: \"{said}\")", said=said)


def explain(stderr: str, what: str, returncode: int | None = None) -> LabError:
    """The error for an ssh that failed while doing ``what``, from its stderr."""
    reason = _reason(stderr) or (f"exit status {returncode}" if returncode is not None else "no output")
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have requested strict" in stderr:
        host = _between(stderr, "Host key for ", " has changed") or "a hop"
        return HostKeyError(f"{what}: host key of {host} does not match the one in your known_hosts (ssh: "
                            f"\"Host key verification failed.\"): refusing to connect. If the host was really "
                            f"re-keyed, verify the new key and replace its line (ssh-keygen -R {host}).")
    if "host key is known for" in stderr or ("Host key verification failed" in stderr):
        host = _between(stderr, "host key is known for ", " and you") or "a hop"
        return HostKeyError(f"{what}: {host} is not in the known hosts (ssh: \"Host key verification "
                            f"failed.\"): refusing an unverified host. Connect once with ssh to check and record "
                            f"its key, or set lab.accept_new_host_keys: true.")
    if "pam_slurm_adopt" in stderr:
        return ConnectError(f"{what}: the compute node refuses ssh from outside a job of yours there (ssh: "
                            f"\"{_line_with(stderr, 'pam_slurm_adopt')}\")")
    refusal = refused(stderr, what)
    if refusal:
        return refusal
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return AuthenticationError(f"{what}: authentication failed (ssh: \"{reason}\"): check the user, "
                                   f"IdentityFile and agent; a second factor needs `{commands.run('login')}` in a "
                                   "terminal.")
    if "read_passphrase" in stderr or "can't open /dev/tty" in stderr or "No such device or address" in stderr:
        return PromptNeeded(f"{what}: ssh needs to ask for a passphrase or code and has no terminal: run "
                            f"`{commands.run('login')}` in a terminal first.")
    return ConnectError(f"{what}: {reason}")


def proxy_died(stderr: str) -> bool:
    """The hop before this one (ProxyCommand/ProxyJump) closed before any SSH was spoken."""
    return "kex_exchange_identification" in stderr or "Connection closed by UNKNOWN port" in stderr


def _line_with(text: str, word: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if word in ln), word)[:160]


def _between(text: str, start: str, end: str) -> str:
    head, sep, tail = text.partition(start)
    return tail.partition(end)[0].strip() if sep else ""


def tty_available() -> bool:
    """Whether OpenSSH could ask the user anything: it prompts on /dev/tty, not on stdin."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True
