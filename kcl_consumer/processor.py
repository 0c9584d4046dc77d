"""The replica record processor: one shard of the binlog, applied lazily to a replica target.

The MultiLangDaemon runs one child process per shard lease and drives it through
amazon_kclpy's v3 interface (the five hooks of `RecordProcessor`). This processor:
- decodes each record (undecodable records, and records for tables outside the
  topology, are parked in the dead-letter store with their reason and position);
- tells the pacer about each batch as it arrives (cost, arrival times, backlog), then
  applies it with the shared idempotent applier chunk by chunk, each chunk paid for
  in write capacity from the pacer before it is written;
- retries what did not apply (RETRY outcomes, failed parks) in-process with backoff,
  telling the pacer about throttling;
- checkpoints only what is applied: at the end of a batch, now and then inside a long
  paced batch, never past a record that is not applied or parked.

kclpy's KCLProcess logs an exception raised by a hook and reports the action done, so
the daemon would hand over the next batch and a later checkpoint would skip the
failed one. A batch that cannot be finished (retries exhausted, or any unexpected
error) therefore ends the child process instead (`SystemExit`, which KCLProcess lets
through): the daemon exits with it, the supervisor (ECS, `lazyrep replica run`)
starts it again, and the shard resumes from its last checkpoint. Everything
applied since then is applied again as a no-op (the applier is idempotent).

No AWS client is created here: the worker (kcl_consumer/worker.py) wires the real
ones; tests drive this class through KCLProcess with scripted JSON lines.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from amazon_kclpy.checkpoint_error import CheckpointError

from binlog.applier import ApplyResult, Outcome
from binlog.awserrors import Failure, classify
from binlog.codec import decode
from binlog.deadletter import UNAUTHORIZED_TABLE, DeadLetter, DeadLetterStore
from binlog.envelope import Envelope
from binlog.errors import Reason, RecordError
from binlog.records import Position, SourcedRecord
from binlog.topology import KeySchema
from binlog.version import LineageError, check_lineage
from kcl_consumer.status import ProgressReporter, ShardProgress, ShardState

logger = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 3
"""Child exit code: a batch could not be applied or parked within the in-process retries."""
EXIT_PROCESSOR_ERROR = 4
"""Child exit code: a hook raised something unexpected (a bug, a misconfiguration)."""

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
    }
)
"""DynamoDB codes that mean the replica is short of capacity: the pacer slows down."""

RETRIABLE_CHECKPOINT_ERRORS = frozenset(
    {"ThrottlingException", "KinesisClientLibDependencyException"}
)
"""The lease table is busy or briefly unreachable: the same checkpoint is tried again."""
STOP_CHECKPOINT_ERRORS = frozenset({"ShutdownException", "InvalidStateException"})
"""The lease is gone or the KCL's state is broken: no further checkpoint can succeed."""

# Sequence numbers the daemon gives `initialize` for a shard nobody checkpointed yet.
_SENTINELS = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END"})


# -- the daemon's side, as amazon_kclpy's messages present it ------------------------------


class Checkpointer(Protocol):
    """amazon_kclpy.kcl.Checkpointer: writes a checkpoint request, reads the daemon's reply.

    Raises CheckpointError (its `value` is the Java exception's simple name).
    """

    def checkpoint(
        self, sequence_number: str | None = None, sub_sequence_number: int | None = None
    ) -> None: ...


class KclRecord(Protocol):
    """amazon_kclpy.messages.Record (one user record: the daemon de-aggregates KPL)."""

    @property
    def binary_data(self) -> bytes: ...
    @property
    def sequence_number(self) -> str: ...
    @property
    def sub_sequence_number(self) -> int: ...
    @property
    def timestamp_millis(self) -> int: ...
    @property
    def partition_key(self) -> str: ...


class InitializeInput(Protocol):
    """amazon_kclpy.messages.InitializeInput."""

    @property
    def shard_id(self) -> str: ...
    @property
    def sequence_number(self) -> str | None: ...
    @property
    def sub_sequence_number(self) -> int | None: ...


class ProcessRecordsInput(Protocol):
    """amazon_kclpy.messages.ProcessRecordsInput."""

    @property
    def records(self) -> Sequence[KclRecord]: ...
    @property
    def millis_behind_latest(self) -> int | None: ...
    @property
    def checkpointer(self) -> Checkpointer: ...


