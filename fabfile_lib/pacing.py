"""How often the tool asks Slurm: rarely, backing off, with jitter -- and slower when it did not answer.

squeue(1) asks programs not to run client commands in loops, sites rate-limit users' RPCs (Slurm 23.02's
``rl_enable``: 30 tokens, refilled 2 a second, shared by everything the user runs), and many laptops that
ask in step make peaks. So a lab's state comes from its own path (the forward answering, the files its
job writes) and Slurm is asked only for what nothing else tells: why a job waits and when it may start,
how long it may run, and why it ended. A scheduler that does not answer is asked again later, more
slowly; that never means the job ended.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

PROBE_EVERY = 2.0  # seconds between end-to-end probes of a held lab (Jupyter's /api through our listener)
TIME_LIMIT_EVERY = 600.0  # a held lab reads its end time again at most this often (an admin may extend it)
FIRST_ASK = 1.0  # seconds from a wait's start to its first question: a job on free resources writes its node sooner
JOBS_EVERY = 10.0  # seconds between looks at the list of jobs a held lab has started (a file, not Slurm)


@dataclass(frozen=True)
class Pace:
    """Delays that grow from ``first`` by ``factor`` up to ``most`` seconds, each off by up to ±``jitter``
    of itself so that laptops started together drift apart."""

    first: float
    factor: float = 2.0
    most: float = 45.0
    jitter: float = 0.2

    def delay(self, asked: int, rand: Callable[[], float] = random.random) -> float:
        """The delay after the ``asked``-th question (0 for the first)."""
        base = min(self.most, self.first * self.factor ** min(asked, 32))
        return base * (1 + self.jitter * (2 * rand() - 1))


WHILE_PENDING = Pace(first=3.0, most=45.0)  # why the job waits, when it may start
AFTER_FAILURE = Pace(first=10.0, most=120.0)  # Slurm refused or timed out: later, slower
AFTER_CANCEL = Pace(first=0.5, most=4.0, jitter=0.0)  # waiting for a cancelled job to leave
WHILE_RUNNING = Pace(first=60.0, most=600.0)  # a started job's end, where its own mark may not come
WHILE_HELD = Pace(first=5.0, most=60.0)  # a held lab whose path stopped answering: has the job ended?


@dataclass
class Asking:
    """When to ask Slurm next: a pace while it answers, a slower one while it does not."""

    pace: Pace
    next_at: float = 0.0
    asked: int = 0
    failed: int = 0
    last_at: float = float("-inf")

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def answered(self, now: float) -> None:
        self.next_at, self.asked, self.failed = now + self.pace.delay(self.asked), self.asked + 1, 0
        self.last_at = now

    def unanswered(self, now: float) -> float:
        """Slurm could not be asked: the next question waits longer; returns that delay."""
        delay = AFTER_FAILURE.delay(self.failed)
        self.next_at, self.failed = now + delay, self.failed + 1
        return delay

    def now(self, now: float) -> None:
        """Something changed on the lab's own path: ask at once -- but not sooner than ``pace.first`` after
        the last answer, nor before a failure's wait is over."""
        if not self.failed:
            self.next_at = min(self.next_at, max(now, self.last_at + self.pace.first))
