"""Watching a held lab's job: warnings before its time limit, and why it ended.

A researcher whose lab is about to hit its walltime should hear it before unsaved work is lost: the
warnings come at 15, 5 and 1 minutes left (once each), in the forward's log or the terminal, and as a
desktop notification where one is available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import slurm
from .notify import notify

WARN_AT = (15 * 60, 5 * 60, 60)  # seconds left


@dataclass
class JobWatch:
    """Feed it each squeue answer; it says what the user should hear (each warning once)."""

    name: str
    job_id: str
    say: Callable[[str], None]
    warned: set[int] = field(default_factory=set)

    def update(self, info: slurm.JobInfo) -> None:
        left = info.seconds_left
        if left is None or not info.running:
            return
        due = [mark for mark in WARN_AT if left <= mark and mark not in self.warned]
        if not due:
            return
        self.warned.update(mark for mark in WARN_AT if mark >= min(due))
        minutes = max(1, round(left / 60))
        text = (f"lab {self.name}: job {self.job_id} reaches its time limit in about {minutes} minute"
                f"{'s' if minutes != 1 else ''}{f' (at {info.end})' if info.end else ''}: save your work.")
        self.say(text)
        notify("JupyterLab on the cluster", text)

    def ended(self, why: str) -> str:
        text = f"job {self.job_id} has ended: {why}; stopping the forwards"
        self.say(text)
        notify("JupyterLab on the cluster", f"lab {self.name}: {text}.")
        return text
