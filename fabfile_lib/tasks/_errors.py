"""Turning the project's error into what a command-line user should see: one line and exit code 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from invoke.exceptions import Exit

from ..errors import LabError

F = TypeVar("F", bound=Callable)


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

    return wrapper  # type: ignore[return-value]
