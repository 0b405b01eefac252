"""One writer at a time between the tool's processes on this machine (the tasks, the background
forward): a lock file in a private directory, held with ``filelock`` -- ``flock`` on POSIX, ``msvcrt`` on
Windows --, so no module of the package needs ``fcntl``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the lock file ``path`` (made 0600; its directory must exist) for the ``with`` block."""
    from filelock import FileLock  # (it loads asyncio: not for a command that only reads)
    with FileLock(str(path), mode=0o600, thread_local=False):
        yield
