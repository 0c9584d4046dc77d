"""One batch's life as Lambda's Kinesis mapping runs it: invoke, resume, bisect, retry, give up.

The rules live here, I/O-free: the shard poller passes `BatchPorts` that invoke the
handler, checkpoint, send on-failure records and sleep. What AWS documents and this
follows (see docs/ESM.md for sources and the choices made where AWS is silent):

- Success checkpoints the batch's last record.
- A partial batch response (ReportBatchItemFailures) checkpoints the records before the
  reported one and retries from it to the batch's end; that counts as a retry.
- A function error (or an unusable response) with BisectBatchOnFunctionError and more
  than one record splits the batch into halves, run in order; splitting does not use
  the retry quota, and each half starts with a fresh count.
- Otherwise the same records are retried after a backoff, up to MaximumRetryAttempts
  (-1: forever); then they go to the on-failure destination and the shard moves on.
- Before every invocation, records older than MaximumRecordAgeInSeconds go to the
  on-failure destination (RecordAgeExceeded) without being invoked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from emulators.esm_events import Condition, Outcome, OutcomeKind, StreamRecord
from emulators.esm_plan import bisect, split_expired


class Invocation(NamedTuple):
    """One handler call's result: the outcome and its request id (for on-failure records)."""

    outcome: Outcome
    request_id: str


class BatchPorts(Protocol):
    """What the runner needs from the world; the shard poller implements it."""

    def invoke(self, records: Sequence[StreamRecord], invoke_count: int) -> Invocation: ...

    def checkpoint(self, last: StreamRecord) -> None: ...

    def send_on_failure(
        self,
        records: Sequence[StreamRecord],
        condition: Condition,
        invoke_count: int,
        last: Invocation | None,
    ) -> bool:
        """Deliver (or, with no destination, discard) the records; False if stopping first."""
        ...

    def retrying(self, records: Sequence[StreamRecord], retry: int, outcome: Outcome) -> bool:
        """Note a retry and pause before it; False if the mapping is stopping."""
        ...

    def bisected(self, halves: tuple[Sequence[StreamRecord], Sequence[StreamRecord]]) -> None: ...

    def now_s(self) -> float: ...


class RetryPolicy(NamedTuple):
    """The three settings that decide a failed batch's fate."""

    maximum_retry_attempts: int
    bisect_batch_on_function_error: bool
    maximum_record_age_in_seconds: int


def run_batch(records: Sequence[StreamRecord], policy: RetryPolicy, ports: BatchPorts) -> bool:
    """Run one batch to its end: every record checkpointed, either processed or sent on.

    Returns False if the mapping stopped first; the checkpoint then marks how far it
    got, and the rest is delivered again after a restart (at least once).
    """
    pending: deque[list[StreamRecord]] = deque([list(records)])
    while pending:
        if not _run_part(pending, policy, ports):
            return False
    return True


def _run_part(pending: deque[list[StreamRecord]], policy: RetryPolicy, ports: BatchPorts) -> bool:
    part = pending.popleft()
    invokes = 0
    retries = 0
    last: Invocation | None = None
    while True:
        expired, part = split_expired(part, ports.now_s(), policy.maximum_record_age_in_seconds)
        if expired:
            if not ports.send_on_failure(expired, Condition.RECORD_AGE_EXCEEDED, invokes, last):
                return False
            ports.checkpoint(expired[-1])
        if not part:
            return True
        invokes += 1
        last = ports.invoke(part, invokes)
        outcome = last.outcome
        if outcome.kind is OutcomeKind.SUCCESS:
            ports.checkpoint(part[-1])
            return True
        if outcome.kind is OutcomeKind.PARTIAL:
            index = outcome.failed_index or 0
            if index > 0:
                ports.checkpoint(part[index - 1])
                part = part[index:]
        elif policy.bisect_batch_on_function_error and len(part) > 1:
            halves = bisect(part)
            ports.bisected(halves)
            pending.extendleft(reversed(halves))
            return True
        if 0 <= policy.maximum_retry_attempts <= retries:
            if not ports.send_on_failure(part, Condition.RETRY_ATTEMPTS_EXHAUSTED, invokes, last):
                return False
            ports.checkpoint(part[-1])
            return True
        retries += 1
        if not ports.retrying(part, retries, outcome):
            return False
