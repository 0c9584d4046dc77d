"""`lazyrep status`: reading what the report needs, cheaply.

Per replica target (in its region): one Scan of the KCL lease table `<application>`
and one of the workers' status table `<application>-status`. Per shard (in the
stream's region), one GetShardIterator (AFTER_SEQUENCE_NUMBER of the checkpoint, or
TRIM_HORIZON before the first checkpoint) and one GetRecords with Limit=1 (a few more
only while Kinesis answers an empty page with MillisBehindLatest > 0): that record is
the oldest unapplied one, its ApproximateArrivalTimestamp gives its age, and the
reply's MillisBehindLatest says how far the checkpoint is from the tip. Kinesis has
no call that returns an open shard's latest sequence number (LATEST iterators return
nothing until new records arrive), so `latest_sequence` is only given for closed
shards (DescribeStream's SequenceNumberRange.EndingSequenceNumber); GetRecords counts
against the shard's 5 reads/s, shared with the workers, so do not poll in a tight loop.
Ended shards (checkpoint SHARD_END, or closed with the lease gone) cost no read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from binlog.awserrors import classify
from binlog.reader import shards_in_lineage_order
from binlog.topology import ReplicaTarget, Topology
from kcl_consumer.status import ShardProgress, read_status, status_table_name
from lazyrep.status import (
    DEFAULT_STALE_AFTER_S,
    VERDICTS,
    PrimaryLag,
    ReplicaStatus,
    ShardFigures,
    ShardStatus,
    StatusReport,
    Verdict,
    assess,
)
from lazyrep.status_leases import SHARD_END, Lease, read_leases

logger = logging.getLogger(__name__)

MAX_EMPTY_PAGES = 3
PRIMARY_NAMESPACE = "LazyReplication"
PRIMARY_METRIC = "IteratorAgeMs"
PRIMARY_WINDOW = timedelta(minutes=15)

ClientFactory = Callable[[str, str], Any]
"""(service, region) -> boto3 client."""


class Probe(NamedTuple):
    """The first record after a position, and how far that position is from the tip."""

    sequence: str | None
    arrival_ms: int | None
    millis_behind_latest: int | None


def probe_after(kinesis: Any, stream: str, shard_id: str, checkpoint: str | None) -> Probe:
    """The oldest record after `checkpoint` (a sequence number or a KCL sentinel)."""
    request: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if checkpoint and checkpoint.isdigit():
        request |= {
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
            "StartingSequenceNumber": checkpoint,
        }
    elif checkpoint == "LATEST":
        request["ShardIteratorType"] = "LATEST"
    else:  # none yet, TRIM_HORIZON, or AT_TIMESTAMP (its time is in the properties, not here)
        request["ShardIteratorType"] = "TRIM_HORIZON"
    iterator: str | None = kinesis.get_shard_iterator(**request)["ShardIterator"]
    behind: int | None = None
    for _ in range(MAX_EMPTY_PAGES):
        if not iterator:
            break
        page = kinesis.get_records(ShardIterator=iterator, Limit=1)
        behind = page.get("MillisBehindLatest")
        if page["Records"]:
            record = page["Records"][0]
            arrival = record["ApproximateArrivalTimestamp"]
            return Probe(record["SequenceNumber"], int(arrival.timestamp() * 1000), behind)
        if not behind:
            break
        iterator = page.get("NextShardIterator")
    return Probe(None, None, behind)


def primary_lag(cloudwatch: Any, now: datetime) -> PrimaryLag:
    """The primary handler's IteratorAgeMs (newest Maximum in the last 15 min), if any.

    The Lambda handler publishes it in the LazyReplication namespace without a
    `Replica` dimension (the replica workers' metrics have one).
    """
    try:
        listed = cloudwatch.list_metrics(Namespace=PRIMARY_NAMESPACE, MetricName=PRIMARY_METRIC)
        newest: tuple[datetime, float] | None = None
        for metric in listed.get("Metrics", []):
            dimensions = metric.get("Dimensions", [])
            if any(d["Name"] == "Replica" for d in dimensions):
                continue
            points = cloudwatch.get_metric_statistics(
                Namespace=PRIMARY_NAMESPACE,
                MetricName=PRIMARY_METRIC,
                Dimensions=dimensions,
                StartTime=now - PRIMARY_WINDOW,
                EndTime=now + timedelta(minutes=1),
                Period=60,
                Statistics=["Maximum"],
            ).get("Datapoints", [])
            for point in points:
                if newest is None or point["Timestamp"] > newest[0]:
                    newest = (point["Timestamp"], float(point["Maximum"]))
    except (ClientError, BotoCoreError) as exc:
        return PrimaryLag(None, f"unknown: CloudWatch: {classify(exc).code}")
    if newest is None:
        return PrimaryLag(None, f"unknown: no {PRIMARY_NAMESPACE}/{PRIMARY_METRIC} in 15 min")
    return PrimaryLag(newest[1], f"CloudWatch {PRIMARY_NAMESPACE}/{PRIMARY_METRIC} Maximum")


def _status_items(dynamodb: Any, app: str) -> dict[str, ShardProgress]:
    try:
        return {p.shard_id: p for p in read_status(dynamodb, status_table_name(app))}
    except ClientError as exc:
        if classify(exc).code == "ResourceNotFoundException":
            return {}
        raise


def _number(mapping: object, name: str) -> float | None:
    if not isinstance(mapping, Mapping):
        return None
    value = mapping.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def replica_status(
    target: ReplicaTarget,
    *,
    kinesis: Any,
    dynamodb: Any,
    stream: str,
    shards: list[Any],
    retention_s: float,
    now_ms: int,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> ReplicaStatus:
    """Read one replica's leases, status items and stream positions; assess each shard."""
    leases = read_leases(dynamodb, target.application_name)
    progress = _status_items(dynamodb, target.application_name)
    known: Mapping[str, Lease] = leases or {}
    parents_of_leased = {
        parent
        for shard in shards
        if shard["ShardId"] in known
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
        if parent
    }
    rows: list[ShardStatus] = []
    for shard in shards:
        shard_id = shard["ShardId"]
        lease = known.get(shard_id)
        ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        checkpoint = lease.checkpoint if lease else None
        ended = checkpoint == SHARD_END or (
            lease is None and ending is not None and shard_id in parents_of_leased
        )
        probe = Probe(None, None, None)
        if not ended:
            probe = probe_after(kinesis, stream, shard_id, checkpoint)
        caught_up = ended or probe.sequence is None
        age_s = None if probe.arrival_ms is None else max(0, now_ms - probe.arrival_ms) / 1000
        item = progress.get(shard_id)
        status_age_s = None if item is None else max(0, now_ms - item.updated_ms) / 1000
        fresh = None if status_age_s is None else status_age_s <= stale_after_s
        pacer = item.pacer if item is not None else None
        raw_verdict = pacer.get("verdict") if isinstance(pacer, Mapping) else None
        pacer_verdict: Verdict | None = next((v for v in VERDICTS if v == raw_verdict), None)
        figures = ShardFigures(
            ended=ended,
            caught_up=caught_up,
            oldest_unapplied_age_s=age_s,
            has_owner=bool(lease and lease.owner),
            status_fresh=fresh,
            pacer_rate_wcu=_number(pacer, "rate_wcu"),
            pacer_drain_s=_number(pacer, "projected_drain_s"),
            pacer_verdict=pacer_verdict,
        )
        verdict = assess(figures, deadline_s=target.deadline_hours * 3600, retention_s=retention_s)
        rows.append(
            ShardStatus(
                shard_id=shard_id,
                open=ending is None,
                lease_owner=lease.owner if lease else None,
                lease_counter=lease.counter if lease else None,
                checkpoint=checkpoint,
                checkpoint_subsequence=lease.checkpoint_subsequence if lease else None,
                latest_sequence=ending,
                next_unapplied_sequence=probe.sequence,
                oldest_unapplied_age_s=age_s,
                millis_behind_latest=0 if ended else probe.millis_behind_latest,
                caught_up=caught_up,
                worker_state=item.state if item else None,
                status_age_s=status_age_s,
                pacer_rate_wcu=figures.pacer_rate_wcu,
                projected_drain_s=0.0 if caught_up else figures.pacer_drain_s,
                margin_to_deadline_s=verdict.margin_to_deadline_s,
                margin_to_retention_s=verdict.margin_to_retention_s,
                verdict=verdict.verdict,
                reasons=verdict.reasons,
            )
        )
    return ReplicaStatus(
        name=target.name,
        region=target.region,
        application_name=target.application_name,
        deadline_hours=target.deadline_hours,
        max_wcu=target.max_wcu,
        lease_table_found=leases is not None,
        shards=tuple(rows),
    )


def stream_retention_hours(kinesis: Any, stream: str) -> float:
    """The stream's actual retention (DescribeStreamSummary), which may differ from the file's."""
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    return float(summary["RetentionPeriodHours"])


def collect_status(
    topology: Topology,
    replicas: list[str],
    client: ClientFactory,
    *,
    clock: Callable[[], float] = time.time,
    stale_after_s: float = DEFAULT_STALE_AFTER_S,
) -> StatusReport:
    """The whole report for `replicas` (names from the topology).

    Raises:
        ClientError, BotoCoreError: the stream, a lease table or a status table
            cannot be read (a missing lease or status table is reported, not raised).
    """
    kinesis = client("kinesis", topology.stream.region)
    stream = topology.stream.name
    retention_h = stream_retention_hours(kinesis, stream)
    shards = list(shards_in_lineage_order(kinesis, stream))
    now_ms = int(clock() * 1000)
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    lag = primary_lag(client("cloudwatch", topology.stream.region), now)
    rows = tuple(
        replica_status(
            topology.replicas[name],
            kinesis=kinesis,
            dynamodb=client("dynamodb", topology.replicas[name].region),
            stream=stream,
            shards=shards,
            retention_s=retention_h * 3600,
            now_ms=now_ms,
            stale_after_s=stale_after_s,
        )
        for name in replicas
    )
    return StatusReport(
        stream=stream,
        stream_region=topology.stream.region,
        retention_hours=retention_h,
        safety_margin_hours=topology.safety_margin_hours,
        generated_at=now.isoformat(timespec="seconds"),
        primary=lag,
        replicas=rows,
    )
