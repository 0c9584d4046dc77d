"""The Kinesis side of a replay: the stream's facts, its shards, and reading one shard to a bound.

Every Kinesis call of `lazyrep replay` is here. Errors that mean the input is wrong
(no such stream, a sequence number the shard does not hold, records past the
retention) become `ReplayInputError`s that say what is wrong and what would work; the
rest propagate for `errors_cli` to explain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from binlog.reader import StreamRecord
from lazyrep.replay_plan import ReplayInputError, ShardInfo, ShardPlan, ShardStart, iso, lost_window

if TYPE_CHECKING:
    from types_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)

PAGE_LIMIT = 1000
"""Records per GetRecords: 2 MiB/s per shard out, so big pages waste nothing."""
EMPTY_PAGE_WAIT_S = 0.2
"""Between empty pages: GetRecords allows 5 calls per second per shard."""
_OLDEST_PROBES = 5  # GetRecords calls spent looking for a shard's oldest record


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What DescribeStreamSummary says, and the stream's clock when it said it."""

    name: str
    region: str
    retention_hours: int
    created: datetime | None
    server_now: datetime
    endpoint: str


class OldestRecord(NamedTuple):
    """The oldest record a shard still holds."""

    shard_id: str
    sequence_number: str
    arrival: datetime


class EndReason(StrEnum):
    """Why a shard's reading stopped."""

    ENDED = "ended"  # the shard's end (closed), or the tip (open and caught up)
    CUT = "cut"  # the bound: the next record lies beyond it


class Page(NamedTuple):
    """Records of one GetRecords call within the bound; `end` once the shard is done."""

    records: list[StreamRecord]
    end: EndReason | None
    millis_behind: int | None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))


def describe_stream(client: KinesisClient, stream: str, region: str) -> StreamFacts:
    """The stream's retention, creation time and clock.

    Raises:
        ReplayInputError: no such stream in this region, or the endpoint serves another region.
    """
    endpoint = client.meta.endpoint_url
    try:
        response = client.describe_stream_summary(StreamName=stream)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise ReplayInputError(
                f"stream {stream!r} not found in region {region} (Kinesis at {endpoint}): check "
                "stream.name and stream.region in the topology, --region, and the account"
            ) from exc
        raise
    summary = response["StreamDescriptionSummary"]
    arn_region = summary["StreamARN"].split(":")[3]
    if arn_region and arn_region != region:
        # AWS endpoints are regional; an emulator may answer for any region.
        raise ReplayInputError(
            f"stream {stream!r} is in region {arn_region} ({summary['StreamARN']}), not {region}: "
            f"give --region {arn_region}, or fix stream.region in the topology"
        )
    return StreamFacts(
        stream,
        region,
        int(summary["RetentionPeriodHours"]),
        summary.get("StreamCreationTimestamp"),
        _server_time(response),
        endpoint,
    )


def _server_time(response: Any) -> datetime:
    """The stream's clock from the reply's Date header (to the second), else ours."""
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if header:
        try:
            return parsedate_to_datetime(header).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def tip_time(facts: StreamFacts) -> datetime:
    """The bound `the tip at start`: every record that arrived by the stream's clock now.

    The Date header has whole seconds, so the last moment of that second is taken:
    a record written within a second after the start may be included, none before it
    is left out, whatever our own clock says.
    """
    return facts.server_now + timedelta(milliseconds=999)


def list_shards(client: KinesisClient, stream: str) -> list[ShardInfo]:
    """Every shard ListShards returns (closed ones until they age out of the retention)."""
    shards: list[ShardInfo] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = client.list_shards(**kwargs)
        shards += [ShardInfo.from_api(s) for s in page["Shards"]]
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def oldest_record(client: KinesisClient, stream: str, shard_id: str) -> OldestRecord | None:
    """The oldest record the shard still holds, or None if it holds none (or none was found
    within a few empty pages, which AWS can return before the first record)."""
    iterator: str | None = client.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    for _ in range(_OLDEST_PROBES):
        if not iterator:
            return None
        page = client.get_records(ShardIterator=iterator, Limit=1)
        if page["Records"]:
            record = page["Records"][0]
            return OldestRecord(
                shard_id, record["SequenceNumber"], record["ApproximateArrivalTimestamp"]
            )
        if page.get("MillisBehindLatest", 0) == 0:
            return None
        iterator = page.get("NextShardIterator")
    return None


def check_sequence_available(
    client: KinesisClient, facts: StreamFacts, shard_id: str, sequence: str, option: str
) -> None:
    """Refuse a start before the oldest record the shard still holds (its records are gone).

    Sequence numbers are sparse, so a number below the oldest record is either a
    record Kinesis deleted after the retention, or not a record at all: either way
    the replay cannot start there without silently leaving records out.

    Raises:
        ReplayInputError: naming the oldest record still there and the retention.
    """
    oldest = oldest_record(client, facts.name, shard_id)
    keeps = f"the stream keeps records {facts.retention_hours} h"
    if oldest is None:
        raise ReplayInputError(
            f"{option} {sequence}: {shard_id} holds no records now ({keeps}); the records from "
            f"that sequence number are gone. Use --from-start or --from-time for what is left"
        )
    if int(oldest.sequence_number) > int(sequence):
        raise ReplayInputError(
            f"{option} {sequence}: the oldest record still in {shard_id} is sequence "
            f"{oldest.sequence_number} (arrived {iso(oldest.arrival)}); records before it are "
            f"gone ({keeps}) or the number is not a record of this shard. Replay from "
            f"--from-sequence {oldest.sequence_number}, or --from-start, to take what is left"
        )


