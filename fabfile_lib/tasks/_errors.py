"""Turning the project's error into what a command-line user should see: one line and exit code 1."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from invoke.config import AmbiguousMergeError, merge_dicts
from invoke.exceptions import Exit, UnknownFileType

from ..errors import ConfigError, JobEnded, LabError, WaitTimeout
from ..settings import merge_conflict, state_path

F = TypeVar("F", bound=Callable)


# Exit codes (README, "Every day"): scripts can tell a bad call from a lab that ended or timed out.
OK, ERROR, USAGE, ENDED, TIMED_OUT = 0, 1, 2, 3, 4


def exit_code(exc: LabError) -> int:
    if isinstance(exc, ConfigError):
        return USAGE
    if isinstance(exc, JobEnded):
        return ENDED
    if isinstance(exc, WaitTimeout):
        return TIMED_OUT
    return ERROR


def lab_config(context) -> dict:
    """The ``lab`` config of a task's context; a file named with ``-f`` that does not exist is an error
    (Invoke would silently go on without it, and every later message would mislead)."""
    config = context.config
    path, found = getattr(config, "_runtime_path", None), getattr(config, "_runtime_found", None)
    if path and not found:
        raise ConfigError(f"config file {path} does not exist: check the path given with -f.")
    return config.get("lab", {})


def _report(context, exc_info=None) -> str:
    """Append the traceback to ``errors.log`` in the state directory (0600); return its path."""
    try:
        lab_config = context.config.get("lab", {}) if context is not None else {}
        path = state_path(str(lab_config.get("state_dir") or "")) / "errors.log"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            text = "".join(traceback.format_exception(*exc_info)) if exc_info else traceback.format_exc()
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{text}\n")
        return str(path)
    except Exception:  # reporting must never hide the error itself
        return "(no log: the state directory is not writable)"


def user_errors(func: F) -> F:
    """Report a LabError as ``error: MESSAGE`` on stderr and exit 1, with no traceback.

    ``functools.wraps`` keeps ``__wrapped__``, from which Invoke reads the task's real signature.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LabError as exc:
            raise Exit(f"error: {exc}", code=exit_code(exc)) from None
        except (Exit, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # output piped into `head` and the like: the reader has what it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit stays quiet
            raise Exit(code=ERROR) from None
        except Exception as exc:  # a bug of ours: one line here, the traceback in a file
            where = _report(args[0] if args else None)
            raise Exit(f"internal error: {type(exc).__name__}: {exc} (please report; details in {where})",
                       code=ERROR) from None

    return wrapper  # type: ignore[return-value]


# -- before any task runs ----------------------------------------------------------------------------
# Invoke reads and merges the config files after loading tasks.py and before running a task, and lets
# their errors escape as tracebacks. The hook below is the one place left to turn them into one line.

_LEVELS = (("system", "the system config"), ("user", "your user config"), ("project", "the project's invoke.yaml"),
           ("runtime", "the file given with -f"))


def _program_config():
    """The config of the program that runs: ``fabfile-lab`` (looked up, not imported: it is above this
    module), else Invoke's own ``inv``."""
    ours = sys.modules.get("fabfile_lib.program")
    try:
        if ours is not None and getattr(ours.program, "config", None) is not None:
            return ours.program.config
        from invoke.main import program
        return program.config
    except Exception:
        return None


def _conflict_message() -> str:
    """Which file gives which key in a shape that cannot merge with the defaults (mapping vs value)."""
    config = _program_config()
    if config is None:
        return "a config file gives a single value where a mapping is expected, or the reverse"
    merged: dict = {}
    for level in ("defaults", "collection"):
        merge_dicts(merged, getattr(config, f"_{level}", {}) or {})
    for level, desc in _LEVELS:
        data = getattr(config, f"_{level}", {}) or {}
        found = merge_conflict(merged, data)
        if found:
            key, value = found
            where = getattr(config, f"_{level}_path", None) or desc
            wanted = "a single value" if isinstance(value, dict) else "a mapping (key: value lines)"
            return (f"in {where}: {key} must be {wanted}, not {type(value).__name__} "
                    f"{json.dumps(value, default=str)[:80]}")
        merge_dicts(merged, data)
    return "a config file gives a single value where a mapping is expected, or the reverse"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _guard(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt | SystemExit):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if isinstance(exc, LabError):  # raised while the config files are read (config_trust.py)
        message, code = f"error: {exc}", exit_code(exc)
    elif isinstance(exc, AmbiguousMergeError):
        message, code = f"error: {_conflict_message()}.", USAGE
    elif isinstance(exc, UnknownFileType | json.JSONDecodeError) or ".yaml." in type(exc).__module__:
        message, code = f"error: a config file cannot be read: {_one_line(exc)[:300]}", USAGE
    else:
        where = _report(None, (exc_type, exc, tb))
        message, code = (f"internal error: {exc_type.__name__}: {_one_line(exc)[:200]} "
                         f"(please report; details in {where})"), ERROR
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    os._exit(code)  # SystemExit cannot be raised from an excepthook; nothing else is left to run


def install_guard() -> None:
    """Report exceptions that escape Invoke itself (config files it cannot merge or parse) in one line.
    Installed only over Python's default hook, so an application that set its own keeps it."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _guard