class LeaseLostInput(Protocol):
    """amazon_kclpy.messages.LeaseLostInput (carries nothing: checkpointing is impossible)."""


class CheckpointingInput(Protocol):
    """amazon_kclpy.messages.ShardEndedInput and ShutdownRequestedInput."""

    @property
    def checkpointer(self) -> Checkpointer: ...


class RecordProcessor(Protocol):
    """amazon_kclpy's v3 record processor: the five hooks KCLProcess calls.

    kclpy's own base class is an ABC that Python 3 does not enforce (it sets
    `__metaclass__`); this Protocol is what mypy checks. `version = 3` tells
    KCLProcess to call the hooks directly.
    """

    version: ClassVar[int]

    def initialize(self, initialize_input: InitializeInput) -> None: ...
    def process_records(self, process_records_input: ProcessRecordsInput) -> None: ...
    def lease_lost(self, lease_lost_input: LeaseLostInput) -> None: ...
    def shard_ended(self, shard_ended_input: CheckpointingInput) -> None: ...
    def shutdown_requested(self, shutdown_requested_input: CheckpointingInput) -> None: ...


# -- what the processor uses --------------------------------------------------------------


class BatchApplier(Protocol):
    """binlog.applier.Applier, as far as the processor needs it."""

    def apply_batch(self, records: Sequence[SourcedRecord]) -> list[ApplyResult]: ...


class PacerState(Protocol):
    """kcl_consumer.pacer.PacerState: what `lazyrep status` shows of the pacer."""

    def to_json(self) -> Any: ...


class Pacer(Protocol):
    """kcl_consumer.pacer.Pacer: a token bucket in WCU with a deadline."""

    def acquire(self, wcu: float, arrival_ms: int | None = None) -> float:
        """Block until `wcu` may be spent on records the oldest of which arrived then."""
        ...

    def observe(
        self,
        batch_wcu: float,
        records: int,
        oldest_arrival_ms: int | None,
        millis_behind_latest: int | None,
        *,
        newest_arrival_ms: int | None = None,
    ) -> None:
        """A batch was delivered: its cost, size, arrival times and the shard's backlog."""
        ...

    def suggested_chunk_wcu(self) -> float:
        """How much to pay for at once (the bucket's size): bigger chunks arrive as bursts."""
        ...

    def record_throttle(self) -> None:
        """The replica throttled a write: back off."""
        ...

    def state(self) -> PacerState: ...


ParentsOf = Callable[[str], Sequence[str | None]]
"""shard id -> its parent and adjacent parent (ListShards' ParentShardId, AdjacentParentShardId)."""


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """How one shard's processor applies, retries, checkpoints and reports.

    chunk_records: at most this many records are paid for (pacer) and applied at once;
        a chunk also stops at about one bucketful of WCU (`Pacer.suggested_chunk_wcu`).
    apply_attempts: tries of a chunk's unfinished records before the child exits.
    backoff_base_s / backoff_max_s: exponential backoff (with jitter) between tries.
    checkpoint_attempts / checkpoint_backoff_s: tries of one checkpoint on ThrottlingException.
    checkpoint_interval_s: inside a long (paced) batch, checkpoint finished chunks this often.
    lineage_attempts: ListShards tries at initialize before the child exits.
    """

    replica: str
    stream: str
    chunk_records: int = 500
    apply_attempts: int = 8
    backoff_base_s: float = 0.2
    backoff_max_s: float = 10.0
    checkpoint_attempts: int = 8
    checkpoint_backoff_s: float = 0.5
    checkpoint_interval_s: float = 10.0
    lineage_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.replica or not self.stream:
            raise ValueError("ProcessorConfig.replica and .stream must not be empty")
        _check("chunk_records", self.chunk_records, 1, 10_000)
        _check("apply_attempts", self.apply_attempts, 1, 100)
        _check("backoff_base_s", self.backoff_base_s, 0, 60)
        _check("backoff_max_s", self.backoff_max_s, self.backoff_base_s, 600)
        _check("checkpoint_attempts", self.checkpoint_attempts, 1, 100)
        _check("checkpoint_backoff_s", self.checkpoint_backoff_s, 0, 60)
        _check("checkpoint_interval_s", self.checkpoint_interval_s, 0, 3600)
        _check("lineage_attempts", self.lineage_attempts, 1, 100)

    @property
    def consumer_name(self) -> str:
        """Who parked a dead letter: `kcl:<replica>`."""
        return f"kcl:{self.replica}"


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(
            f"ProcessorConfig.{name} must be between {low:g} and {high:g}, got {value!r}"
        )