def check_time_available(
    client: KinesisClient, facts: StreamFacts, shards: list[ShardInfo], from_time: datetime
) -> None:
    """Refuse --from-time in the future, or so old that Kinesis deleted records after it.

    Raises:
        ReplayInputError: saying which records are gone, since when, and the oldest one left.
    """
    if from_time > facts.server_now + timedelta(seconds=1):
        raise ReplayInputError(
            f"--from-time {iso(from_time)} is in the future (the stream's clock says "
            f"{iso(facts.server_now)})"
        )
    window = lost_window(
        from_time=from_time,
        now=facts.server_now,
        retention_hours=facts.retention_hours,
        created=facts.created,
    )
    if window is None:
        return
    begin, horizon = window
    found = [o for s in shards if (o := oldest_record(client, facts.name, s.shard_id))]
    oldest = min(found, key=lambda o: o.arrival) if found else None
    left = (
        f"the oldest record left arrived {iso(oldest.arrival)} ({oldest.shard_id}, sequence "
        f"{oldest.sequence_number})"
        if oldest
        else "the stream holds no records now"
    )
    created = " (the stream's creation)" if begin != from_time else ""
    raise ReplayInputError(
        f"--from-time {iso(from_time)} is beyond the stream's {facts.retention_hours} h "
        f"retention: records that arrived from {iso(begin)}{created} to {iso(horizon)} are gone; "
        f"{left}. Use --from-start to replay everything still there, or a --from-time after "
        f"{iso(horizon)}"
    )


def open_iterator(client: KinesisClient, stream: str, shard_id: str, start: ShardStart) -> str:
    """A shard iterator at `start`.

    Raises:
        ReplayInputError: Kinesis refuses the position (a sequence number of another shard, a
            malformed one, a time in the future).
    """
    kwargs: dict[str, Any] = {
        "StreamName": stream,
        "ShardId": shard_id,
        "ShardIteratorType": start.iterator_type,
    }
    if start.sequence is not None:
        kwargs["StartingSequenceNumber"] = start.sequence
    if start.time is not None:
        kwargs["Timestamp"] = start.time
    try:
        return str(client.get_shard_iterator(**kwargs)["ShardIterator"])
    except ClientError as exc:
        if _code(exc) in ("InvalidArgumentException", "ResourceNotFoundException"):
            raise ReplayInputError(
                f"Kinesis refuses to start {shard_id} {start.describe()}: {_message(exc)}"
            ) from exc
        raise


class ShardReader:
    """Reads one shard of a plan, page by page, up to its bound.

    `stop_time`: records that arrived later are beyond the bound (inclusive bound).
    `wait(seconds)` sleeps between empty pages and returns True if the replay is
    stopping. An expired iterator (after five minutes of slow applying) is reopened
    after the last record read.
    """

    def __init__(
        self,
        client: KinesisClient,
        stream: str,
        plan: ShardPlan,
        *,
        stop_time: datetime | None,
        wait: Callable[[float], bool],
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self._client = client
        self._stream = stream
        self._plan = plan
        self._stop_time = stop_time
        self._stop_sequence = int(plan.stop_sequence) if plan.stop_sequence else None
        self._wait = wait
        self._limit = page_limit
        self.last_sequence: str | None = None

    def pages(self) -> Iterator[Page]:
        """Pages until the shard's end, the tip, or the bound; stops early if `wait` says so."""
        iterator: str | None = open_iterator(
            self._client, self._stream, self._plan.shard_id, self._plan.start
        )
        while iterator:
            try:
                page = self._client.get_records(ShardIterator=iterator, Limit=self._limit)
            except ClientError as exc:
                if _code(exc) != "ExpiredIteratorException":
                    raise
                iterator = self._reopen()
                continue
            behind = page.get("MillisBehindLatest")
            records, cut = self._within_bound(page["Records"])
            if cut:
                yield Page(records, EndReason.CUT, behind)
                return
            iterator = page.get("NextShardIterator")
            if not iterator:
                yield Page(records, EndReason.ENDED, behind)
                return
            if not records and not page["Records"] and (behind or 0) == 0:
                # Caught up with an open shard: every record of the start is read.
                yield Page(records, EndReason.ENDED, behind)
                return
            yield Page(records, None, behind)
            if not page["Records"] and self._wait(EMPTY_PAGE_WAIT_S):
                return

    def _within_bound(self, raw: list[Any]) -> tuple[list[StreamRecord], bool]:
        records: list[StreamRecord] = []
        for r in raw:
            sequence = r["SequenceNumber"]
            arrival = r["ApproximateArrivalTimestamp"]
            if self._stop_time is not None and arrival > self._stop_time:
                return records, True
            if self._stop_sequence is not None and int(sequence) > self._stop_sequence:
                return records, True
            records.append(
                StreamRecord(self._plan.shard_id, sequence, r["PartitionKey"], arrival, r["Data"])
            )
            self.last_sequence = sequence
            if self._stop_sequence is not None and int(sequence) == self._stop_sequence:
                return records, True
        return records, False

    def _reopen(self) -> str:
        start = (
            ShardStart("AFTER_SEQUENCE_NUMBER", sequence=self.last_sequence)
            if self.last_sequence is not None
            else self._plan.start
        )
        logger.info("iterator of %s expired; reopened %s", self._plan.shard_id, start.describe())
        return open_iterator(self._client, self._stream, self._plan.shard_id, start)
