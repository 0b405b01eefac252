"""What a user sees while the job queues: one live line on a terminal, one plain line per change elsewhere.

The live line is drawn by ``rich`` (kept, tested, and it knows terminals); it goes to stderr, so that
``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from ..notify import notify

if TYPE_CHECKING:
    from ..slurm import JobInfo  # (Fabric comes with it: not at start-up)

NOTIFY_AFTER = 30  # seconds of waiting after which the start of the job is worth a desktop notification


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:09``."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def expected_start(start: str, now: datetime | None = None) -> str:
    """Slurm's expected start (squeue %S, as ``squeue --start`` shows it) as ``14:05`` today, else
    ``11-28 09:00``; "" when Slurm has none."""
    try:
        when = datetime.fromisoformat(start)
    except ValueError:
        return ""
    now = now or datetime.now()
    return when.strftime("%H:%M") if when.date() == now.date() else when.strftime("%m-%d %H:%M")


def line(info: JobInfo, waited: float, now: datetime | None = None) -> str:
    """``job 42: pending (Priority), 0:42 waited, starts ~14:05``."""
    why = f" ({info.reason})" if info.reason else ""
    if info.state == "RUNNING":
        return f"job {info.job_id}: running on {info.node or '?'} after {clock(waited)}; waiting for the app to listen"
    text = f"job {info.job_id}: {info.state.lower()}{why}, {clock(waited)} waited"
    start = expected_start(info.start, now) if info.state == "PENDING" else ""
    return text + (f", starts ~{start}" if start else "")


class QueueDisplay:
    """A ``wait`` progress callback. Use as a context manager: the live line is removed at the end."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.began = time.monotonic()
        self.info: JobInfo | None = None
        self._shown: tuple[str, str, str] | None = None
        self._started_at: float | None = None
        self._live = None
        if self.stream.isatty() if live is None else live:
            from rich.console import Console  # only where a terminal shows it: every task starts faster
            from rich.live import Live

            console = Console(file=self.stream, highlight=False)
            self._live = Live(self, console=console, refresh_per_second=2, transient=True)

    def __rich__(self):
        from rich.text import Text

        return Text(line(self.info, time.monotonic() - self.began) if self.info else "submitted")

    def __enter__(self) -> QueueDisplay:
        if self._live:
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._live.stop()

    def restart(self) -> None:
        """A new job is waited for (``lab.via: auto`` tries the next mode): its own clock and state."""
        self.began, self.info, self._shown, self._started_at = time.monotonic(), None, None, None

    def __call__(self, info: JobInfo) -> None:
        self.info = info
        waited = time.monotonic() - self.began
        if info.running and self._started_at is None:
            self._started_at = waited
            if waited > NOTIFY_AFTER:
                notify("JupyterLab job started", f"job {info.job_id} runs on {info.node} after {clock(waited)}")
        key = (info.state, info.reason, info.node)
        if key == self._shown:
            return
        self._shown = key
        if self._live:
            self._live.refresh()
            if info.running:
                self._live.console.print(line(info, waited))
        else:
            print(line(info, waited), file=self.stream, flush=True)
