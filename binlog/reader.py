"""Read a stream from the trim horizon to its tip, shard by shard (tests, demo, checks).

Parents are read before their children so per-item order survives reshards. This
is a simple reader for bounded reads; the lazy path reads through the KCL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from types_boto3_kinesis import KinesisClient
    from types_boto3_kinesis.type_defs import ShardTypeDef


class StreamRecord(NamedTuple):
    """One record as read: where it sits and what it holds."""

    shard_id: str
    sequence_number: str
    partition_key: str
    arrival: datetime
    data: bytes


def shards_in_lineage_order(client: KinesisClient, stream: str) -> list[ShardTypeDef]:
    """Every shard of the stream, each after its parents."""
    shards: list[ShardTypeDef] = []
    kwargs: dict[str, str] = {"StreamName": stream}
    while True:
        page = client.list_shards(**kwargs)  # type: ignore[arg-type]
        shards += page["Shards"]
        token = page.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    by_id = {s["ShardId"]: s for s in shards}
    ordered: list[ShardTypeDef] = []
    seen: set[str] = set()

    def visit(shard: ShardTypeDef) -> None:
        if shard["ShardId"] in seen:
            return
        seen.add(shard["ShardId"])
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent and parent in by_id:
                visit(by_id[parent])
        ordered.append(shard)

    for shard in shards:
        visit(shard)
    return ordered


def read_shard(
    client: KinesisClient, stream: str, shard_id: str, *, limit: int = 10_000
) -> Iterator[StreamRecord]:
    """Records of one shard from the trim horizon until the tip (or the shard's end)."""
    iterator: str | None = client.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=limit)
        for r in page["Records"]:
            yield StreamRecord(
                shard_id,
                r["SequenceNumber"],
                r["PartitionKey"],
                r["ApproximateArrivalTimestamp"],
                r["Data"],
            )
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            return
        iterator = page.get("NextShardIterator")


def read_stream(client: KinesisClient, stream: str) -> list[StreamRecord]:
    """Every record of the stream, shard by shard in lineage order."""
    return [
        record
        for shard in shards_in_lineage_order(client, stream)
        for record in read_shard(client, stream, shard["ShardId"])
    ]
