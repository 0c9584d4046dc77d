"""A thread-safe token bucket in write capacity units, for `lazyrep backfill --rate`.

Each write reserves its WCU before it is sent and sleeps until the bucket would have
held them: over any interval T the writes sent cost at most `burst_wcu + rate_wcu * T`,
whatever the number of threads. A write larger than the burst (a 300 KB item is 300
WCU) still goes, by borrowing: the writes after it wait for the debt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WcuBucket:
    """`acquire(units)` blocks until `units` WCU fit the rate."""

    def __init__(
        self,
        rate_wcu: float,
        *,
        burst_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_wcu <= 0:
            raise ValueError("WcuBucket.rate_wcu must be above 0")
        if not 0 <= burst_s <= 10:
            raise ValueError("WcuBucket.burst_s must be between 0 and 10")
        self.rate_wcu = rate_wcu
        # At least one unit, so a rate below 1/burst_s still lets single writes through.
        self.burst_wcu = max(1.0, rate_wcu * burst_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst_wcu
        self._last = clock()

    def acquire(self, units: float) -> float:
        """Reserve `units` WCU, sleeping as long as the rate requires; the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst_wcu, self._tokens + (now - self._last) * self.rate_wcu)
            self._last = now
            self._tokens -= units
            wait = -self._tokens / self.rate_wcu if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
