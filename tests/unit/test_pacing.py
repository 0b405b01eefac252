"""How often Slurm is asked: backoff with jitter, slower after a failure, sooner on evidence."""

from __future__ import annotations

from fabfile_lib.pacing import AFTER_FAILURE, Asking, Pace


def test_delays_grow_to_a_ceiling_and_jitter_spreads_them():
    pace = Pace(first=3.0, most=45.0, jitter=0.2)
    assert [pace.delay(n, rand=lambda: 0.5) for n in range(6)] == [3.0, 6.0, 12.0, 24.0, 45.0, 45.0]
    assert pace.delay(0, rand=lambda: 0.0) == 3.0 * 0.8 and pace.delay(0, rand=lambda: 1.0) == 3.0 * 1.2
    assert pace.delay(1000, rand=lambda: 0.5) == 45.0


def test_a_failure_waits_longer_and_evidence_does_not_cut_that_wait():
    asking = Asking(Pace(first=3.0))
    assert asking.due(0)
    delay = asking.unanswered(0)
    assert delay >= AFTER_FAILURE.first * 0.8 and not asking.due(delay - 1)
    asking.now(1)  # the lab's path changed, but Slurm just failed: still wait
    assert not asking.due(2)
    asking.answered(20)
    assert asking.failed == 0 and not asking.due(21)
    asking.now(21)  # evidence: ask soon -- no sooner than pace.first after the last answer
    assert not asking.due(22) and asking.due(23.0)
