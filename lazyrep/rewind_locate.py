"""`lazyrep rewind`: finding the records in the shard (Kinesis reads only).

The KCL resumes a shard AFTER its checkpoint: it opens an AT_SEQUENCE_NUMBER iterator
at the checkpoint and drops every record whose (sequence, subsequence) is <= the
checkpoint (ProcessTask.filterAndGetMaxExtendedSequenceNumber). So to apply record N
again the checkpoint must be the record just before N; Kinesis cannot read backwards,
so that record is found by reading forward from AT_TIMESTAMP windows that end at N's
arrival and double (1 s, 2 s, 4 s, ...) until one holds an earlier record. When N is
the oldest record still in the shard, the checkpoint is TRIM_HORIZON.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from binlog.awserrors import classify
from lazyrep.errors_cli import CliError

TRIM_HORIZON = "TRIM_HORIZON"
MAX_EMPTY_PAGES = 5
PAGE_LIMIT = 1000


class Found(NamedTuple):
    """A record's position and arrival."""

    sequence: str
    arrival: datetime


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iterator(kinesis: Any, stream: str, shard_id: str, **position: Any) -> str:
    try:
        return str(
            kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)[
                "ShardIterator"
            ]
        )
    except ClientError as exc:
        failure = classify(exc)
        if failure.code == "InvalidArgumentException" and "StartingSequenceNumber" in position:
            raise CliError(
                f"sequence number {position['StartingSequenceNumber']} is not in shard "
                f"{shard_id} of stream {stream} ({failure.message})"
            ) from exc
        raise


def _pages(kinesis: Any, iterator: str | None, limit: int = PAGE_LIMIT) -> Any:
    """Records page by page until the tip (a few empty pages behind the tip are skipped)."""
    empty = 0
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=limit)
        records = page["Records"]
        if records:
            empty = 0
            yield records
        else:
            empty += 1
            if not page.get("MillisBehindLatest") or empty >= MAX_EMPTY_PAGES:
                return
        iterator = page.get("NextShardIterator")


def first_record(kinesis: Any, stream: str, shard_id: str, **position: Any) -> Found | None:
    """The first record from an iterator position, or None up to the tip."""
    iterator = _iterator(kinesis, stream, shard_id, **position)
    for records in _pages(kinesis, iterator, limit=1):
        record = records[0]
        return Found(record["SequenceNumber"], record["ApproximateArrivalTimestamp"])
    return None


def oldest_record(kinesis: Any, stream: str, shard_id: str) -> Found | None:
    """The oldest record still in the shard (at its trim horizon)."""
    return first_record(kinesis, stream, shard_id, ShardIteratorType="TRIM_HORIZON")


def record_at_sequence(kinesis: Any, stream: str, shard_id: str, sequence: str) -> Found:
    """Record `sequence` of the shard.

    Raises:
        CliError: it is not a record of this shard, or has aged out of the stream.
    """
    found = first_record(
        kinesis,
        stream,
        shard_id,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=sequence,
    )
    if found is not None and int(found.sequence) == int(sequence):
        return found
    oldest = oldest_record(kinesis, stream, shard_id)
    if oldest is not None and int(sequence) < int(oldest.sequence):
        raise CliError(
            f"sequence number {sequence} has aged out of shard {shard_id}: the oldest record "
            f"still there is {oldest.sequence} (arrived {_stamp(oldest.arrival)}); records "
            "before it are gone"
        )
    after = f" (the next record after it is {found.sequence})" if found else ""
    raise CliError(f"sequence number {sequence} is not a record of shard {shard_id}{after}")


def record_at_time(
    kinesis: Any,
    stream: str,
    shard_id: str,
    when: datetime,
    *,
    retention_hours: float,
    now: datetime,
) -> Found:
    """The first record of the shard that arrived at or after `when`.

    Raises:
        CliError: `when` is in the future or beyond the stream's retention (naming
            what is gone), or nothing arrived since.
    """
    if when > now:
        raise CliError(f"--to-time {_stamp(when)} is in the future (now {_stamp(now)})")
    horizon = now - timedelta(hours=retention_hours)
    if when < horizon:
        oldest = oldest_record(kinesis, stream, shard_id)
        still = (
            f"the oldest record still in shard {shard_id} is {oldest.sequence}, arrived "
            f"{_stamp(oldest.arrival)}"
            if oldest
            else f"shard {shard_id} holds no records"
        )
        raise CliError(
            f"--to-time {_stamp(when)} is beyond the stream's {retention_hours:g} h retention: "
            f"records that arrived before about {_stamp(horizon)} are gone; {still}"
        )
    found = first_record(
        kinesis, stream, shard_id, ShardIteratorType="AT_TIMESTAMP", Timestamp=when
    )
    if found is None:
        raise CliError(
            f"no record of shard {shard_id} arrived at or after {_stamp(when)}: "
            "nothing to apply again"
        )
    return found


def checkpoint_before(
    kinesis: Any, stream: str, shard_id: str, target: Found, *, retention_hours: float
) -> str:
    """The sequence number of the record just before `target`, or TRIM_HORIZON if none."""
    target_n = int(target.sequence)
    oldest = oldest_record(kinesis, stream, shard_id)
    if oldest is None or int(oldest.sequence) >= target_n:
        return TRIM_HORIZON
    window = timedelta(seconds=1)
    limit = timedelta(hours=retention_hours)
    while True:
        start = target.arrival - window
        iterator: str | None = _iterator(
            kinesis, stream, shard_id, ShardIteratorType="AT_TIMESTAMP", Timestamp=start
        )
        if window > limit:  # the window reaches past retention: read from the trim horizon
            iterator = _iterator(kinesis, stream, shard_id, ShardIteratorType="TRIM_HORIZON")
        previous: str | None = None
        for records in _pages(kinesis, iterator):
            done = False
            for record in records:
                if int(record["SequenceNumber"]) >= target_n:
                    done = True
                    break
                previous = record["SequenceNumber"]
            if done:
                break
        if previous is not None:
            return previous
        if window > limit:
            return TRIM_HORIZON
        window *= 2
