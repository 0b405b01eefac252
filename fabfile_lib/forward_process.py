"""The background forward of ``lab.tunnel --detach``: ``python -m fabfile_lib.forward_process NAME DIR``.

Its command line carries only the lab's name and state directory; the token stays in the 0600 record.
It records its own pid, start time and bound port in the lab's record once the port is bound, and holds
the forwards until SIGTERM (``lab.tunnel --stop``, ``lab.cancel``) or until the job ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from . import state
from .errors import LabError
from .forwards import Forward
from .procs import start_time
from .tunnel import hold


def _await_ready(state_dir: Path, name: str, stop: threading.Event) -> state.LabRecord | None:
    """The lab's record once it says where Jupyter answers (``lab.start --detach`` starts this process
    while the job is still starting); None if the lab is cancelled, stopped or never gets there."""
    deadline = None
    while not stop.is_set():
        if not state.exists(state_dir, name):
            return None
        record = state.load(state_dir, name)
        if record.reachable:
            return record
        if deadline is None:
            deadline = time.monotonic() + float(record.settings.get("wait_timeout", 300)) + 30
        if time.monotonic() > deadline:
            return None
        stop.wait(0.05)
    return None


def main(name: str, state_dir: str) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    record = _await_ready(Path(state_dir), name, stop)
    if record is None:
        return 0  # cancelled, or never answered: nothing to forward
    settings = state.settings_of(record, state_dir=state_dir)
    me = os.getpid()

    def on_ready(fwd: Forward) -> None:
        state.update(Path(state_dir), name, forward_pid=me, forward_started=start_time(me) or "", forward_port=fwd.port,
                     forward_note="")
        print(f"forwarding 127.0.0.1:{fwd.port} to {record.far} via {record.via}",
              flush=True)

    def note(text: str) -> None:
        state.update(Path(state_dir), name, forward_note=text)

    try:
        hold(settings, record, on_ready, stop, log=lambda m: print(m, flush=True), interactive=False, note=note)
    except LabError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    except Exception as exc:  # a bug of ours: say so in the log, with the details, and end cleanly
        print(f"internal error: {type(exc).__name__}: {exc} (please report)\n{traceback.format_exc()}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
