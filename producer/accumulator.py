"""The producer's I/O-free core: per-item queues, batch selection, retry bookkeeping.

Kinesis does not promise the order of records within one PutRecords call, and a
partial failure can fail an earlier record while a later one succeeds. So one
item never has more than one record in flight: the next record of an item is
sent only once the previous one is acknowledged or has failed for good. The
sync and async producers wrap this class with their own locking and sending.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from binlog.awserrors import Failure, classify, is_retriable_code
from producer.actions import OutgoingRecord
from producer.config import ProducerConfig
from producer.results import ActionResult, FailedAction

H = TypeVar("H")


@dataclass(slots=True, eq=False)
class Pending(Generic[H]):
    """A record waiting for (or in) a PutRecords call; `handle` reaches the caller."""

    record: OutgoingRecord
    handle: H
    enqueued: float
    attempts: int = 0
    not_before: float = 0.0


class Resolved(NamedTuple, Generic[H]):
    """A record whose fate is settled: a result or a failure for its caller."""

    handle: H
    result: ActionResult | None
    failure: FailedAction | None


Outcome = tuple[str, str] | Failure
"""Per record: (shard id, sequence number) on success, else the failure."""


def outcomes_from_response(records: Sequence[dict[str, str]]) -> list[Outcome]:
    """Read PutRecords' per-record results (the response keeps the request's order)."""
    outcomes: list[Outcome] = []
    for entry in records:
        code = entry.get("ErrorCode")
        if code:
            outcomes.append(classify_record_error(code, entry.get("ErrorMessage", "")))
        else:
            outcomes.append((entry["ShardId"], entry["SequenceNumber"]))
    return outcomes


def classify_record_error(code: str, message: str) -> Failure:
    """PutRecords' per-record codes: throttling and internal failures are transient."""
    return Failure(code, message, is_retriable_code(code))


def outcomes_from_exception(exc: BaseException, count: int) -> list[Outcome]:
    """A whole call failed: every record in it shares the failure."""
    failure = classify(exc)
    return [failure] * count


class Accumulator(Generic[H]):
    """Orders, batches and re-queues records; never touches the network.

    Not thread-safe: the sync producer holds a lock around it, the async one
    runs it on one event loop.
    """

    def __init__(
        self,
        config: ProducerConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._linger_s = config.linger_ms / 1000
        self._rng = rng or random.Random()
        self._queues: dict[str, deque[Pending[H]]] = {}
        self._ready: OrderedDict[str, None] = OrderedDict()
        self._ready_bytes = 0
        self._delayed: list[tuple[float, int, str]] = []
        self._delay_seq = 0
        self._in_flight: set[str] = set()
        self.buffered = 0

    def add(self, pending: Pending[H]) -> bool:
        """Queue a record behind every earlier record of its item.

        Returns True when a sender should look now: the first ready record (its
        linger clock starts) or a full batch. Otherwise senders already have a timer.
        """
        key = pending.record.partition_key
        queue = self._queues.get(key)
        self.buffered += 1
        if queue is not None:
            queue.append(pending)
            return False
        self._queues[key] = deque((pending,))
        self._ready[key] = None
        self._ready_bytes += pending.record.size
        return len(self._ready) == 1 or self._full()

    @property
    def has_full_batch(self) -> bool:
        """A whole batch is ready: worth waking another sender."""
        return self._full()

    def next_batch(self, now: float, *, flushing: bool) -> list[Pending[H]] | None:
        """The next PutRecords batch, or None if the linger time says wait.

        A batch holds at most one record per item, oldest items first, within
        the record and byte limits.
        """
        self._promote(now)
        if not self._ready:
            return None
        if not flushing and not self._full():
            first = self._queues[next(iter(self._ready))][0]
            if first.enqueued + self._linger_s > now:
                return None
        batch: list[Pending[H]] = []
        size = 0
        for key in list(self._ready):
            head = self._queues[key][0]
            if len(batch) >= self._config.max_batch_records or (
                size + head.record.size > self._config.max_batch_bytes
            ):
                break
            batch.append(head)
            size += head.record.size
            head.attempts += 1
            del self._ready[key]
            self._in_flight.add(key)
        self._ready_bytes -= size
        return batch

    def wait_s(self, now: float, *, flushing: bool) -> float | None:
        """Seconds until `next_batch` may return a batch; None means until `add`."""
        waits: list[float] = []
        if self._ready:
            if flushing or self._full():
                return 0.0
            first = self._queues[next(iter(self._ready))][0]
            waits.append(first.enqueued + self._linger_s - now)
        if self._delayed:
            waits.append(self._delayed[0][0] - now)
        return max(0.0, min(waits)) if waits else None

    def complete(
        self, batch: Sequence[Pending[H]], outcomes: Sequence[Outcome], now: float
    ) -> list[Resolved[H]]:
        """Settle a sent batch: results out, retriable failures back to their item's head."""
        resolved: list[Resolved[H]] = []
        for pending, outcome in zip(batch, outcomes, strict=True):
            key = pending.record.partition_key
            self._in_flight.discard(key)
            queue = self._queues[key]
            record = pending.record
            if isinstance(outcome, Failure):
                if outcome.retriable and pending.attempts < self._config.max_attempts:
                    pending.not_before = now + self._backoff_s(pending.attempts)
                    self._delay_seq += 1
                    heapq.heappush(self._delayed, (pending.not_before, self._delay_seq, key))
                    continue
                failed = FailedAction(
                    record.envelope_id,
                    record.action,
                    record.table,
                    record.key,
                    outcome.code,
                    outcome.message,
                    pending.attempts,
                )
                resolved.append(Resolved(pending.handle, None, failed))
            else:
                shard_id, sequence = outcome
                result = ActionResult(
                    record.envelope_id, record.action, record.table, shard_id, sequence
                )
                resolved.append(Resolved(pending.handle, result, None))
            queue.popleft()
            self.buffered -= 1
            if queue:
                self._ready[key] = None
                self._ready_bytes += queue[0].record.size
            else:
                del self._queues[key]
        return resolved

    def fail_all(self, make_failure: Callable[[Pending[H]], FailedAction]) -> list[Resolved[H]]:
        """Give up on everything not in flight (the producer is closing without its stream)."""
        resolved: list[Resolved[H]] = []
        for key in list(self._queues):
            if key in self._in_flight:
                continue
            for pending in self._queues.pop(key):
                resolved.append(Resolved(pending.handle, None, make_failure(pending)))
                self.buffered -= 1
        self._ready.clear()
        self._ready_bytes = 0
        self._delayed.clear()
        return resolved

    def _full(self) -> bool:
        return (
            len(self._ready) >= self._config.max_batch_records
            or self._ready_bytes >= self._config.max_batch_bytes
        )

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            self._ready[key] = None
            self._ready_bytes += self._queues[key][0].record.size

    def _backoff_s(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: at least half the cap, spread above it."""
        cap = min(self._config.backoff_max_ms, self._config.backoff_base_ms * 2 ** (attempts - 1))
        return self._rng.uniform(cap / 2, cap) / 1000
