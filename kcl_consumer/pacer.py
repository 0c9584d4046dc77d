"""The lazy replica's pacer: a token bucket in WCU that spends near the primary's average rate.

One pacer per shard process (the MultiLangDaemon runs one child per shard). The
processor pays for each chunk of records with `acquire` before writing it, reports
each batch with `observe`, and calls `record_throttle` when the replica throttles.

Rate policy (docs/PACER.md has the formulas and the reasons):
- steady: the primary's average write rate over the last 24 h of arrival time, plus
  a little headroom, so the replica is provisioned near the average, not the peak;
- deadline: fast enough that every record already in the stream is applied before
  its arrival plus the deadline (with slack), given what is known or forecast of the
  backlog's ages: required = max over the backlog, oldest first, of
  (WCU up to that record) / (time left before that record's deadline);
- never above max_wcu, never above the throttle ceiling, never below min_wcu
  (unless the replica throttles).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kcl_consumer.pacer_aws import read_retention_s, verified_config
from kcl_consumer.pacer_config import DeadlineError, PacerConfig, check_deadline_fits
from kcl_consumer.pacer_history import ArrivalHistory

__all__ = [
    "DeadlineError",
    "Pacer",
    "PacerConfig",
    "PacerState",
    "Verdict",
    "check_deadline_fits",
    "read_retention_s",
    "verified_config",
]

logger = logging.getLogger(__name__)

Verdict = Literal["ok", "at risk", "records will expire"]

THROTTLE_FLOOR_WCU = 0.1
"""The throttle ceiling never goes below this: one 1 KB write every 10 s still moves."""
THROTTLE_DEBOUNCE_S = 1.0
"""Throttles reported within this long of a backoff are the same event (parallel writers)."""
MAX_NAP_S = 1.0
"""A waiting caller looks at the rate again at least this often."""
MIN_NAP_S = 1e-6
_EPSILON_WCU = 1e-6  # float rounding: a reservation this close to paid is paid
_REBASE_WCU = 1e6  # the bucket's running totals are rebased past this (precision)
IDLE_GRACE_S = 10.0
"""Caught up and quiet this long: nothing older than this waits in the stream (KCL polls ~1/s)."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PacerState:
    """What the pacer knows and plans, for `lazyrep status` (all rates in WCU/s).

    backlog_wcu_estimate: WCU in the stream not yet paid for (observed, or forecast
        for what arrived after the newest record seen). oldest_age_s: age of the
        oldest of them. projected_drain_s: backlog / rate. margin_to_deadline_s: at the
        current rate, the least time any backlogged record would have to spare before
        its deadline (negative: some would miss it); margin_to_retention_s: the same
        against the stream's retention. required_wcu: the rate that meets every
        deadline exactly (no slack). spent_wcu / records_observed: totals since start.
    """

    rate_wcu: float
    average_arrival_wcu: float
    backlog_wcu_estimate: float
    oldest_age_s: float
    projected_drain_s: float
    deadline_s: float
    margin_to_deadline_s: float
    margin_to_retention_s: float
    throttled_recently: bool
    verdict: Verdict
    required_wcu: float
    max_wcu: float
    ceiling_wcu: float | None
    throttles: int
    spent_wcu: float
    records_observed: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; rounded, and None where a figure is infinite."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if isinstance(value, float):
                out[name] = round(value, 3) if math.isfinite(value) else None
            else:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class _Assessment:
    backlog_wcu: float
    oldest_age_s: float
    required_wcu: float  # meets every deadline less the slack: what the policy spends
    required_at_deadline_wcu: float  # meets every deadline exactly: what the verdict uses
    margin_s: float  # at the rate given, before the deadline


