"""Commands on a hop: a shell command (quoted words, or a whole bash script any login shell passes on) run
through whatever carries the hop, with every failure of the carrier a ConnectError."""

from __future__ import annotations

import base64
import logging
import shlex

from . import openssh
from .errors import ConnectError, LabError

_log = logging.getLogger(__name__)


def run_command(conn, command: str, *, timeout: float = 60, data: bytes | None = None):
    """Run a shell ``command`` on ``conn`` and return Invoke's Result (any exit status); a connection that
    fails on the way -- SSH error, dead ProxyCommand or master, timeout -- becomes a ConnectError.
    ``data``: the command's standard input, for a ``conn`` that takes it whole (``Hops.feeder()``)."""
    _log.debug("on %s: %s", conn.host, command)
    stdin = {"data": data} if data is not None else {"in_stream": False}
    try:
        result = conn.run(command, hide=True, warn=True, timeout=timeout, **stdin)
    except LabError:
        raise
    except (TimeoutError, OSError, EOFError) as exc:
        raise ConnectError(f"`{command.split()[0]}` on {conn.host} failed: {exc or type(exc).__name__}") from None
    except Exception as exc:  # Paramiko's SSHException, Invoke's CommandTimedOut and friends
        raise ConnectError(f"`{command.split()[0]}` on {conn.host} did not finish: {exc or type(exc).__name__}") \
            from None
    _log.debug("on %s: exit %s", conn.host, result.exited)
    if getattr(conn, "rides_master", False) and result.exited == 255:  # ssh's own failure, not the command's
        raise openssh.explain(result.stderr, f"`{command.split()[0]}` on {conn.host}", 255)
    return result


def bash_script(script: str, *args: str) -> str:
    """A command that runs a (multi-line) bash ``script`` with ``args`` whatever the user's login shell is:
    the script travels base64-encoded on one line, which csh and tcsh pass on as sh does (a multi-line
    quoted ``bash -c`` would not survive them), and the script's stdin stays the command's own."""
    encoded = base64.b64encode(script.encode()).decode()
    inner = 'eval "$(printf %s ' + encoded + ' | base64 -d)"'
    return f"bash -c {shlex.quote(inner)} bash {shlex.join(args)}".rstrip()


def run(conn, argv: list[str], *, check: bool = True, timeout: float = 60) -> str:
    """Run ``argv`` on ``conn`` with every word shell-quoted; a failure becomes a LabError."""
    result = run_command(conn, shlex.join(argv), timeout=timeout)
    if check and result.exited != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(f"`{argv[0]}` on {conn.host} failed: {lines[-1] if lines else f'exit {result.exited}'}")
    return result.stdout
