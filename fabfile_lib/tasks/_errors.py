"""Turning the project's error into what a command-line user should see: one line and exit code 1."""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable
from typing import TypeVar

from invoke.exceptions import Exit

from ..errors import LabError
from ..settings import state_path

F = TypeVar("F", bound=Callable)


def _report(context) -> str:
    """Append the current traceback to ``errors.log`` in the state directory (0600); return its path."""
    try:
        lab_config = context.config.get("lab", {}) if context is not None else {}
        path = state_path(str(lab_config.get("state_dir") or "")) / "errors.log"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n{traceback.format_exc()}\n")
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
            raise Exit(f"error: {exc}", code=1) from None
        except (Exit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug of ours: one line here, the traceback in a file
            where = _report(args[0] if args else None)
            raise Exit(f"internal error: {type(exc).__name__}: {exc} (please report; details in {where})",
                       code=1) from None

    return wrapper  # type: ignore[return-value]
