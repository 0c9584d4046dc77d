"""Publishing replica progress for `lazyrep status`: a small DynamoDB table, and CloudWatch.

Each shard's processor reports what it has applied and checkpointed, how far behind
it is and what its pacer is doing. The table `<application_name>-status` (one per
replica target, in the replica's region, created on first use) holds one item per
shard id, written by whichever worker holds the shard's lease: the new owner claims
the item at initialize, and later writes are conditional on still owning it, so a
worker that lost the lease cannot overwrite its successor's progress. Items expire
(TTL on `expires`) a week after their last write, so finished shards go away.

CloudWatch (optional): the same metric names as the Lambda consumer's, in the
`LazyReplication` namespace with a `Replica` dimension.

Publishing is best effort: it never raises, and a failure only costs a log line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from binlog.awserrors import classify

logger = logging.getLogger(__name__)

STATUS_SUFFIX = "-status"
STATUS_KEY = "shard_id"
STATUS_EXPIRES = "expires"
DEFAULT_STATUS_TTL_S = 7 * 24 * 3600
NAMESPACE = "LazyReplication"

ShardState = Literal[
    "initializing", "processing", "blocked", "failed", "lease_lost", "ended", "shut_down"
]
"""processing: applying; blocked: lineage refused, nothing applied; failed: retries
exhausted, the worker restarts; lease_lost / shut_down / ended: no longer processed here."""


def status_table_name(application_name: str) -> str:
    """`<application_name>-status`: beside the KCL's own `<application_name>` lease table."""
    return f"{application_name}{STATUS_SUFFIX}"


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """One shard of one replica: where it is checkpointed, what is applied, how late it is.

    Counts are those of the current owner's process since it took the shard.
    `applied_arrival_ms` is the approximate arrival time (epoch ms) of the last record
    applied; the replica is that far behind the stream.
    """

    shard_id: str
    replica: str
    owner: str
    state: ShardState
    checkpoint_sequence: str | None = None
    checkpoint_subsequence: int | None = None
    applied_sequence: str | None = None
    applied_arrival_ms: int | None = None
    millis_behind_latest: int | None = None
    records: int = 0
    applied: int = 0
    skipped_stale: int = 0
    condition_failed: int = 0
    parked: int = 0
    retried: int = 0
    dead_letter_failures: int = 0
    detail: str = ""
    pacer: Any = None
    updated_ms: int = 0

    def lag_ms(self, now_ms: int) -> int | None:
        """How old the last applied record is (None before the first)."""
        if self.applied_arrival_ms is None:
            return None
        return max(0, now_ms - self.applied_arrival_ms)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (attribute-value form); None fields are left out."""
        item: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value is None or value == "":
                continue
            if name == "pacer":
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                item[name] = {"S": text}
            elif isinstance(value, bool) or not isinstance(value, int):
                item[name] = {"S": str(value)}
            else:
                item[name] = {"N": str(value)}
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ShardProgress:
        """Read an item back; unknown attributes are ignored, the pacer's JSON is parsed."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = item.get(f.name)
            if raw is None:
                continue
            if "N" in raw:
                values[f.name] = int(raw["N"])
            elif f.name == "pacer":
                try:
                    values[f.name] = json.loads(raw["S"])
                except ValueError:
                    values[f.name] = raw["S"]
            else:
                values[f.name] = raw.get("S")
        return cls(**values)


class StatusPublisher(Protocol):
    """Where processors send their progress; `publish` never raises."""

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """Record `progress`; `claim` takes the shard over from its previous owner."""
        ...


class ProgressReporter(Protocol):
    """What a processor reports to: routine progress now and then, lifecycle events at once."""

    def report(self, progress: ShardProgress, *, now: bool = False, claim: bool = False) -> None:
        """Record `progress`: at once if `now` or `claim`, else soon (latest wins)."""
        ...

    def close(self) -> None:
        """Write what is pending; nothing is written after."""
        ...


