"""Counters of the local mapping, and the frozen snapshots `EventSourceMapping.stats()` returns.

Named after Lambda's CloudWatch metrics where one exists: invocations, IteratorAge
(milliseconds from the last record's arrival to the end of its batch), and the
GetRecords `MillisBehindLatest` for the shard's read position.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ShardState = Literal["waiting", "running", "ended", "stopped"]


@dataclass(frozen=True, slots=True)
class ShardStats:
    shard_id: str
    state: ShardState
    checkpoint: str | None
    invocations: int
    records_delivered: int
    iterator_age_ms: int | None
    """Last record's age when its batch finished; 0 once the shard is at the tip."""
    millis_behind_latest: int | None


@dataclass(frozen=True, slots=True)
class EsmStats:
    invocations: int = 0
    records_delivered: int = 0
    """Records passed to the handler, counting each redelivery."""
    retries: int = 0
    bisections: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    on_failure_messages: int = 0
    on_failure_records: int = 0
    discarded_records: int = 0
    """Given up on with no on-failure destination configured (lost, as on AWS)."""
    poller_errors: int = 0
    """Kinesis/SQS calls that failed and were retried."""
    last_error: str | None = None
    shards: tuple[ShardStats, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_COUNTERS = (
    "invocations",
    "records_delivered",
    "retries",
    "bisections",
    "function_errors",
    "partial_failures",
    "on_failure_messages",
    "on_failure_records",
    "discarded_records",
    "poller_errors",
)


@dataclass(slots=True)
class _Shard:
    state: ShardState = "waiting"
    invocations: int = 0
    records_delivered: int = 0
    iterator_age_ms: int | None = None
    millis_behind_latest: int | None = None


@dataclass
class StatsRecorder:
    """Thread-safe counters; every shard poller writes, `snapshot` reads."""

    _counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    _shards: dict[str, _Shard] = field(default_factory=dict)
    _last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[counter] += n

    def invoked(self, shard_id: str, records: int) -> None:
        with self._lock:
            self._counts["invocations"] += 1
            self._counts["records_delivered"] += records
            shard = self._shards.setdefault(shard_id, _Shard())
            shard.invocations += 1
            shard.records_delivered += records

    def shard_state(self, shard_id: str, state: ShardState) -> None:
        with self._lock:
            self._shards.setdefault(shard_id, _Shard()).state = state

    def lag(
        self, shard_id: str, *, iterator_age_ms: int | None = None, millis_behind: int | None = None
    ) -> None:
        with self._lock:
            shard = self._shards.setdefault(shard_id, _Shard())
            if iterator_age_ms is not None:
                shard.iterator_age_ms = iterator_age_ms
            if millis_behind is not None:
                shard.millis_behind_latest = millis_behind

    def error(self, message: str) -> None:
        with self._lock:
            self._counts["poller_errors"] += 1
            self._last_error = message

    def snapshot(self, checkpoints: dict[str, str | None]) -> EsmStats:
        with self._lock:
            shards = tuple(
                ShardStats(
                    shard_id,
                    s.state,
                    checkpoints.get(shard_id),
                    s.invocations,
                    s.records_delivered,
                    s.iterator_age_ms,
                    s.millis_behind_latest,
                )
                for shard_id, s in sorted(self._shards.items())
            )
            return EsmStats(**self._counts, last_error=self._last_error, shards=shards)