@dataclass(slots=True)
class Counts:
    """What this process did to its shard (cumulative): the metrics' and the status' numbers."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    condition_failed: int = 0
    parked: int = 0
    retried: int = 0
    throttled: int = 0
    dead_letter_failures: int = 0
    checkpoints: int = 0


@dataclass(slots=True)
class _Entry:
    """One record of a batch: what to write (or park), and whether that is done."""

    position: Position
    arrival_ms: int
    partition_key: str
    data: bytes
    sourced: SourcedRecord | None = None
    letter: DeadLetter | None = None
    wcu: int = 0
    done: bool = False


class RetriesExhaustedError(Exception):
    """A chunk still has records neither applied nor parked after every in-process try."""

    def __init__(self, entry: _Entry, attempts: int) -> None:
        super().__init__(
            f"{entry.position.shard_id}/{entry.position.sequence_number}/"
            f"{entry.position.subsequence_number} still unapplied after {attempts} tries"
        )


@dataclass(slots=True)
class _Checkpoint:
    sequence_number: str
    subsequence_number: int


@dataclass(slots=True)
class _ShardState:
    shard_id: str = ""
    state: ShardState = "initializing"
    halted: str | None = None  # why nothing more is applied or checkpointed
    skipped: bool = False  # a delivered record was neither applied nor parked
    applied_to: _Entry | None = None  # the last record of the finished prefix
    checkpoint: _Checkpoint | None = None
    last_checkpoint_s: float = 0.0
    millis_behind_latest: int | None = None
    pacer_state: Any = None
    counts: Counts = field(default_factory=Counts)


class ReplicaProcessor:
    """The record processor of one shard for one replica target (kclpy v3 hooks).

    Collaborators are injected (the worker wires the AWS ones): the applier for the
    replica's tables, the topology's tables (only those are written), the dead-letter
    store, the pacer, the status publisher, a ListShards look-up for the shard's parents,
    and `write_units` (an envelope's cost in WCU). `sleep`, `clock` and `rng` are seams
    for tests.
    """

    version: ClassVar[int] = 3

    def __init__(
        self,
        config: ProcessorConfig,
        *,
        applier: BatchApplier,
        tables: Mapping[str, KeySchema],
        dead_letters: DeadLetterStore,
        pacer: Pacer,
        status: ProgressReporter,
        parents_of: ParentsOf,
        write_units: Callable[[Envelope], int],
        owner: str = "",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._applier = applier
        self._tables = tables
        self._dead_letters = dead_letters
        self._pacer = pacer
        self._status = status
        self._parents_of = parents_of
        self._write_units = write_units
        self._owner = owner
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._shard = _ShardState()

    @property
    def counts(self) -> Counts:
        """What this processor did so far."""
        return self._shard.counts

    @property
    def halted(self) -> str | None:
        """Why the processor stopped applying and checkpointing, or None."""
        return self._shard.halted

    # -- the five hooks --------------------------------------------------------------------

    def initialize(self, initialize_input: InitializeInput) -> None:
        """Check the shard's lineage (record versions rely on it), then report in."""
        with self._guard("initialize"):
            shard = self._shard
            shard.shard_id = initialize_input.shard_id
            start = initialize_input.sequence_number
            if start and start.isdigit():
                shard.checkpoint = _Checkpoint(start, initialize_input.sub_sequence_number or 0)
            shard.last_checkpoint_s = self._monotonic()
            logger.info(
                "initialize %s at %s/%s",
                shard.shard_id,
                start,
                initialize_input.sub_sequence_number,
                extra={"shard_id": shard.shard_id, "event": "initialize", "owner": self._owner},
            )
            self._verify_lineage()
            shard.state = "blocked" if shard.halted else "processing"
            self._publish(force=True, claim=True)

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        """Apply or park every record, then checkpoint the batch's last record.

        Never returns with a record unapplied and unparked: it exits the process instead.
        """
        with self._guard("process_records"):
            self._process(process_records_input)

    def lease_lost(self, lease_lost_input: LeaseLostInput) -> None:
        """Another worker holds the shard now: stop, checkpoint nothing."""
        with self._guard("lease_lost"):
            shard = self._shard
            shard.state = "lease_lost"
            shard.halted = shard.halted or "lease lost"
            logger.info(
                "lease of %s lost; not checkpointing",
                shard.shard_id,
                extra={"shard_id": shard.shard_id, "event": "lease_lost"},
            )
            self._publish(force=True)

    def shard_ended(self, shard_ended_input: CheckpointingInput) -> None:
        """Every record of the shard is applied: checkpoint its end, so the children start.

        Unless a record was skipped (lineage refused, checkpointing stopped): then the
        end is not checkpointed, and whoever holds the shard next reads it again.
        """
        with self._guard("shard_ended"):
            shard = self._shard
            if shard.halted or shard.skipped:
                logger.error(
                    "shard %s ended but not every record was applied (%s): end not checkpointed",
                    shard.shard_id,
                    shard.halted or "records skipped",
                    extra={"shard_id": shard.shard_id, "event": "shard_ended"},
                )
                self._publish(force=True)
                return
            if self._checkpoint(shard_ended_input.checkpointer, None):
                shard.state = "ended"
                logger.info(
                    "shard %s ended and checkpointed",
                    shard.shard_id,
                    extra={"shard_id": shard.shard_id, "event": "shard_ended"},
                )
            self._publish(force=True)

    def shutdown_requested(self, shutdown_requested_input: CheckpointingInput) -> None:
        """The worker is stopping: checkpoint what is applied and not yet checkpointed."""
        with self._guard("shutdown_requested"):
            shard = self._shard
            self._checkpoint_applied(shutdown_requested_input.checkpointer)
            shard.state = "shut_down"
            logger.info(
                "shard %s shut down at %s",
                shard.shard_id,
                shard.checkpoint.sequence_number if shard.checkpoint else "its start",
                extra={"shard_id": shard.shard_id, "event": "shutdown_requested"},
            )
            self._publish(force=True)

    # -- processing ------------------------------------------------------------------------

    def _process(self, batch: ProcessRecordsInput) -> None:
        shard = self._shard
        records = batch.records
        shard.millis_behind_latest = batch.millis_behind_latest
        if shard.halted:
            if records:
                shard.skipped = True
                logger.error(
                    "shard %s: %s; %d records neither applied nor checkpointed",
                    shard.shard_id,
                    shard.halted,
                    len(records),
                    extra={"shard_id": shard.shard_id, "event": "skipped"},
                )
            return
        if not records:
            self._publish()
            return
        entries = [self._entry(record) for record in records]
        shard.counts.records += len(entries)
        # Told before paying: the pacer sizes its rate on the whole batch's age and cost.
        self._pacer.observe(
            sum(e.wcu for e in entries),
            len(entries),
            min(e.arrival_ms for e in entries),
            batch.millis_behind_latest,
            newest_arrival_ms=max(e.arrival_ms for e in entries),
        )
        checkpointer = batch.checkpointer
        start = 0
        while start < len(entries):
            chunk = self._next_chunk(entries, start)
            start += len(chunk)
            try:
                self._apply_chunk(chunk)
            except RetriesExhaustedError:
                self._fail(entries, checkpointer)
                raise
            shard.applied_to = chunk[-1]
            more = start < len(entries)
            due = self._monotonic() - shard.last_checkpoint_s >= self.config.checkpoint_interval_s
            if more and due:
                self._checkpoint_applied(checkpointer)
                if shard.halted:
                    shard.skipped = True
                    return
            self._publish()
        self._checkpoint_applied(checkpointer)
        self._publish()

    def _next_chunk(self, entries: list[_Entry], start: int) -> list[_Entry]:
        """The records paid for at once: up to `chunk_records`, and about one bucketful of WCU.

        The bucket holds about a second of the current rate; paying for much more at once
        would reach the replica as a burst well above the rate.
        """
        budget = max(1.0, self._pacer.suggested_chunk_wcu())
        end = start
        wcu = 0
        limit = min(len(entries), start + self.config.chunk_records)
        while end < limit and (end == start or wcu + entries[end].wcu <= budget):
            wcu += entries[end].wcu
            end += 1
        return entries[start:end]

    def _entry(self, record: KclRecord) -> _Entry:
        """Decode one record: something to apply, or a letter to park."""
        data = record.binary_data
        position = Position(
            self._shard.shard_id, record.sequence_number, record.sub_sequence_number or 0
        )
        entry = _Entry(position, record.timestamp_millis, record.partition_key, data)
        try:
            envelope = decode(data, self._tables)
        except RecordError as exc:
            # The codec's unknown_table, seen by a consumer: a table it must not write.
            reason = UNAUTHORIZED_TABLE if exc.reason is Reason.UNKNOWN_TABLE else exc.reason.value
            entry.letter = self._letter(entry, reason, exc.detail)
            return entry
        entry.sourced = SourcedRecord(envelope, position, record.timestamp_millis)
        entry.wcu = self._write_units(envelope)
        return entry

    def _apply_chunk(self, chunk: list[_Entry]) -> None:
        """Pay for the chunk, then apply and park until every record is done, or give up.

        Raises:
            RetriesExhaustedError: records remain after `apply_attempts` tries.
        """
        pending = chunk
        for attempt in range(1, self.config.apply_attempts + 1):
            wcu = sum(e.wcu for e in pending if e.letter is None)
            if wcu:
                self._pacer.acquire(wcu, min(e.arrival_ms for e in pending))
            throttled = self._attempt(pending)
            pending = [e for e in pending if not e.done]
            if not pending:
                return
            self._shard.counts.retried += len(pending)
            if throttled:
                self._shard.counts.throttled += 1
                self._pacer.record_throttle()
            if attempt < self.config.apply_attempts:
                self._sleep(self._backoff(attempt, self.config.backoff_base_s))
        raise RetriesExhaustedError(pending[0], self.config.apply_attempts)

    def _attempt(self, pending: list[_Entry]) -> bool:
        """One try: apply what is to be applied, park what is to be parked; True if throttled."""
        counts = self._shard.counts
        to_apply = [e for e in pending if e.letter is None and e.sourced is not None]
        results = self._applier.apply_batch([e.sourced for e in to_apply if e.sourced])
        throttled = False
        for entry, result in zip(to_apply, results, strict=True):
            outcome = result.outcome
            if outcome is Outcome.APPLIED:
                counts.applied += 1
            elif outcome is Outcome.STALE:
                counts.stale += 1
            elif outcome is Outcome.CONDITION_FAILED:
                counts.condition_failed += 1
            elif outcome is Outcome.PARKED:
                entry.letter = self._letter(entry, result.code or "permanent_error", result.message)
                continue
            else:
                if outcome is Outcome.RETRY:
                    throttled = throttled or result.code in THROTTLING_CODES
                    logger.warning(
                        "record %s/%s not applied, trying again: %s %s",
                        entry.position.shard_id,
                        entry.position.sequence_number,
                        result.code,
                        result.message[:300],
                    )
                continue
            entry.done = True
        to_park = [e for e in pending if e.letter is not None and not e.done]
        if to_park:
            self._park(to_park)
        return throttled

    def _park(self, entries: list[_Entry]) -> None:
        letters = [e.letter for e in entries if e.letter is not None]
        try:
            outcomes = self._dead_letters.park(letters)
        except Exception as exc:  # a store must not raise; if it does, nothing was parked
            logger.exception("dead-letter store raised")
            outcomes = [classify(exc)] * len(letters)
        if len(outcomes) != len(letters):
            outcomes = [Failure("BadStoreAnswer", "the store answered for other letters", False)]
            outcomes *= len(letters)
        counts = self._shard.counts
        for entry, letter, failure in zip(entries, letters, outcomes, strict=True):
            if failure is None:
                entry.done = True
                counts.parked += 1
                logger.warning(
                    "parked %s (%s): %s",
                    letter.letter_id,
                    letter.reason,
                    letter.detail[:300],
                    extra={"shard_id": letter.shard_id, "event": "parked"},
                )
            else:
                counts.dead_letter_failures += 1
                logger.error(
                    "dead letter %s (%s) not written, trying again: %s %s",
                    letter.letter_id,
                    letter.reason,
                    failure.code,
                    failure.message[:300],
                )

    def _fail(self, entries: list[_Entry], checkpointer: Checkpointer) -> None:
        """Retries exhausted: checkpoint the finished prefix (never past it), report, give up."""
        shard = self._shard
        first = next(i for i, e in enumerate(entries) if not e.done)
        if first:
            shard.applied_to = entries[first - 1]
        self._checkpoint_applied(checkpointer)
        shard.state = "failed"
        blocked = entries[first].position
        logger.error(
            "shard %s: record %s/%s still unapplied after %d tries; checkpoint stays at %s and "
            "the worker exits so that its supervisor restarts it",
            shard.shard_id,
            blocked.sequence_number,
            blocked.subsequence_number,
            self.config.apply_attempts,
            shard.checkpoint,
            extra={"shard_id": shard.shard_id, "event": "retries_exhausted"},
        )
        self._publish(force=True)

    # -- checkpoints -----------------------------------------------------------------------

    def _checkpoint_applied(self, checkpointer: Checkpointer) -> None:
        """Checkpoint the last finished record, if it is past the last checkpoint."""
        entry = self._shard.applied_to
        if entry is None:
            return
        done = _Checkpoint(entry.position.sequence_number, entry.position.subsequence_number)
        if done != self._shard.checkpoint:
            self._checkpoint(checkpointer, entry)

    def _checkpoint(self, checkpointer: Checkpointer, entry: _Entry | None) -> bool:
        """Checkpoint at `entry` (None: the end of the shard); True if the daemon took it.

        ThrottlingException is tried again with backoff; ShutdownException and
        InvalidStateException halt the processor (no further checkpoint can work, and
        nothing more is applied); any other error is logged, and the next checkpoint
        covers this one.
        """
        shard = self._shard
        if shard.halted:
            return False
        sequence = None if entry is None else entry.position.sequence_number
        subsequence = None if entry is None else entry.position.subsequence_number
        attempts = self.config.checkpoint_attempts
        for attempt in range(1, attempts + 1):
            try:
                checkpointer.checkpoint(sequence, subsequence)
            except CheckpointError as exc:
                error = str(exc.value)
            else:
                shard.counts.checkpoints += 1
                shard.last_checkpoint_s = self._monotonic()
                if entry is not None:
                    shard.checkpoint = _Checkpoint(
                        entry.position.sequence_number, entry.position.subsequence_number
                    )
                return True
            where = sequence or "SHARD_END"
            if error in RETRIABLE_CHECKPOINT_ERRORS and attempt < attempts:
                logger.warning(
                    "checkpoint of %s at %s: %s, trying again", shard.shard_id, where, error
                )
                self._sleep(self._backoff(attempt, self.config.checkpoint_backoff_s))
                continue
            if error in STOP_CHECKPOINT_ERRORS:
                shard.halted = f"checkpoint refused with {error}"
                logger.error(
                    "checkpoint of %s at %s refused (%s): applying and checkpointing stop",
                    shard.shard_id,
                    where,
                    error,
                    extra={"shard_id": shard.shard_id, "event": "checkpoint_stopped"},
                )
            else:
                logger.error(
                    "checkpoint of %s at %s failed (%s); the next one covers it",
                    shard.shard_id,
                    where,
                    error,
                )
            return False
        return False  # pragma: no cover - the last attempt always returns above

    # -- lineage, status, helpers ----------------------------------------------------------

    def _verify_lineage(self) -> None:
        """ListShards for the shard's parents; a child numbered below a parent is refused.

        Raises:
            Exception: the look-up failed `lineage_attempts` times (the child exits).
        """
        shard = self._shard
        for attempt in range(1, self.config.lineage_attempts + 1):
            try:
                parents = list(self._parents_of(shard.shard_id))
            except Exception as exc:
                if attempt == self.config.lineage_attempts:
                    raise
                failure = classify(exc)
                logger.warning(
                    "parents of %s unknown (%s: %s), trying again",
                    shard.shard_id,
                    failure.code,
                    failure.message,
                )
                self._sleep(self._backoff(attempt, self.config.backoff_base_s))
                continue
            try:
                check_lineage(shard.shard_id, parents)
            except LineageError as exc:
                shard.halted = f"lineage refused: {exc}"
            if shard.halted:
                logger.error(
                    "shard %s blocked: %s", shard.shard_id, shard.halted, extra={"event": "lineage"}
                )
            return

    def _publish(self, *, force: bool = False, claim: bool = False) -> None:
        """Report progress: routine reports are written now and then, `force`d ones at once.

        `claim` (at initialize) takes the shard's status entry over from its last owner.
        """
        shard = self._shard
        try:
            shard.pacer_state = self._pacer.state().to_json()
        except Exception:  # status is best effort: never fail the shard for it
            logger.exception("pacer state unavailable")
        applied = shard.applied_to
        checkpoint = shard.checkpoint
        progress = ShardProgress(
            shard_id=shard.shard_id,
            replica=self.config.replica,
            owner=self._owner,
            state=shard.state,
            checkpoint_sequence=checkpoint.sequence_number if checkpoint else None,
            checkpoint_subsequence=checkpoint.subsequence_number if checkpoint else None,
            applied_sequence=applied.position.sequence_number if applied else None,
            applied_arrival_ms=applied.arrival_ms if applied else None,
            millis_behind_latest=shard.millis_behind_latest,
            records=shard.counts.records,
            applied=shard.counts.applied,
            skipped_stale=shard.counts.stale,
            condition_failed=shard.counts.condition_failed,
            parked=shard.counts.parked,
            retried=shard.counts.retried,
            dead_letter_failures=shard.counts.dead_letter_failures,
            detail=shard.halted or "",
            pacer=shard.pacer_state,
            updated_ms=round(self._clock() * 1000),
        )
        try:
            self._status.report(progress, now=force, claim=claim)
        except Exception:  # a reporter must not raise; if it does, carry on
            logger.exception("status not reported")

    def close(self) -> None:
        """The daemon closed the channel: write pending status, stop the applier's threads."""
        self._status.close()
        close = getattr(self._applier, "close", None)
        if callable(close):
            close()

    def _letter(self, entry: _Entry, reason: str, detail: str) -> DeadLetter:
        return DeadLetter(
            data=entry.data,
            reason=reason,
            detail=detail,
            stream=self.config.stream,
            shard_id=entry.position.shard_id,
            sequence_number=entry.position.sequence_number,
            subsequence_number=entry.position.subsequence_number,
            partition_key=entry.partition_key,
            arrival=datetime.fromtimestamp(entry.arrival_ms / 1000, UTC),
            consumer=self.config.consumer_name,
            parked_at=datetime.fromtimestamp(self._clock(), UTC),
        )

    def _backoff(self, attempt: int, base_s: float) -> float:
        """Exponential, capped, with jitter in its upper half (no two shards in lockstep)."""
        ceiling = min(self.config.backoff_max_s, base_s * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self._rng.random() / 2)

    def _guard(self, hook: str) -> _Guard:
        return _Guard(self, hook)


class _Guard:
    """Turns any exception of a hook into the end of the child process.

    KCLProcess would log it and report the action done, letting a later checkpoint skip
    records that were never applied; exiting makes the daemon exit, and its supervisor
    restarts it from the last checkpoint.
    """

    def __init__(self, processor: ReplicaProcessor, hook: str) -> None:
        self._processor = processor
        self._hook = hook

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None or not isinstance(exc, Exception):
            return  # SystemExit and KeyboardInterrupt go through as they are
        shard = self._processor._shard  # the guard is part of the processor
        code = EXIT_BATCH_FAILED if isinstance(exc, RetriesExhaustedError) else EXIT_PROCESSOR_ERROR
        if not isinstance(exc, RetriesExhaustedError):
            logger.error(
                "%s of shard %s failed; the worker exits so that its supervisor restarts it",
                self._hook,
                shard.shard_id or "?",
                exc_info=exc,
                extra={"shard_id": shard.shard_id, "event": "hook_failed"},
            )
        raise SystemExit(code) from exc
