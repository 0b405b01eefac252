"""A command run as its own process, without paying Python's start-up and imports for each run: a fork of
the test process (which has imported the package once) that sets argv, environment and directory, runs the
entry point and exits with its code. What the run changes -- globals, the environment, the directory --
ends with the child.

Tests of what a fresh interpreter imports (the laptop's trust, lazy imports) start a real one instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def run_forked(main: Callable[[], object], argv: list[str], *, cwd: Path, env: dict[str, str],
               timeout: float = 60) -> subprocess.CompletedProcess:
    """``main()`` with ``sys.argv = argv`` in a forked child; its exit code, stdout and stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = _child(main, argv, cwd=cwd, env=env, out=out.fileno(), err=err.fileno())
            os._exit(code)
        code = _wait(pid, timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, code, out.read().decode(), err.read().decode())


def _child(main: Callable[[], object], argv: list[str], *, cwd: Path, env: dict[str, str], out: int,
           err: int) -> int:
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = list(argv)
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # what an interpreter does: the hook in place (the program may set its own)
            sys.excepthook(*sys.exc_info())
            code = 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        return code
    except BaseException:
        return 70


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _wait(pid: int, timeout: float) -> int:
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(str(pid), timeout)
        time.sleep(0.005)
