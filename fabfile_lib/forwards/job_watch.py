"""Watching a held lab's job: how long it has left, warnings before its time limit, and why it ended.

A researcher whose lab is about to hit its walltime should hear it before unsaved work is lost: the
warnings come at 15, 5 and 1 minutes left (once each), in the forward's log or the terminal, and as a
desktop notification where one is available. The time left is learnt from Slurm rarely (see
``pacing.TIME_LIMIT_EVERY``) and counted down here on the local clock in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import slurm
from ..notify import notify
from ..pacing import TIME_LIMIT_EVERY

WARN_AT = (15 * 60, 5 * 60, 60)  # seconds left


@dataclass
class JobWatch:
    """Feed it Slurm's answers (:meth:`learn`) and the clock (:meth:`tick`); it says what the user should
    hear (each warning once)."""

    name: str
    job_id: str
    say: Callable[[str], None]
    warned: set[int] = field(default_factory=set)
    ends_at: float | None = None  # on the monotonic clock; None: no time limit known
    end: str = ""  # Slurm's expected end, as it prints it
    learned_at: float | None = None

    def learn(self, info: slurm.JobInfo, now: float) -> None:
        """What Slurm said at ``now`` (monotonic) about the running job."""
        self.learned_at = now
        left = info.seconds_left if info.running else None
        self.ends_at = None if left is None else now + left
        self.end = info.end
        self.tick(now)

    def stale(self, now: float) -> bool:
        """Whether the time limit is worth reading again (never read, or read ``TIME_LIMIT_EVERY`` ago)."""
        return self.learned_at is None or now - self.learned_at >= TIME_LIMIT_EVERY

    def tick(self, now: float) -> None:
        if self.ends_at is None:
            return
        left = self.ends_at - now
        due = [mark for mark in WARN_AT if left <= mark and mark not in self.warned]
        if not due:
            return
        self.warned.update(mark for mark in WARN_AT if mark >= min(due))
        minutes = max(1, round(left / 60))
        text = (f"lab {self.name}: job {self.job_id} reaches its time limit in about {minutes} minute"
                f"{'s' if minutes != 1 else ''}{f' (at {self.end})' if self.end else ''}: save your work.")
        self.say(text)
        notify("JupyterLab on the cluster", text)

    def ended(self, why: str) -> str:
        text = f"job {self.job_id} has ended: {why}; stopping the forwards"
        self.say(text)
        notify("JupyterLab on the cluster", f"lab {self.name}: {text}.")
        return text