class PeriodicReporter:
    """Writes routine progress at most every `interval_s`, from a background thread.

    A processor reports after every chunk; writing each report would cost a DynamoDB
    write per chunk, and throttling on the processor's side alone would leave the
    table stale while the processor waits for the pacer or for the next batch. So the
    latest routine report is kept and a daemon thread writes it every `interval_s`;
    lifecycle reports (`now`, `claim`) are written at once, replacing any pending one.
    Never raises.
    """

    def __init__(self, publisher: StatusPublisher, interval_s: float = 10.0) -> None:
        if not 0 <= interval_s <= 3600:
            raise ValueError("PeriodicReporter.interval_s must be between 0 and 3600")
        self._publisher = publisher
        self._interval_s = interval_s
        self._pending: ShardProgress | None = None
        self._lock = threading.Lock()  # guards _pending and the thread's start
        self._write_lock = threading.Lock()  # one write at a time, in report order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def report(self, progress: ShardProgress, *, now: bool = False, claim: bool = False) -> None:
        """Keep `progress` for the next periodic write, or write it at once."""
        if now or claim or self._interval_s == 0:
            with self._write_lock:
                with self._lock:
                    self._pending = None
                self._write(progress, claim)
            return
        with self._lock:
            self._pending = progress
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="lazyrep-status", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Write the pending report, if any."""
        with self._write_lock:
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is not None:
                self._write(pending, False)

    def close(self) -> None:
        """Stop the thread and write what is pending."""
        self._stop.set()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def _write(self, progress: ShardProgress, claim: bool) -> None:
        try:
            self._publisher.publish(progress, claim=claim)
        except Exception:  # a publisher must not raise; if it does, carry on
            logger.exception("status not published")


class NullStatus:
    """Publishes nothing (tests, or status turned off)."""

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """Do nothing."""


class MemoryStatus:
    """Keeps every progress report in a list, as publisher or as reporter (tests)."""

    def __init__(self) -> None:
        self.reports: list[ShardProgress] = []
        self.claims: list[ShardProgress] = []

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """Append `progress`."""
        self.reports.append(progress)
        if claim:
            self.claims.append(progress)

    def report(self, progress: ShardProgress, *, now: bool = False, claim: bool = False) -> None:
        """Append `progress` (every report, at once)."""
        self.publish(progress, claim=claim)

    def close(self) -> None:
        """Nothing to write."""


class DynamoStatusTable:
    """The `<application_name>-status` table, one item per shard id."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        ttl_s: int = DEFAULT_STATUS_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 3600 <= ttl_s <= 400 * 24 * 3600:
            raise ValueError("DynamoStatusTable.ttl_s must be between 3600 and 34560000")
        self._client = client
        self.table_name = table_name
        self._ttl_s = ttl_s
        self._clock = clock

    def ensure(self, *, wait_s: float = 60.0) -> None:
        """Create the table (on demand, TTL on `expires`) unless it exists; wait until active.

        Raises:
            ClientError, BotoCoreError: the table cannot be described or created
                (e.g. no dynamodb:CreateTable permission: create it with the stack instead).
        """
        try:
            status = self._client.describe_table(TableName=self.table_name)["Table"]["TableStatus"]
        except ClientError as exc:
            if classify(exc).code != "ResourceNotFoundException":
                raise
            status = None
        if status == "ACTIVE":
            return
        if status is None:
            try:
                self._client.create_table(
                    TableName=self.table_name,
                    AttributeDefinitions=[{"AttributeName": STATUS_KEY, "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": STATUS_KEY, "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                logger.info("created status table %s", self.table_name)
            except ClientError as exc:  # another shard's process created it first
                if classify(exc).code != "ResourceInUseException":
                    raise
        self._client.get_waiter("table_exists").wait(
            TableName=self.table_name,
            WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(wait_s))},
        )
        try:
            self._client.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": STATUS_EXPIRES},
            )
        except ClientError as exc:  # already enabled (by another shard's process)
            logger.debug("TTL of %s not changed: %s", self.table_name, classify(exc).message)

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """Write the shard's item; unless claiming, only while `progress.owner` owns it."""
        item = progress.to_item()
        item[STATUS_EXPIRES] = {"N": str(int(self._clock()) + self._ttl_s)}
        request: dict[str, Any] = {"TableName": self.table_name, "Item": item}
        if not claim:
            request["ConditionExpression"] = "attribute_not_exists(#k) OR #o = :o"
            request["ExpressionAttributeNames"] = {"#k": STATUS_KEY, "#o": "owner"}
            request["ExpressionAttributeValues"] = {":o": {"S": progress.owner}}
        try:
            self._client.put_item(**request)
        except Exception as exc:  # best effort: never fail a shard for its status
            failure = classify(exc)
            if failure.code == "ConditionalCheckFailedException":
                logger.info(
                    "status of %s belongs to another worker now; not written", progress.shard_id
                )
            else:
                logger.warning(
                    "status of %s not written: %s %s",
                    progress.shard_id,
                    failure.code,
                    failure.message,
                )

    def read(self) -> list[ShardProgress]:
        """Every shard's latest progress, by shard id.

        Raises:
            ClientError, BotoCoreError: the table cannot be read.
        """
        return read_status(self._client, self.table_name)


