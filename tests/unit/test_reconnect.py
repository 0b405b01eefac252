"""The pacing of reconnects."""

from __future__ import annotations

from fabfile_lib.forwards.reconnect import Backoff


def test_reconnects_are_paced_for_sites_that_rate_limit_logins():
    b = Backoff()
    assert b.delay(0, since_last_attempt=3600) == 0  # a drop long after the last login: at once
    assert b.delay(0, since_last_attempt=4) == 6  # never two chains of handshakes within 10 s
    assert [b.delay(n, since_last_attempt=100) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert not b.exhausted(29 * 60) and b.exhausted(31 * 60)
