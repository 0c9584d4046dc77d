"""Running a replay: shards read in lineage order, records decoded, paced and applied.

Shards whose parents are done are read concurrently (`shard_workers`); each one's
records go through the shared idempotent applier chunk by chunk, in stream order,
each chunk paid for in WCU first when a rate is set. A chunk's records are all
applied (or counted as not applied) before the shard's position moves past them,
so the state file never points beyond a record that still needs applying.

What happens to each record:
- another table of the topology than the ones chosen: counted as filtered;
- a descendant's record whose key did not belong to the starting shard: filtered;
- undecodable, or for a table outside the topology: not applied, counted and listed
  with its position and reason. Not parked: the live consumers parked it in the
  dead-letter store when they first met it, and a replay must not write letters
  twice; the list in the summary and the state file is the operator's record;
- applied, skipped as stale (already applied: replaying is harmless), condition
  failed (the action's own condition was false: a no-op, as the first time), or
  not applied (a permanent DynamoDB error, e.g. a value the table refuses);
- a transient failure (throttling, 5xx) is retried with backoff, slowing the
  rate; if it lasts, the replay stops and prints how to resume.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from binlog.applier import Applier, ApplyResult, Outcome
from binlog.codec import decode
from binlog.deadletter import BAD_AGGREGATE, UNAUTHORIZED_TABLE
from binlog.envelope import Envelope
from binlog.errors import LazyRepError, Reason, RecordError
from binlog.reader import StreamRecord
from binlog.records import Position, SourcedRecord
from binlog.topology import KeySchema
from lambda_consumer.aggregation import AggregateError, UserRecord, deaggregate
from lazyrep.replay_plan import (
    ReplayPlan,
    ShardPlan,
    ShardStatus,
    blocked,
    hash_key,
    ready,
)
from lazyrep.replay_state import ReplayState
from lazyrep.replay_stream import EndReason, ShardReader

if TYPE_CHECKING:
    from types_boto3_kinesis import KinesisClient

    from kcl_consumer.pacer import Pacer

logger = logging.getLogger(__name__)

CHUNK_RECORDS = 100
"""Records applied at once: the applier runs one chunk's items concurrently."""
MAX_APPLY_ATTEMPTS = 8
"""A chunk's transiently failing records are tried this often (about 15 s) before stopping."""
SAMPLES_PER_TABLE = 3
MAX_LISTED = 50
"""Records not applied that the report lists (all are counted; the state file keeps more)."""

Status = Literal["finished", "interrupted", "failed"]

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
"""DynamoDB codes meaning the target is short of capacity: the rate comes down."""


class ReplayError(LazyRepError):
    """The replay cannot go on (exit 1): DynamoDB kept failing, or the stream is inconsistent."""


class StopRequested(Exception):  # noqa: N818 (a signal, not an error)
    """The replay is stopping: leave the current chunk without moving the position."""


@dataclass(slots=True)
class TableCounts:
    """One primary table's records in this run."""

    target: str
    applied: int = 0
    skipped_stale: int = 0
    condition_failed: int = 0
    not_applied: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records of this table read and chosen (dry run: what would be applied)."""
        return sum(self.actions.values())


@dataclass(slots=True)
class RunReport:
    """What a run did (this run only: a resumed replay counts from where it resumed)."""

    status: Status = "finished"
    records_read: int = 0
    user_records: int = 0
    filtered_tables: int = 0
    filtered_keys: int = 0
    undecodable: int = 0
    wcu: int = 0
    tables: dict[str, TableCounts] = field(default_factory=dict)
    not_applied: list[dict[str, Any]] = field(default_factory=list)
    shards: dict[str, str] = field(default_factory=dict)
    last_sequence: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    elapsed_s: float = 0.0

    @property
    def not_applied_total(self) -> int:
        """Undecodable records plus records DynamoDB refused."""
        return self.undecodable + sum(t.not_applied for t in self.tables.values())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Progress for a progress bar: counts, and how far through the time span the replay is.

    `low_water` is the arrival time every shard has been replayed up to (None before
    the first record); `begin`/`end` bound the span (None when unknown).
    """

    records_read: int
    applied: int
    skipped: int
    begin: datetime | None
    end: datetime | None
    low_water: datetime | None
    finished: bool = False


