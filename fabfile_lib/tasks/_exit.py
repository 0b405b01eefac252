"""A command that ends without Python's last garbage collections over everything it imported.

At exit Python clears every module and collects the reference cycles among their objects: with Invoke and
the tool loaded that took 45-60 ms here, after the command's work was done -- on the path of every command
(a ``start``'s URL, a ``status`` line) to the shell's prompt. So the objects still alive at exit are frozen
first (``gc.freeze``: collections skip them). Everything else ends as before: the other atexit handlers
(logging's shutdown among them), flushed standard streams, files closed as their last reference goes.
"""

from __future__ import annotations

import atexit
import gc


def install() -> None:
    """Freeze at exit: registered once, when the tasks are imported, so the handlers registered after it
    (atexit runs the last first) still run before it."""
    atexit.register(gc.freeze)
