"""The Lambda consumer's core: a batch of records in; applied or parked; a partial response out.

Kinesis and Lambda deliver at least once and resume a shard from the lowest
sequence number the function reports failed, so the rules are:
- a record that cannot or must not be applied (undecodable, too large, schema
  mismatch, a table outside the topology, a permanent DynamoDB error) is parked in
  the dead-letter store, and the batch goes on;
- a transient failure (throttling, 5xx, after botocore's retries) stops that item:
  the applier attempts none of its later records, and the first failed record of
  the shard is reported, so Lambda delivers it and everything after it again;
  idempotent writes make the redelivery of what was applied harmless;
- a park that fails is a failure too: the record is reported, never dropped.
No AWS client is created here; `build_consumer` wires the real ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from binlog.applier import Applier, ApplierConfig, Outcome
from binlog.awserrors import Failure, classify
from binlog.clients import client_config, dynamodb_client, kinesis_client
from binlog.codec import decode
from binlog.deadletter import (
    BAD_AGGREGATE,
    UNAUTHORIZED_TABLE,
    DeadLetter,
    DeadLetterStore,
    dead_letter_store,
)
from binlog.errors import Reason, RecordError, TopologyError
from binlog.records import Position, SourcedRecord
from binlog.topology import Topology, load_topology
from binlog.version import LineageError
from lambda_consumer.aggregation import AggregateError, UserRecord, deaggregate
from lambda_consumer.events import PartialBatchResponse, StreamRecord, partial_response
from lambda_consumer.lineage import ShardLineage
from lambda_consumer.settings import ConsumerSettings

if TYPE_CHECKING:
    import boto3
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchReport:
    """What one batch did: the counts behind the metrics, and the records to redeliver.

    `records` counts Kinesis records (a KPL aggregate is one); the outcome counts are
    user records. `retried` counts user records left for redelivery (transient
    failures, their item's later records, failed parks, blocked shards).
    """

    records: int = 0
    user_records: int = 0
    applied: int = 0
    stale: int = 0
    condition_failed: int = 0
    parked: int = 0
    retried: int = 0
    dead_letter_failures: int = 0
    iterator_age_ms: int | None = None
    failed: list[str] = field(default_factory=list)

    def response(self) -> PartialBatchResponse:
        """`{"batchItemFailures": [...]}`: the first failed record of the shard, or none."""
        return partial_response(self.failed)

    def summary(self) -> dict[str, Any]:
        """The counts, for one structured log line per batch."""
        return {
            "records": self.records,
            "user_records": self.user_records,
            "applied": self.applied,
            "skipped_stale": self.stale,
            "condition_failed": self.condition_failed,
            "parked": self.parked,
            "retried": self.retried,
            "dead_letter_failures": self.dead_letter_failures,
            "iterator_age_ms": self.iterator_age_ms,
            "reported": self.failed,
        }


class Consumer:
    """Applies Lambda's Kinesis batches to the primary tables its topology names.

    Thread-safe: one instance serves every invocation of a container (and concurrent
    shards of an in-process event source mapping).
    """

    def __init__(
        self,
        topology: Topology,
        applier: Applier,
        dead_letters: DeadLetterStore,
        *,
        lineage: ShardLineage | None = None,
        consumer_name: str = "lambda:primary",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topology = topology
        self._tables = topology.tables
        self._applier = applier
        self._dead_letters = dead_letters
        self._lineage = lineage
        self._name = consumer_name
        self._clock = clock

    def process(self, records: Sequence[StreamRecord]) -> BatchReport:
        """Apply or park every record; report the first record of each shard to deliver again."""
        batch = _Batch(records, BatchReport(records=len(records)))
        if not records:
            return batch.report
        arrivals = [r.arrival_ms for r in records if r.arrival_ms is not None]
        if arrivals:
            # As Lambda's IteratorAge: the age of the batch's newest record.
            batch.report.iterator_age_ms = max(0, round(self._clock() * 1000) - max(arrivals))
        blocked = self._blocked_shards(records)
        for index, record in enumerate(records):
            if (record.stream, record.shard_id) in blocked:
                batch.fail(index)
            else:
                self._decode(batch, index, record)
        self._apply(batch)
        self._park(batch)
        batch.report.failed = _first_failed(records, batch.failed)
        return batch.report

    def _decode(self, batch: _Batch, index: int, record: StreamRecord) -> None:
        """Queue the record's user records to apply, or their dead letters to park."""
        try:
            users = deaggregate(record.data)
        except AggregateError as exc:
            whole = UserRecord(record.partition_key, record.data, 0)
            batch.park(index, self._letter(record, whole, BAD_AGGREGATE, str(exc)))
            return
        if users is None:
            users = [UserRecord(record.partition_key, record.data, 0)]
        batch.report.user_records += len(users)
        for user in users:
            try:
                envelope = decode(user.data, self._tables)
            except RecordError as exc:
                # The codec's unknown_table, seen by a consumer: a table it must not write.
                reason = (
                    UNAUTHORIZED_TABLE if exc.reason is Reason.UNKNOWN_TABLE else exc.reason.value
                )
                batch.park(index, self._letter(record, user, reason, exc.detail))
                continue
            position = Position(record.shard_id, record.sequence_number, user.subsequence_number)
            batch.sourced.append(SourcedRecord(envelope, position, record.arrival_ms))
            batch.sourced_from.append((index, user))

    def _apply(self, batch: _Batch) -> None:
        """One shared applier: items concurrently, each item in order, none after its RETRY."""
        if not batch.sourced:
            return
        results = self._applier.apply_batch(batch.sourced)
        report = batch.report
        for result, (index, user), sourced in zip(
            results, batch.sourced_from, batch.sourced, strict=True
        ):
            outcome = result.outcome
            if outcome is Outcome.APPLIED:
                report.applied += 1
            elif outcome is Outcome.STALE:
                report.stale += 1
            elif outcome is Outcome.CONDITION_FAILED:
                report.condition_failed += 1
            elif outcome is Outcome.PARKED:
                reason = result.code or "permanent_error"
                letter = self._letter(batch.records[index], user, reason, result.message)
                batch.park(index, letter)
            else:  # RETRY, or NOT_ATTEMPTED after an earlier record of the item
                batch.fail(index)
                if outcome is Outcome.RETRY:
                    logger.warning(
                        "record %s/%s not applied, delivered again: %s %s",
                        sourced.position.shard_id,
                        sourced.position.sequence_number,
                        result.code,
                        result.message,
                    )

    def _park(self, batch: _Batch) -> None:
        """Write the batch's dead letters; a letter not written fails its record.

        Letters of records after their shard's first failure are not written now: Lambda
        delivers those records again, so a long throttle does not park them at every try.
        """
        first: dict[str, tuple[int, str]] = {}
        for record, failed in zip(batch.records, batch.failed, strict=True):
            order = _sequence_order(record)
            if failed and (record.shard_id not in first or order < first[record.shard_id]):
                first[record.shard_id] = order
        letters: list[DeadLetter] = []
        owners: list[int] = []
        for letter, owner in zip(batch.letters, batch.letter_owner, strict=True):
            record = batch.records[owner]
            if record.shard_id in first and _sequence_order(record) > first[record.shard_id]:
                batch.fail(owner)
            else:
                letters.append(letter)
                owners.append(owner)
        if not letters:
            return
        for letter, owner, failure in zip(
            letters, owners, self._write_letters(letters), strict=True
        ):
            if failure is None:
                batch.report.parked += 1
                logger.warning(
                    "parked %s (%s): %s", letter.letter_id, letter.reason, letter.detail[:300]
                )
                continue
            batch.fail(owner)
            batch.report.dead_letter_failures += 1
            logger.error(
                "dead letter %s (%s) not written, record delivered again: %s %s",
                letter.letter_id,
                letter.reason,
                failure.code,
                failure.message,
            )

    def _blocked_shards(self, records: Sequence[StreamRecord]) -> set[tuple[str, str]]:
        """Shards whose records must not be applied now: another stream, or a bad lineage."""
        blocked: set[tuple[str, str]] = set()
        for stream, shard_id in dict.fromkeys((r.stream, r.shard_id) for r in records):
            if stream != self.topology.stream.name:
                logger.error(
                    "records of stream %s, but the topology's stream is %s: nothing applied "
                    "(fix the event source mapping or LAZYREP_TOPOLOGY)",
                    stream,
                    self.topology.stream.name,
                )
                blocked.add((stream, shard_id))
                continue
            if self._lineage is None:
                continue
            try:
                self._lineage.verify(stream, shard_id)
                continue
            except LineageError as exc:
                problem = f"stopped: {exc}"
            except Exception as exc:  # the look-up failed: try again later
                failure = classify(exc)
                problem = f"lineage unknown ({failure.code}: {failure.message}), delivered again"
            logger.error("shard %s %s", shard_id, problem)
            blocked.add((stream, shard_id))
        return blocked

    def _letter(
        self, record: StreamRecord, user: UserRecord, reason: str, detail: str
    ) -> DeadLetter:
        arrival = (
            None
            if record.arrival_ms is None
            else datetime.fromtimestamp(record.arrival_ms / 1000, UTC)
        )
        return DeadLetter(
            data=user.data,
            reason=reason,
            detail=detail,
            stream=record.stream,
            shard_id=record.shard_id,
            sequence_number=record.sequence_number,
            subsequence_number=user.subsequence_number,
            partition_key=user.partition_key,
            arrival=arrival,
            consumer=self._name,
            parked_at=datetime.fromtimestamp(self._clock(), UTC),
        )

    def _write_letters(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        try:
            outcomes = self._dead_letters.park(letters)
        except Exception as exc:  # a store must not raise; if it does, nothing was parked
            logger.exception("dead-letter store raised")
            return [classify(exc)] * len(letters)
        if len(outcomes) != len(letters):
            failure = Failure("BadStoreAnswer", "the store answered for other letters", False)
            return [failure] * len(letters)
        return outcomes


class _Batch:
    """One invocation's working state: what to apply, what to park, which records failed."""

    def __init__(self, records: Sequence[StreamRecord], report: BatchReport) -> None:
        self.records = records
        self.report = report
        self.failed = [False] * len(records)
        self.sourced: list[SourcedRecord] = []
        self.sourced_from: list[tuple[int, UserRecord]] = []
        self.letters: list[DeadLetter] = []
        self.letter_owner: list[int] = []

    def fail(self, index: int) -> None:
        """A user record of record `index` must be delivered again."""
        self.failed[index] = True
        self.report.retried += 1

    def park(self, index: int, letter: DeadLetter) -> None:
        self.letters.append(letter)
        self.letter_owner.append(index)


def _first_failed(records: Sequence[StreamRecord], failed: Sequence[bool]) -> list[str]:
    """Per shard, the lowest failed sequence number: Lambda resumes the shard from it."""
    first: dict[str, StreamRecord] = {}
    for record, is_failed in zip(records, failed, strict=True):
        if not is_failed:
            continue
        current = first.get(record.shard_id)
        if current is None or _sequence_order(record) < _sequence_order(current):
            first[record.shard_id] = record
    return [record.sequence_number for record in first.values()]


def _sequence_order(record: StreamRecord) -> tuple[int, str]:
    digits = record.sequence_number
    return (int(digits), digits) if digits.isdigit() else (-1, digits)


def build_consumer(
    settings: ConsumerSettings,
    *,
    session: boto3.Session | None = None,
    dynamodb: DynamoDBClient | None = None,
    kinesis: KinesisClient | None = None,
    dead_letters: DeadLetterStore | None = None,
) -> Consumer:
    """The consumer a container keeps: topology loaded, clients created, once.

    Clients not given are created in the topology's stream region (the primary's),
    honouring `AWS_ENDPOINT_URL_<SERVICE>`.

    Raises:
        TopologyError: the topology file is wrong, or names no dead-letter store.
    """
    topology = load_topology(settings.topology_path)
    region = topology.stream.region
    if dead_letters is None:
        if topology.dead_letter is None:
            raise TopologyError(
                "dead_letter",
                "the Lambda consumer needs a dead-letter store (kind = sqs or s3): without "
                "one a poison record would block its shard",
            )
        dead_letters = dead_letter_store(topology.dead_letter, session=session)
    if dynamodb is None:
        config = client_config(
            max_attempts=settings.dynamodb_max_attempts, pool=max(10, settings.max_workers)
        )
        dynamodb = dynamodb_client(region=region, session=session, config=config)
    lineage = None
    if settings.check_lineage:
        lineage = ShardLineage(kinesis or kinesis_client(region=region, session=session))
    applier = Applier(
        dynamodb,
        topology.tables,
        config=ApplierConfig.from_topology(topology, max_workers=settings.max_workers),
    )
    return Consumer(
        topology, applier, dead_letters, lineage=lineage, consumer_name=settings.consumer_name
    )