class Pacer:
    """Token bucket in WCU with a deadline-aware rate; thread-safe, clock and sleep injectable.

    The bucket starts empty and holds at most `burst_s` of the current rate. A
    caller that takes more than is there is told to wait for the shortfall at the
    current rate (its reservation is kept, so concurrent callers queue in order).
    """

    def __init__(
        self,
        config: PacerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._history = ArrivalHistory(config.average_window_s)
        now = clock()
        self._rate = config.min_wcu
        # The bucket as two running totals: tokens = credit - debit (negative: owed).
        self._credit = 0.0
        self._debit = 0.0
        self._refilled_at = now
        self._updated_at: float | None = None
        self._ceiling: float | None = None
        self._backoff_at = -math.inf
        self._throttles = 0
        self._head_ms: int | None = None  # arrival of the oldest record not paid for
        self._acquired_since_observe_ms: int | None = None
        self._paying_since_ms: int | None = None  # wall time of the first of those
        self._tip_ms: int | None = None  # the last batch reached the tip: nothing older unseen
        self._behind_ms: int | None = None
        self._waiting = 0
        self._active_at = now
        self._spent = 0.0
        self._records = 0

    # -- the processor's calls ---------------------------------------------------------------

    def acquire(self, wcu: float, arrival_ms: int | None = None) -> float:
        """Block until `wcu` may be spent; return the seconds waited.

        `arrival_ms` is the arrival time of the oldest record paid for (None if
        unknown): it tells the pacer how old the head of the shard is.

        Raises:
            ValueError: `wcu` is negative or not a number.
        """
        if not wcu >= 0 or math.isinf(wcu):
            raise ValueError(f"acquire: wcu must be a finite number >= 0, got {wcu!r}")
        with self._lock:
            began = self._clock()
            if arrival_ms is not None:
                self._note_arrival(wcu, arrival_ms)
            self._update_if_due(began)
            self._refill(began)
            self._debit += wcu
            self._spent += wcu
            covered_at = self._debit  # this reservation is paid once credit reaches it
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    self._update_if_due(now)
                    self._refill(now)
                    shortfall = covered_at - self._credit
                    if shortfall <= _EPSILON_WCU:
                        break
                    # Re-checked at least every MAX_NAP_S: a throttle or a catch-up that
                    # changes the rate meanwhile changes when this reservation is paid.
                    nap = min(max(shortfall / self._rate, MIN_NAP_S), MAX_NAP_S)
                self._sleep(nap)
        finally:
            with self._lock:
                self._waiting -= 1
                self._active_at = self._clock()
        return self._clock() - began

    def observe(
        self,
        batch_wcu: float,
        records: int,
        oldest_arrival_ms: int | None,
        millis_behind_latest: int | None,
        *,
        newest_arrival_ms: int | None = None,
    ) -> None:
        """One KCL batch: its WCU, record count, arrival times and the shard's lag.

        Call it when the batch is delivered (before paying for it) or once it is
        applied; the pacer tells the two apart by whether it has already been paid
        for. `newest_arrival_ms` (the batch's newest arrival) is optional but makes
        the estimate exact; without it the pacer derives it from millis_behind_latest
        or from what was paid for.
        """
        if not batch_wcu >= 0 or math.isinf(batch_wcu):
            raise ValueError(f"observe: batch_wcu must be a finite number >= 0, got {batch_wcu!r}")
        with self._lock:
            now = self._clock()
            wall = self._wall_ms()
            behind = max(0, millis_behind_latest or 0)
            paid = self._acquired_since_observe_ms
            oldest = oldest_arrival_ms
            if oldest is None:
                oldest = newest_arrival_ms if newest_arrival_ms is not None else wall - behind
            already_paid = paid is not None and paid >= oldest
            if newest_arrival_ms is not None:
                newest = newest_arrival_ms
            elif already_paid and paid is not None:
                newest = paid
            else:
                newest = wall - behind
            newest = max(oldest, min(newest, wall))
            oldest = min(oldest, newest)
            self._history.add(batch_wcu, oldest, newest)
            if already_paid:
                # Everything up to the batch's newest record is paid for.
                after = newest + 1
                self._head_ms = after if self._head_ms is None else max(self._head_ms, after)
            else:
                self._head_ms = oldest
            # A batch that reached the tip (millis_behind_latest 0) leaves nothing unseen
            # that arrived before it was fetched: when it was observed, or first paid for.
            fetched_ms = self._paying_since_ms if already_paid else None
            self._tip_ms = (fetched_ms or wall) if behind == 0 else None
            self._history.quiet_until(self._tip_ms)
            self._acquired_since_observe_ms = None
            self._paying_since_ms = None
            self._behind_ms = behind
            self._records += records
            self._active_at = now
            self._update(now)

    def record_throttle(self) -> None:
        """The replica throttled a write: lower the ceiling by `throttle_backoff`, at once.

        Reports within THROTTLE_DEBOUNCE_S of a backoff count as the same event.
        """
        with self._lock:
            now = self._clock()
            self._throttles += 1
            if now - self._backoff_at < THROTTLE_DEBOUNCE_S:
                return
            ceiling = self._ceiling_at(now)
            base = self._rate if ceiling is None else min(self._rate, ceiling)
            self._ceiling = max(THROTTLE_FLOOR_WCU, base * self.config.throttle_backoff)
            self._backoff_at = now
            self._refill(now)
            self._credit = min(self._credit, self._debit)  # no burst into a throttling table
            logger.info(
                "replica throttled: rate ceiling %.3g WCU/s (throttle %d)",
                self._ceiling,
                self._throttles,
            )
            self._update(now)

    def state(self) -> PacerState:
        """A snapshot for `lazyrep status`."""
        with self._lock:
            now = self._clock()
            self._update_if_due(now)
            ceiling = self._ceiling_at(now)
            assessment = self._assess(self._rate)
            deadline = self.config.deadline_s
            required = assessment.required_at_deadline_wcu
            limit = self.config.max_wcu
            verdict: Verdict = "ok"
            if required > limit:
                verdict = "records will expire"
            elif required > self.config.at_risk_fraction * limit or (
                ceiling is not None and required > ceiling
            ):
                verdict = "at risk"
            drain = assessment.backlog_wcu / self._rate
            return PacerState(
                rate_wcu=self._rate,
                average_arrival_wcu=self._history.average_wcu_s(),
                backlog_wcu_estimate=assessment.backlog_wcu,
                oldest_age_s=assessment.oldest_age_s,
                projected_drain_s=drain,
                deadline_s=deadline,
                margin_to_deadline_s=assessment.margin_s,
                margin_to_retention_s=assessment.margin_s + self.config.retention_s - deadline,
                throttled_recently=ceiling is not None,
                verdict=verdict,
                required_wcu=required,
                max_wcu=limit,
                ceiling_wcu=ceiling,
                throttles=self._throttles,
                spent_wcu=self._spent,
                records_observed=self._records,
            )

    @property
    def rate_wcu(self) -> float:
        """The current rate (WCU/s)."""
        with self._lock:
            return self._rate

    def suggested_chunk_wcu(self) -> float:
        """How much to pay for at once: the bucket's size (`burst_s` of the current rate).

        Chunks much larger than this reach the replica as bursts well above the rate.
        """
        with self._lock:
            return max(1.0, self._rate * self.config.burst_s)

    # -- inside the lock ---------------------------------------------------------------------

    def _note_arrival(self, wcu: float, arrival_ms: int) -> None:
        self._head_ms = arrival_ms
        if self._acquired_since_observe_ms is None:
            self._paying_since_ms = self._wall_ms()
        if self._acquired_since_observe_ms is None or arrival_ms > self._acquired_since_observe_ms:
            self._acquired_since_observe_ms = arrival_ms
        newest = self._history.newest_ms
        if newest is None or arrival_ms > newest:
            # Paid for before its batch was observed: counted until the batch is.
            self._history.add_provisional(wcu, arrival_ms)

    def _refill(self, now: float) -> None:
        elapsed = now - self._refilled_at
        if elapsed > 0:
            capacity = self._rate * self.config.burst_s
            self._credit = min(self._debit + capacity, self._credit + elapsed * self._rate)
            self._refilled_at = now
        if self._waiting == 0 and self._debit > _REBASE_WCU:
            # Nobody holds a reservation: rebase the totals before they lose precision.
            self._credit -= self._debit
            self._debit = 0.0

    def _update_if_due(self, now: float) -> None:
        if self._updated_at is None or now - self._updated_at >= self.config.update_interval_s:
            self._update(now)

    def _ceiling_at(self, now: float) -> float | None:
        """The throttle ceiling, recovered by one backoff step per throttle_recovery_s."""
        if self._ceiling is None:
            return None
        steps = (now - self._backoff_at) / self.config.throttle_recovery_s
        value = self._ceiling * math.pow(1.0 / self.config.throttle_backoff, min(steps, 1000.0))
        if value >= self.config.max_wcu:
            self._ceiling = None
            return None
        return value

    def _update(self, now: float) -> None:
        """Recompute the rate: max(min, average + headroom, deadline need), capped."""
        config = self.config
        assessment = self._assess(self._rate)
        steady = self._history.fallback_wcu_s() * (1.0 + config.headroom)
        rate = min(max(config.min_wcu, steady, assessment.required_wcu), config.max_wcu)
        ceiling = self._ceiling_at(now)
        if ceiling is not None:
            rate = min(rate, ceiling)
        self._refill(now)
        self._rate = max(rate, THROTTLE_FLOOR_WCU if ceiling is not None else config.min_wcu)
        self._credit = min(self._credit, self._debit + self._rate * config.burst_s)
        self._updated_at = now

    def _assess(self, rate: float) -> _Assessment:
        """Walk the backlog oldest first: its size, its oldest age, the rates it needs."""
        now_ms = self._wall_ms()
        newest = self._history.newest_ms
        start = self._head_ms if self._head_ms is not None else newest
        deadline = self.config.deadline_s
        if start is None:
            return _Assessment(0.0, 0.0, 0.0, 0.0, deadline)
        quiet_until = self._tip_ms
        idle = (
            self._waiting == 0
            and not self._behind_ms
            and self._clock() - self._active_at >= IDLE_GRACE_S
        )
        if idle:
            # Caught up and quiet: the KCL polls about once a second and found nothing.
            recent = now_ms - round(IDLE_GRACE_S * 1000)
            quiet_until = recent if quiet_until is None else max(quiet_until, recent)
        start = min(start, now_ms)
        target = deadline * (1.0 - self.config.deadline_slack)
        cumulative = 0.0
        oldest_age = 0.0
        required = required_at_deadline = 0.0
        margin = math.inf
        for segment_ms, wcu in self._history.segments(start, now_ms, quiet_until):
            if wcu <= 0:
                continue
            age = (now_ms - segment_ms) / 1000.0
            if cumulative == 0.0:
                oldest_age = age
            cumulative += wcu
            required = max(required, _need(cumulative, target - age))
            required_at_deadline = max(required_at_deadline, _need(cumulative, deadline - age))
            margin = min(margin, deadline - age - cumulative / rate)
        if cumulative == 0.0:
            margin = deadline
        return _Assessment(cumulative, oldest_age, required, required_at_deadline, margin)


def _need(wcu: float, seconds: float) -> float:
    return wcu / seconds if seconds > 0 else math.inf
