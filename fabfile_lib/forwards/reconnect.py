"""When a held forward tries again after its connection dropped.

Sites rate-limit logins (JSC blocks a client that connects too often), so a forward never builds more
than one chain of handshakes per ``min_interval`` seconds, backs off while the site stays unreachable, and
gives up after ``give_up_after`` seconds of failing. The first attempt after a drop goes at once when the
last one is old enough: a laptop waking up reconnects immediately.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    min_interval: float = 10.0
    max_delay: float = 60.0
    give_up_after: float = 30 * 60

    def delay(self, failures: int, since_last_attempt: float) -> float:
        """Seconds to wait before the next attempt, after ``failures`` failed ones in a row."""
        wanted = 0.0 if failures == 0 else min(self.max_delay, self.min_interval * 2 ** (failures - 1))
        return max(wanted, self.min_interval - since_last_attempt, 0.0)

    def exhausted(self, failing_for: float) -> bool:
        return failing_for > self.give_up_after
