"""KPL aggregation: one Kinesis record carrying many user records.

The KPL packs user records as magic bytes + protobuf `AggregatedRecord` + MD5 of the
protobuf. aws-kinesis-agg's deaggregator prints and drops user records it cannot
unpack, which would lose them silently, so the message is parsed here with its
generated protobuf class and every inconsistency raised, letting the consumer park
the whole aggregate. Bytes without the magic, or whose MD5 does not match, are an
ordinary record (what the KPL's own deaggregation does).
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

# The deaggregator module puts its own directory on sys.path, which its generated
# protobuf modules need to import each other; importing it first makes them importable.
import aws_kinesis_agg  # type: ignore[import-untyped]
import aws_kinesis_agg.deaggregator  # type: ignore[import-untyped]
from aws_kinesis_agg import messages_pb2
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

_MAGIC: bytes = aws_kinesis_agg.MAGIC
_DIGEST_SIZE: int = aws_kinesis_agg.DIGEST_SIZE


class AggregateError(ValueError):
    """The record has the KPL's magic and checksum, but its contents are inconsistent."""


class UserRecord(NamedTuple):
    """One user record: its partition key and data; `subsequence_number` is its index."""

    partition_key: str
    data: bytes
    subsequence_number: int


def deaggregate(data: bytes) -> list[UserRecord] | None:
    """The user records of a KPL aggregate, or None if `data` is not one.

    Raises:
        AggregateError: a partition key index out of range, or an aggregate of no records.
    """
    if len(data) <= len(_MAGIC) + _DIGEST_SIZE or not data.startswith(_MAGIC):
        return None
    message, digest = data[len(_MAGIC) : -_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.md5(message, usedforsecurity=False).digest() != digest:
        return None
    aggregate: Any = messages_pb2.AggregatedRecord()
    try:
        aggregate.ParseFromString(message)
    except DecodeError:
        return None
    keys = list(aggregate.partition_key_table)
    records: list[UserRecord] = []
    for index, record in enumerate(aggregate.records):
        if not 0 <= record.partition_key_index < len(keys):
            raise AggregateError(
                f"user record {index} names partition key {record.partition_key_index} "
                f"of {len(keys)}"
            )
        records.append(UserRecord(keys[record.partition_key_index], bytes(record.data), index))
    if not records:
        raise AggregateError("a KPL aggregate of no user records")
    return records
