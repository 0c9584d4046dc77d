"""One shard's poller: read, batch, invoke, checkpoint, one invocation at a time.

Lambda runs one batch per shard at a time (ParallelizationFactor 1, the only one
emulated), so records of a shard reach the handler in order and never concurrently.
The poller runs in its own thread; `EventSourceMapping` starts it once the shard's
parents are fully processed and stops it through the shared `stop` event.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from emulators.esm_aws import KinesisSource, ShardCursor, SqsDestination
from emulators.esm_batch import Invocation, RetryPolicy, run_batch
from emulators.esm_errors import EsmIOError
from emulators.esm_events import (
    Condition,
    FunctionIdentity,
    Handler,
    LambdaContext,
    Outcome,
    OutcomeKind,
    StreamRecord,
    build_event,
    interpret_response,
    on_failure_record,
)
from emulators.esm_plan import batch_is_due, take_batch
from emulators.esm_settings import EsmSettings
from emulators.esm_state import CheckpointStore
from emulators.esm_stats import StatsRecorder

logger = logging.getLogger(__name__)

GET_RECORDS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class PollerDeps:
    """What every shard poller of one mapping shares."""

    settings: EsmSettings
    handler: Handler
    source: KinesisSource
    store: CheckpointStore
    who: FunctionIdentity
    destination: SqsDestination | None
    stats: StatsRecorder
    stop: threading.Event
    clock: Callable[[], float]
    invoke_slots: threading.Semaphore | None = None


class ShardPoller:
    """Reads one shard and drives its batches through `run_batch` (it is their `BatchPorts`)."""

    def __init__(
        self,
        shard_id: str,
        deps: PollerDeps,
        *,
        on_end: Callable[[str], None],
        pinned_iterator: str | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.deps = deps
        self._on_end = on_end
        self._pinned_iterator = pinned_iterator
        self._lock = threading.Lock()
        self._busy = False
        self._buffered = 0
        self._tip_poll_started = -math.inf
        self.ended = False
        self._policy = RetryPolicy(
            deps.settings.maximum_retry_attempts,
            deps.settings.bisect_batch_on_function_error,
            deps.settings.maximum_record_age_in_seconds,
        )
        self.thread = threading.Thread(target=self._run, name=f"esm-{shard_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def idle_since(self, t0: float) -> bool:
        """Nothing buffered or in flight, and a poll started after `t0` found the tip."""
        with self._lock:
            return self.ended or (
                not self._busy and self._buffered == 0 and self._tip_poll_started >= t0
            )

    def _run(self) -> None:
        deps = self.deps
        deps.stats.shard_state(self.shard_id, "running")
        failures = 0
        while not deps.stop.is_set():
            try:
                self._consume()
            except Exception as exc:
                # A bug or an unexpected reply: start over from the checkpoint, which
                # redelivers at most what was not checkpointed (at least once, as Lambda).
                failures += 1
                deps.stats.error(f"{self.shard_id}: {type(exc).__name__}: {exc}")
                logger.exception(
                    "shard poller failed; restarting from its checkpoint",
                    extra={"shard_id": self.shard_id, "failures": failures},
                )
                with self._lock:
                    self._busy, self._buffered = False, 0
                deps.stop.wait(deps.settings.backoff_s(failures))
            else:
                break
        if not self.ended:
            deps.stats.shard_state(self.shard_id, "stopped")

    def _consume(self) -> None:
        deps, settings = self.deps, self.deps.settings
        cursor = ShardCursor(
            self.shard_id, deps.store.resume_position(self.shard_id), self._pinned_iterator
        )
        self._pinned_iterator = None  # valid for five minutes and one use only
        logger.info(
            "shard poller started at %s", cursor.start.type, extra={"shard_id": self.shard_id}
        )
        buffer: list[StreamRecord] = []
        first_buffered = 0.0
        exhausted = False
        io_failures = 0
        while not deps.stop.is_set():
            got = 0
            at_tip = False
            poll_started = time.monotonic()
            if not exhausted and len(buffer) < settings.batch_size:
                try:
                    page = deps.source.read(
                        cursor, min(GET_RECORDS_MAX, settings.batch_size - len(buffer))
                    )
                except EsmIOError as exc:
                    io_failures += 1
                    deps.stats.error(str(exc))
                    logger.warning("%s; backing off", exc, extra={"shard_id": self.shard_id})
                    deps.stop.wait(settings.backoff_s(io_failures))
                    continue
                io_failures = 0
                got = len(page.records)
                if got and not buffer:
                    first_buffered = time.monotonic()
                buffer += page.records
                exhausted = page.shard_ended
                at_tip = not got and page.millis_behind_latest == 0
                deps.stats.lag(self.shard_id, millis_behind=page.millis_behind_latest)
            with self._lock:
                self._buffered = len(buffer)
            due = batch_is_due(
                buffered=len(buffer),
                batch_size=settings.batch_size,
                window_s=settings.maximum_batching_window_in_seconds,
                waited_s=time.monotonic() - first_buffered,
                shard_exhausted=exhausted,
            )
            if due:
                batch, buffer = take_batch(buffer, settings.batch_size)
                if not self._run_batch(batch, len(buffer)):
                    return
                first_buffered = time.monotonic()
                continue
            if exhausted and not buffer:
                self._end()
                return
            if at_tip and not buffer:
                deps.stats.lag(self.shard_id, iterator_age_ms=0)
                with self._lock:
                    self._tip_poll_started = poll_started
            if got == 0:
                pause = settings.poll_interval_s
                if buffer:
                    waited = time.monotonic() - first_buffered
                    pause = min(pause, settings.maximum_batching_window_in_seconds - waited)
                deps.stop.wait(max(0.0, pause))

    def _run_batch(self, batch: list[StreamRecord], left: int) -> bool:
        with self._lock:
            self._busy, self._buffered = True, left
        try:
            return run_batch(batch, self._policy, self)
        finally:
            with self._lock:
                self._busy = False

    def _end(self) -> None:
        self.deps.store.mark_ended(self.shard_id)
        self.deps.stats.shard_state(self.shard_id, "ended")
        with self._lock:
            self.ended = True
        logger.info("shard fully processed", extra={"shard_id": self.shard_id})
        self._on_end(self.shard_id)

    # BatchPorts -----------------------------------------------------------------------

    def invoke(self, records: Sequence[StreamRecord], invoke_count: int) -> Invocation:
        deps, settings = self.deps, self.deps.settings
        context = LambdaContext(
            function_name=settings.function_name,
            invoked_function_arn=deps.who.function_arn,
            memory_limit_in_mb=settings.function_memory_mb,
            timeout_s=settings.function_timeout_s,
        )
        event: dict[str, Any] = dict(build_event(records, self.shard_id, deps.who))
        deps.stats.invoked(self.shard_id, len(records))
        log_extra = {
            "shard_id": self.shard_id,
            "request_id": context.aws_request_id,
            "records": len(records),
            "first_sequence_number": records[0].sequence_number,
            "invoke_count": invoke_count,
        }
        logger.debug("invoking %s", settings.function_name, extra=log_extra)
        slots = deps.invoke_slots
        if slots is not None:
            slots.acquire()
        started = time.monotonic()
        try:
            response = deps.handler(event, context)
        except (Exception, SystemExit) as exc:
            outcome = Outcome.error(f"{type(exc).__name__}: {exc}")
            logger.warning("handler raised %s", outcome.detail, extra=log_extra, exc_info=True)
        else:
            outcome = interpret_response(
                response, records, report_batch_item_failures=settings.report_batch_item_failures
            )
            elapsed = time.monotonic() - started
            if elapsed > settings.function_timeout_s:
                outcome = Outcome.error(f"Task timed out after {elapsed:.2f} seconds")
        finally:
            if slots is not None:
                slots.release()
        if outcome.kind is OutcomeKind.FAILED:
            deps.stats.add("function_errors")
            if outcome.function_error is None:
                logger.warning("batch failed: %s", outcome.detail, extra=log_extra)
        elif outcome.kind is OutcomeKind.PARTIAL:
            deps.stats.add("partial_failures")
            logger.info("partial batch failure: %s", outcome.detail, extra=log_extra)
        return Invocation(outcome, context.aws_request_id)

    def checkpoint(self, last: StreamRecord) -> None:
        self.deps.store.checkpoint(self.shard_id, last.sequence_number)
        age_ms = max(0, int((self.deps.clock() - last.arrival_s) * 1000))
        self.deps.stats.lag(self.shard_id, iterator_age_ms=age_ms)

    def send_on_failure(
        self,
        records: Sequence[StreamRecord],
        condition: Condition,
        invoke_count: int,
        last: Invocation | None,
    ) -> bool:
        deps = self.deps
        log_extra = {
            "shard_id": self.shard_id,
            "condition": condition.value,
            "start_sequence_number": records[0].sequence_number,
            "end_sequence_number": records[-1].sequence_number,
            "records": len(records),
        }
        if deps.destination is None:
            deps.stats.add("discarded_records", len(records))
            logger.error(
                "%s and no on-failure destination: records discarded", condition, extra=log_extra
            )
            return True
        body = on_failure_record(
            records,
            shard_id=self.shard_id,
            who=deps.who,
            condition=condition,
            invoke_count=invoke_count,
            last=None if last is None else last.outcome,
            request_id=str(uuid.uuid4()) if last is None else last.request_id,
            now_s=deps.clock(),
        )
        attempt = 0
        while True:
            try:
                deps.destination.send(body)
            except EsmIOError as exc:
                # Never drop: the shard waits until the destination takes the record.
                attempt += 1
                deps.stats.error(str(exc))
                logger.warning("on-failure send failed: %s", exc, extra=log_extra)
                if deps.stop.wait(deps.settings.backoff_s(attempt)):
                    return False
                continue
            deps.stats.add("on_failure_messages")
            deps.stats.add("on_failure_records", len(records))
            logger.warning("%s: sent to the on-failure destination", condition, extra=log_extra)
            return True

    def retrying(self, records: Sequence[StreamRecord], retry: int, outcome: Outcome) -> bool:
        self.deps.stats.add("retries")
        logger.info(
            "retry %d of %d records (%s)",
            retry,
            len(records),
            outcome.kind.value,
            extra={"shard_id": self.shard_id, "first_sequence_number": records[0].sequence_number},
        )
        return not self.deps.stop.wait(self.deps.settings.backoff_s(retry))

    def bisected(self, halves: tuple[Sequence[StreamRecord], Sequence[StreamRecord]]) -> None:
        self.deps.stats.add("bisections")
        logger.info(
            "bisecting a failed batch into %d + %d records",
            len(halves[0]),
            len(halves[1]),
            extra={"shard_id": self.shard_id},
        )

    def now_s(self) -> float:
        return self.deps.clock()