class ReplayRunner:
    """Runs one plan. `applier` None is a dry run: records are read, decoded and counted only."""

    def __init__(
        self,
        plan: ReplayPlan,
        *,
        kinesis: KinesisClient,
        schemas: Mapping[str, KeySchema],
        applier: Applier | None,
        write_units: Callable[[Envelope], int],
        pacer: Pacer | None = None,
        state: ReplayState | None = None,
        on_progress: Callable[[Snapshot], None] | None = None,
        shard_workers: int = 4,
        stop_after_records: int | None = None,
        chunk_records: int = CHUNK_RECORDS,
        max_attempts: int = MAX_APPLY_ATTEMPTS,
        backoff_s: float = 0.2,
        stop: threading.Event | None = None,
    ) -> None:
        if shard_workers < 1:
            raise ValueError("ReplayRunner.shard_workers must be at least 1")
        self.plan = plan
        self.stop = stop or threading.Event()
        self._kinesis = kinesis
        self._schemas = schemas
        self._applier = applier
        self._write_units = write_units
        self._pacer = pacer
        self._state = state
        self._on_progress = on_progress
        self._workers = shard_workers
        self._stop_after = stop_after_records
        self._chunk = chunk_records
        self._attempts = max_attempts
        self._backoff_s = backoff_s
        self._lock = threading.Lock()
        self._report = RunReport(
            tables={t.primary: TableCounts(t.target) for t in plan.tables},
        )
        self._position: dict[str, datetime] = {}
        self._active: set[str] = set()
        self._begin = plan.request.from_time
        self._progress_at = 0.0

    # -- the schedule ----------------------------------------------------------------------

    def run(self) -> RunReport:
        """Read every shard of the plan, parents first; stop on Ctrl-C, `stop`, or a failure.

        KeyboardInterrupt is caught: the shards being read finish their chunk, the
        state is saved, and the report says `interrupted`.
        """
        began = time.monotonic()
        finished: dict[str, ShardStatus] = dict(self.plan.done)
        pending = list(self.plan.shards)
        running: dict[Future[EndReason | None], ShardPlan] = {}
        pool = ThreadPoolExecutor(self._workers, thread_name_prefix="lazyrep-replay")
        interrupted = False
        try:
            while (pending or running) and not self.stop.is_set():
                self._start_ready(pool, pending, running, finished)
                if not running:
                    break
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    self._collect(future, running.pop(future), finished)
        except KeyboardInterrupt:
            interrupted = True
            self.stop.set()
        finally:
            self.stop.set()
            while running:
                try:
                    done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt:
                    interrupted = True
                    continue
                for future in done:
                    self._collect(future, running.pop(future), finished)
            pool.shutdown(wait=True)
        report = self._report
        for shard in self.plan.shards:
            finished.setdefault(shard.shard_id, ShardStatus.PENDING)
        report.shards = {k: v.value for k, v in finished.items()}
        if report.error is not None:
            report.status = "failed"
        elif interrupted or any(s is ShardStatus.PENDING for s in finished.values()):
            report.status = "interrupted"
        report.elapsed_s = time.monotonic() - began
        if self._state is not None:
            self._state.set_status(report.status)
        self._emit(force=True, finished=report.status == "finished")
        return report

    def _start_ready(
        self,
        pool: ThreadPoolExecutor,
        pending: list[ShardPlan],
        running: dict[Future[EndReason | None], ShardPlan],
        finished: dict[str, ShardStatus],
    ) -> None:
        for shard in list(pending):
            if blocked(shard, finished):
                # A parent stopped at the bound: every record of this shard lies beyond it.
                pending.remove(shard)
                finished[shard.shard_id] = ShardStatus.SKIPPED
                if self._state is not None:
                    self._state.finish_shard(shard.shard_id, ShardStatus.SKIPPED)
                continue
            if len(running) < self._workers and ready(shard, finished):
                pending.remove(shard)
                with self._lock:
                    self._active.add(shard.shard_id)
                running[pool.submit(self._read_shard, shard)] = shard

    def _collect(
        self,
        future: Future[EndReason | None],
        shard: ShardPlan,
        finished: dict[str, ShardStatus],
    ) -> None:
        with self._lock:
            self._active.discard(shard.shard_id)
        try:
            end = future.result()
        except BaseException as exc:
            logger.debug("shard %s failed", shard.shard_id, exc_info=True)
            if self._report.error is None:
                self._report.error = exc
            self.stop.set()
            return
        if end is None:
            return  # stopped part-way: its position is in the state
        status = ShardStatus.CUT if end is EndReason.CUT else ShardStatus.ENDED
        finished[shard.shard_id] = status
        if self._state is not None:
            self._state.finish_shard(shard.shard_id, status)

    # -- one shard -------------------------------------------------------------------------

    def _read_shard(self, shard: ShardPlan) -> EndReason | None:
        reader = ShardReader(
            self._kinesis,
            self.plan.stream,
            shard,
            stop_time=self.plan.stop_time,
            wait=self.stop.wait,
        )
        try:
            for page in reader.pages():
                for begin in range(0, len(page.records), self._chunk):
                    if self.stop.is_set():
                        return None
                    chunk = page.records[begin : begin + self._chunk]
                    self._process(shard, chunk)
                    self._advance(shard, chunk)
                if page.end is not None:
                    return page.end
                if self.stop.is_set():
                    return None
        except StopRequested:
            return None
        return None

    def _advance(self, shard: ShardPlan, chunk: Sequence[StreamRecord]) -> None:
        last = chunk[-1]
        with self._lock:
            self._report.records_read += len(chunk)
            self._report.last_sequence[shard.shard_id] = last.sequence_number
            self._position[shard.shard_id] = last.arrival
            first = chunk[0].arrival
            self._begin = first if self._begin is None else min(self._begin, first)
            reached = self._stop_after is not None and self._report.records_read >= self._stop_after
        if self._state is not None:
            self._state.advance(shard.shard_id, last.sequence_number, len(chunk))
        if reached:
            logger.info("stopping after %s records (--stop-after)", self._stop_after)
            self.stop.set()
        self._emit()

    def _process(self, shard: ShardPlan, chunk: Sequence[StreamRecord]) -> None:
        """Decode, filter and apply one chunk; raise StopRequested if the replay stops meanwhile."""
        sourced: list[SourcedRecord] = []
        local = RunReport()
        for record in chunk:
            for user in self._user_records(record, local):
                local.user_records += 1
                if shard.hash_range is not None:
                    low, high = shard.hash_range
                    if not low <= hash_key(user.partition_key) <= high:
                        local.filtered_keys += 1
                        continue
                try:
                    envelope = decode(user.data, self._schemas)
                except RecordError as exc:
                    reason = (
                        UNAUTHORIZED_TABLE
                        if exc.reason is Reason.UNKNOWN_TABLE
                        else exc.reason.value
                    )
                    local.undecodable += 1
                    local.not_applied.append(
                        _entry(record, user.subsequence_number, None, reason, exc.detail)
                    )
                    continue
                if envelope.table not in self._report.tables:
                    local.filtered_tables += 1
                    continue
                position = Position(
                    record.shard_id, record.sequence_number, user.subsequence_number
                )
                arrival_ms = int(record.arrival.timestamp() * 1000)
                sourced.append(SourcedRecord(envelope, position, arrival_ms))
        results = self._apply(sourced) if self._applier is not None else None
        self._merge(local, sourced, results)

    def _user_records(self, record: StreamRecord, local: RunReport) -> list[UserRecord]:
        try:
            users = deaggregate(record.data)
        except AggregateError as exc:
            local.undecodable += 1
            local.not_applied.append(_entry(record, 0, None, BAD_AGGREGATE, str(exc)))
            return []
        return users if users is not None else [UserRecord(record.partition_key, record.data, 0)]

    def _apply(self, sourced: list[SourcedRecord]) -> list[ApplyResult]:
        """Apply in stream order; retry transient failures with backoff, slowing the pacer."""
        assert self._applier is not None
        if not sourced:
            return []
        wcu = sum(self._write_units(r.envelope) for r in sourced)
        if self._pacer is not None:
            self._pacer.acquire(wcu)
        with self._lock:
            self._report.wcu += wcu
        final: list[ApplyResult | None] = [None] * len(sourced)
        todo = list(range(len(sourced)))
        failure = ApplyResult(Outcome.RETRY)
        for attempt in range(self._attempts):
            results = self._applier.apply_batch([sourced[i] for i in todo])
            again: list[int] = []
            throttled = False
            for index, result in zip(todo, results, strict=True):
                if result.outcome in (Outcome.RETRY, Outcome.NOT_ATTEMPTED):
                    again.append(index)
                    if result.outcome is Outcome.RETRY:
                        failure = result
                        throttled = throttled or result.code in THROTTLING_CODES
                else:
                    final[index] = result
            if not again:
                return [r for r in final if r is not None]
            todo = again
            if throttled and self._pacer is not None:
                self._pacer.record_throttle()
            logger.warning(
                "%d records not applied yet (%s %s), attempt %d of %d",
                len(todo),
                failure.code,
                failure.message,
                attempt + 1,
                self._attempts,
            )
            if attempt + 1 < self._attempts and self.stop.wait(
                min(5.0, self._backoff_s * 2**attempt)
            ):
                raise StopRequested
        first = sourced[todo[0]].position
        raise ReplayError(
            f"DynamoDB kept failing for {len(todo)} records of {first.shard_id} from sequence "
            f"{first.sequence_number} after {self._attempts} attempts: {failure.code}: "
            f"{failure.message}"
        )

    def _merge(
        self, local: RunReport, sourced: list[SourcedRecord], results: list[ApplyResult] | None
    ) -> None:
        """Add a chunk's counts to the report (`results` None: a dry run applied nothing)."""
        with self._lock:
            report = self._report
            report.user_records += local.user_records
            report.filtered_keys += local.filtered_keys
            report.filtered_tables += local.filtered_tables
            report.undecodable += local.undecodable
            listed = local.not_applied
            for record in sourced:
                counts = report.tables[record.envelope.table]
                counts.actions[record.envelope.action.value] += 1
                if len(counts.samples) < SAMPLES_PER_TABLE:
                    counts.samples.append(describe_action(record))
            for record, result in zip(sourced, results or (), strict=results is not None):
                counts = report.tables[record.envelope.table]
                if result.outcome is Outcome.APPLIED:
                    counts.applied += 1
                elif result.outcome is Outcome.STALE:
                    counts.skipped_stale += 1
                elif result.outcome is Outcome.CONDITION_FAILED:
                    counts.condition_failed += 1
                else:  # PARKED: a permanent error
                    counts.not_applied += 1
                    p = record.position
                    listed.append(
                        {
                            "shard_id": p.shard_id,
                            "sequence_number": p.sequence_number,
                            "subsequence_number": p.subsequence_number,
                            "table": record.envelope.table,
                            "reason": result.code or "permanent_error",
                            "detail": result.message[:300],
                        }
                    )
            room = MAX_LISTED - len(report.not_applied)
            report.not_applied += listed[: max(0, room)]
        if listed:
            for entry in listed:
                logger.warning("not applied: %s", entry)
            if self._state is not None:
                self._state.note_not_applied(listed)

    # -- progress --------------------------------------------------------------------------

    def _emit(self, *, force: bool = False, finished: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._progress_at < 0.1:
                return
            self._progress_at = now
            report = self._report
            applied = sum(t.applied for t in report.tables.values())
            skipped = sum(t.skipped_stale for t in report.tables.values())
            marks = [self._position[s] for s in self._active if s in self._position]
            low = min(marks) if marks else max(self._position.values(), default=None)
            snapshot = Snapshot(
                report.records_read,
                applied,
                skipped,
                self._begin,
                self.plan.stop_time,
                low,
                finished,
            )
        self._on_progress(snapshot)


def _entry(
    record: StreamRecord, subsequence: int, table: str | None, reason: str, detail: str
) -> dict[str, Any]:
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "subsequence_number": subsequence,
        "table": table,
        "reason": reason,
        "detail": detail[:300],
    }


def describe_action(record: SourcedRecord) -> str:
    """One line for a sample: `shardId-.../SEQ PutItem users {user_id=u1} (5 attributes)`."""
    envelope = record.envelope
    key = ", ".join(f"{name}={_scalar(value)}" for name, value in envelope.key.items())
    text = (
        f"{record.position.shard_id}/{record.position.sequence_number} "
        f"{envelope.action.value} {envelope.table} {{{key}}}"
    )
    if envelope.item is not None:
        text += f" ({len(envelope.item)} attributes)"
    if envelope.update:
        text += f" {envelope.update}"
    if envelope.condition:
        text += f" IF {envelope.condition}"
    return text


def _scalar(value: Mapping[str, Any]) -> str:
    ((kind, inner),) = value.items()
    if kind == "B":
        raw = inner if isinstance(inner, bytes | bytearray) else str(inner).encode()
        return "0x" + bytes(raw).hex()[:32]
    return str(inner)