def read_status(client: Any, table_name: str) -> list[ShardProgress]:
    """Every item of a status table (for `lazyrep status`), sorted by shard id.

    Raises:
        ClientError, BotoCoreError: the table cannot be read.
    """
    request: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    found: list[ShardProgress] = []
    while True:
        page = client.scan(**request)
        found.extend(ShardProgress.from_item(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return sorted(found, key=lambda p: p.shard_id)
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


_COUNTERS = (
    ("RecordsApplied", "applied"),
    ("RecordsSkippedStale", "skipped_stale"),
    ("RecordsConditionFailed", "condition_failed"),
    ("RecordsParked", "parked"),
    ("RecordsRetried", "retried"),
    ("DeadLetterFailures", "dead_letter_failures"),
)


class CloudWatchStatus:
    """Progress as CloudWatch metrics: counts since the last report, lag, backlog.

    The names are the Lambda consumer's (RecordsApplied, RecordsSkippedStale, ...,
    IteratorAgeMs), plus MillisBehindLatest, with dimension `Replica`.
    """

    def __init__(
        self,
        client: Any,
        replica: str,
        *,
        namespace: str = NAMESPACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._replica = replica
        self._namespace = namespace
        self._clock = clock
        self._last: dict[str, ShardProgress] = {}
        self._lock = threading.Lock()

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """PutMetricData with what changed since this shard's previous report."""
        with self._lock:
            previous = self._last.get(progress.shard_id)
            self._last[progress.shard_id] = progress
        dimensions = [{"Name": "Replica", "Value": self._replica}]
        data: list[dict[str, Any]] = []
        for metric, attr in _COUNTERS:
            value = getattr(progress, attr) - (getattr(previous, attr) if previous else 0)
            if value > 0:
                data.append(
                    {
                        "MetricName": metric,
                        "Dimensions": dimensions,
                        "Value": value,
                        "Unit": "Count",
                    }
                )
        lag = progress.lag_ms(round(self._clock() * 1000))
        for metric, value in (
            ("IteratorAgeMs", lag),
            ("MillisBehindLatest", progress.millis_behind_latest),
        ):
            if value is not None:
                data.append(
                    {
                        "MetricName": metric,
                        "Dimensions": dimensions,
                        "Value": value,
                        "Unit": "Milliseconds",
                    }
                )
        if not data:
            return
        try:
            self._client.put_metric_data(Namespace=self._namespace, MetricData=data)
        except Exception as exc:  # best effort
            failure = classify(exc)
            logger.warning("metrics not published: %s %s", failure.code, failure.message)


class FanOutStatus:
    """Publishes to several publishers in turn."""

    def __init__(self, publishers: Sequence[StatusPublisher]) -> None:
        self._publishers = list(publishers)

    def publish(self, progress: ShardProgress, *, claim: bool = False) -> None:
        """Every publisher gets `progress`; one that raises does not stop the others."""
        for publisher in self._publishers:
            try:
                publisher.publish(progress, claim=claim)
            except Exception:  # a publisher must not raise; if it does, carry on
                logger.exception("status publisher %s raised", type(publisher).__name__)


__all__ = [
    "NAMESPACE",
    "STATUS_EXPIRES",
    "STATUS_KEY",
    "CloudWatchStatus",
    "DynamoStatusTable",
    "FanOutStatus",
    "MemoryStatus",
    "NullStatus",
    "PeriodicReporter",
    "ProgressReporter",
    "ShardProgress",
    "ShardState",
    "StatusPublisher",
    "read_status",
    "status_table_name",
]
