"""The Slurm jobs a held lab has started from its notebooks (``sbatch`` in the batch script lists them in
the lab's directory): seen beside the hold, and ended with the lab.

Seeing them is a read of a small file on the login node every ``pacing.JOBS_EVERY`` seconds, never a
question to Slurm, in a thread of its own so that a dead hop never stalls the hold. Ending them is the
job's own work as it ends (one scancel in its trap); where that did not happen -- the node failed, or the
job was killed before its trap ran -- the hold does it once, as it sees the lab's job ended.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .. import lab_dir, pacing, slurm
from ..errors import LabError
from ..hops import Hops
from ..state import LabRecord

Jobs = tuple[str, ...]
ENDED_BY_THE_JOB = "fabfile-lab: ended the jobs the lab had started:"  # the batch script's line


class JobsSeen:
    """Reads the lab's list of jobs at most every ``every`` seconds, beside the caller's loop (:meth:`tick`);
    ``learnt`` hears the list each time it changes."""

    def __init__(self, read: Callable[[], Jobs], learnt: Callable[[Jobs], None], every: float = pacing.JOBS_EVERY):
        self.read, self.learnt, self.every = read, learnt, every
        self.seen: Jobs | None = None
        self.next = 0.0
        self.pending: Future | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-jobs")

    def tick(self, now: float) -> None:
        if self.pending is None and now >= self.next:
            self.pending, self.next = self.pool.submit(self.read), now + self.every
        if self.pending is None or not self.pending.done():
            return
        future, self.pending = self.pending, None
        with contextlib.suppress(LabError, OSError, EOFError):
            jobs = future.result()
            if jobs != self.seen:
                self.seen = jobs
                self.learnt(jobs)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> JobsSeen:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def idle_note(text: str | None) -> str:
    """What the job's ``idle`` note (``idle_watch.NOTE``) means for the user, in one line; "" without one."""
    if not text:
        return ""
    try:
        ends = float(json.loads(text)["ends_at"])
    except (ValueError, KeyError, TypeError):
        return ""
    return (f"unused for a while: the lab ends at {time.strftime('%H:%M', time.localtime(ends))} unless it is "
            "used (lab.idle)")


def end_with_the_lab(hops: Hops, record: LabRecord, log_tail: str) -> str:
    """Once the lab's job has ended: the jobs it started are ended too, by the job's own trap or here;
    what to say of it ("" if it started none, or ``cancel --keep-jobs`` keeps them)."""
    started = lab_dir.jobs(hops, record.remote_dir)
    if not started or lab_dir.read(hops, record.remote_dir, lab_dir.KEEP_JOBS) is not None:
        return ""
    if ENDED_BY_THE_JOB not in log_tail:  # the job could not end them itself
        slurm.cancel_many(hops.shell(), started)
    plural = "s" if len(started) != 1 else ""
    return f"the {len(started)} job{plural} it had started ({' '.join(started)}) ended with it"
