"""What a held lab keeps across reconnects: the job's time limit, when Slurm may be asked next, and the
condition last said (said once per change)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import lab_dir, pacing, slurm
from ..errors import LabError, SchedulerError
from ..hops import Hops
from ..state import LabRecord
from .job_watch import JobWatch
from .lab_jobs import end_with_the_lab

Log = Callable[[str], None]
Note = Callable[[str], None]  # the forward's condition, said once per change: "" while its URL answers
Learnt = Callable[[slurm.JobInfo], None]  # what Slurm said about the running job (its time limit)


@dataclass
class Vigil:
    """What a held lab keeps across reconnects: the job's time limit, when Slurm may be asked next, and
    the condition last said."""

    watch: JobWatch
    log: Log
    note: Note | None
    asking: pacing.Asking = field(default_factory=lambda: pacing.Asking(pacing.WHILE_HELD))
    said: str | None = None
    learnt: Learnt | None = None

    def learn(self, info: slurm.JobInfo, now: float) -> None:
        self.watch.learn(info, now)
        if self.learnt:
            self.learnt(info)

    def condition(self, text: str) -> None:
        if text == self.said:
            return
        self.said = text
        if text:
            self.log(text)
        if self.note:
            self.note(text)

    def ended(self, hops: Hops, record: LabRecord, info: slurm.JobInfo) -> None:
        if info.state == "COMPLETING":  # its processes are being killed: the final state says why, soon
            time.sleep(2)
            with contextlib.suppress(LabError):
                info = slurm.query(hops.shell(), record.job_id, hops.settings.connect_timeout + 10)
        tail = lab_dir.log_tail(hops, record.remote_dir, 30)
        why = slurm.end_reason(hops.shell(), record.job_id, tail, info.state)
        with contextlib.suppress(LabError, OSError):
            jobs = end_with_the_lab(hops, record, tail)
            why = f"{why}; {jobs}" if jobs else why
        self.said = self.watch.ended(why)  # said by the watch
        if self.note:
            self.note(self.said)

    def ask(self, hops: Hops, record: LabRecord) -> slurm.JobInfo | None:
        """Slurm's answer now, if it may be asked and answers; None otherwise (said once per change)."""
        now = time.monotonic()
        if not self.asking.due(now):
            return None
        try:
            info = slurm.query(hops.shell(), record.job_id, hops.settings.connect_timeout + 10)
        except SchedulerError as exc:
            self.log(f"{exc} (asking again in {self.asking.unanswered(now):.0f} s)")
            return None
        self.asking.answered(now)
        return info
