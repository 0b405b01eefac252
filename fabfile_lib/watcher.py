"""The one background process that holds the forwards of every lab the user holds, on every cluster:
``python -P -m fabfile_lib.watcher STATE_DIR``.

What to hold is what the state directory says: a record whose ``hold`` is set (``start --detach``,
``tunnel --detach``, ``attach --detach``) is held, and a lab whose record loses it (``tunnel --stop``) or
goes (``cancel``) is dropped. The watcher reconciles the records with what it holds a few times a second
-- reading small local files, asking nothing of any cluster -- rather than listening to a protocol of its
own, so a watcher killed and started again holds exactly what it held before.

Each held lab is a thread running :func:`forwards.holding.hold` with its own stop event, its own log and its own
connection to its cluster (on OpenSSH, the one kept login of that cluster: every lab there rides it).
One lab's failure ends that lab's thread only. The watcher ends once nothing is held; which process is
the watcher is in ``watcher.json`` (pid and start time), written by the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import locks, procs, state

TURN = 0.2  # seconds between two looks at the records
# A watcher started ahead of the lab it is for (``start --detach`` starts it before it submits, so that
# its own start-up is paid while sbatch runs, not while Jupyter starts) waits this long for a first lab.
AHEAD = 15.0
HoldLab = Callable[[Path, str, str, threading.Event], None]  # (state dir, lab, request, stop): holds until done


@dataclass(frozen=True)
class Plan:
    """One turn's changes: labs to start holding (name, request) and labs to drop."""

    start: tuple[tuple[str, str], ...] = ()
    stop: tuple[str, ...] = ()


def reconcile(wanted: Mapping[str, str], held: Mapping[str, str], done: frozenset[tuple[str, str]]) -> Plan:
    """What to change so that the labs held are the labs wanted.

    ``wanted``: lab -> hold request, from the records. ``held``: lab -> the request its running thread
    serves. ``done``: requests whose thread ended by itself (the job ended, a failure said in the lab's
    log): not started again until the record asks anew. A lab whose request changed is dropped first and
    held anew in a later turn, once the old thread has let go of its local port."""
    stop = tuple(sorted(name for name, request in held.items() if wanted.get(name) != request))
    start = tuple(sorted((name, request) for name, request in wanted.items()
                         if name not in held and (name, request) not in done))
    return Plan(start, stop)


def wanted(state_dir: Path) -> dict[str, str]:
    """lab -> hold request of every record that asks to be held (a damaged record holds nothing)."""
    found = {}
    for name in state.names(state_dir):
        with contextlib.suppress(Exception):
            record = state.load(state_dir, name)
            if record.hold:
                found[name] = record.hold
    return found


@dataclass
class _Held:
    request: str
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)


class Watcher:
    """The labs this process holds, one thread each, kept equal to what the records want."""

    def __init__(self, state_dir: Path, hold_lab: HoldLab):
        self.state_dir = state_dir
        self.hold_lab = hold_lab
        self.held: dict[str, _Held] = {}
        self.done: frozenset[tuple[str, str]] = frozenset()

    def turn(self) -> bool:
        """Reconcile once; whether anything is held or wanted."""
        want = wanted(self.state_dir)
        for name, lab in list(self.held.items()):
            if not lab.thread.is_alive():
                del self.held[name]
                self.done |= {(name, lab.request)}
        self.done = frozenset(d for d in self.done if want.get(d[0]) == d[1])  # asked anew: held anew
        plan = reconcile(want, {n: lab.request for n, lab in self.held.items()}, self.done)
        for name in plan.stop:
            self.held[name].stop.set()
        for name, request in plan.start:
            self._start(name, request)
        return bool(self.held) or any(d not in self.done for d in want.items())

    def _start(self, name: str, request: str) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self.hold_lab, args=(self.state_dir, name, request, stop),
                                  name=f"lab-{name}", daemon=True)
        self.held[name] = _Held(request, thread, stop)
        thread.start()

    def stop_all(self, grace: float = 10.0) -> None:
        for lab in self.held.values():
            lab.stop.set()
        deadline = time.monotonic() + grace
        for lab in self.held.values():
            lab.thread.join(max(0.0, deadline - time.monotonic()))


def ours(state_dir: Path) -> bool:
    """Whether ``watcher.json`` names this very process."""
    info = recorded(state_dir)
    return info is not None and info == (os.getpid(), procs.start_time(os.getpid()))


def recorded(state_dir: Path) -> tuple[int, str] | None:
    """(pid, start time) of the watcher ``watcher.json`` names, if the file is whole."""
    import json

    try:
        data = json.loads(state.watcher_path(state_dir).read_text())
        return int(data["pid"]), str(data["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def watcher_lock(state_dir: Path) -> Iterator[None]:
    """Held while a watcher is started or is ending: never two watchers, never none while a lab waits."""
    with locks.exclusive(state_dir / "watcher.lock"):
        yield


def run(state_dir: Path, hold_lab: HoldLab, stop: threading.Event, turn: float = TURN, ahead: float = AHEAD) -> None:
    """Reconcile until ``stop`` is set or nothing is held nor wanted (``watcher.json`` then removed) -- but
    not before ``ahead`` seconds if nothing was ever asked for: the lab it was started for is on its way."""
    watcher = Watcher(state_dir, hold_lab)
    began, asked = time.monotonic(), False
    try:
        while not stop.wait(turn):
            if watcher.turn():
                asked = True
                continue
            if not asked and time.monotonic() - began < ahead:
                continue
            with watcher_lock(state_dir):
                if wanted(state_dir) and watcher.turn():  # asked for meanwhile
                    continue
                if ours(state_dir):
                    state.watcher_path(state_dir).unlink(missing_ok=True)
                return
    finally:
        watcher.stop_all()


def main(state_dir: str) -> int:
    where = Path(state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with watcher_lock(where):  # the process that started us has written watcher.json by now
        if not ours(where):
            print(f"{time.strftime('%F %T')} another watcher holds {where}: ending", flush=True)
            return 0
    print(f"{time.strftime('%F %T')} watcher {os.getpid()} holding the labs of {where}", flush=True)
    from .held_lab import hold_lab  # the forwards' machinery, imported once this process is the watcher

    try:
        run(where, hold_lab, stop)
    except Exception as exc:  # a bug of ours: said in the watcher's log, with the details
        print(f"internal error: {type(exc).__name__}: {exc} (please report)\n{traceback.format_exc()}", flush=True)
        return 1
    print(f"{time.strftime('%F %T')} watcher {os.getpid()} ends: nothing left to hold", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1])
    sys.stdout.flush()
    # Not sys.exit: that waits for every thread, and a read stuck on a hop that died would keep a watcher
    # that has let go of everything alive, and in the way of the next one.
    os._exit(code)
