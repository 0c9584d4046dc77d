"""The Kinesis event a Lambda event source mapping delivers, and the partial batch response.

Shapes as AWS documents them (Powertools' `KinesisStreamEvent` has the same fields):
`data` is base64, `approximateArrivalTimestamp` is epoch seconds as a float, `eventID`
is `<shard id>:<sequence number>`, `eventSourceARN` names the stream.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypedDict


class KinesisPayload(TypedDict):
    """`Records[].kinesis`."""

    kinesisSchemaVersion: str
    partitionKey: str
    sequenceNumber: str
    data: str
    approximateArrivalTimestamp: float


class KinesisEventRecord(TypedDict):
    """One entry of `Records`."""

    kinesis: KinesisPayload
    eventSource: str
    eventVersion: str
    eventID: str
    eventName: str
    invokeIdentityArn: str
    awsRegion: str
    eventSourceARN: str


class KinesisStreamEvent(TypedDict):
    """What Lambda passes to the handler for a Kinesis event source mapping."""

    Records: list[KinesisEventRecord]


class BatchItemFailure(TypedDict):
    """A record Lambda must deliver again (with every later record of the shard)."""

    itemIdentifier: str


class PartialBatchResponse(TypedDict):
    """The handler's answer when the mapping has FunctionResponseTypes=[ReportBatchItemFailures]."""

    batchItemFailures: list[BatchItemFailure]


class EventShapeError(ValueError):
    """The event is not a Kinesis event as Lambda delivers it (a wiring mistake, not a record)."""


class StreamRecord(NamedTuple):
    """One Kinesis record of the event, decoded from base64 (possibly a KPL aggregate)."""

    stream: str
    shard_id: str
    sequence_number: str
    partition_key: str
    arrival_ms: int | None
    data: bytes


def stream_records(event: Mapping[str, Any]) -> list[StreamRecord]:
    """The event's records in delivery order (stream order within the shard).

    Raises:
        EventShapeError: a field is missing or malformed.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise EventShapeError("the event has no Records list")
    return [_record(index, raw) for index, raw in enumerate(records)]


def _record(index: int, raw: Any) -> StreamRecord:
    try:
        payload = raw["kinesis"]
        shard_id, _, event_sequence = str(raw["eventID"]).partition(":")
        sequence = str(payload["sequenceNumber"])
        arn = str(raw["eventSourceARN"])
        data = base64.b64decode(payload["data"], validate=True)
    except (KeyError, TypeError, binascii.Error) as exc:
        raise EventShapeError(f"Records[{index}] is not a Kinesis event record: {exc!r}") from exc
    if event_sequence and event_sequence != sequence:
        raise EventShapeError(f"Records[{index}]: eventID and sequenceNumber disagree")
    stream = stream_name(arn)
    arrival = payload.get("approximateArrivalTimestamp")
    arrival_ms = round(float(arrival) * 1000) if isinstance(arrival, int | float) else None
    return StreamRecord(
        stream, shard_id, sequence, str(payload.get("partitionKey", "")), arrival_ms, data
    )


def stream_name(arn: str) -> str:
    """`orders` for `arn:aws:kinesis:us-east-1:123456789012:stream/orders`.

    Raises:
        EventShapeError: not a Kinesis stream ARN.
    """
    head, sep, name = arn.partition(":stream/")
    if not sep or not head.startswith("arn:") or not name or "/" in name:
        raise EventShapeError(f"{arn!r:.200} is not a Kinesis stream ARN")
    return name


def partial_response(failed_sequence_numbers: Iterable[str]) -> PartialBatchResponse:
    """The response reporting these records (an empty list: the whole batch succeeded)."""
    return {"batchItemFailures": [{"itemIdentifier": s} for s in failed_sequence_numbers]}


def kinesis_event(
    records: Iterable[StreamRecord],
    *,
    region: str = "us-east-1",
    account: str = "123456789012",
    role: str = "arn:aws:iam::123456789012:role/lazyrep-primary",
) -> KinesisStreamEvent:
    """The event Lambda would deliver for these records (tests, the local event source mapping).

    `arrival_ms` None is sent as arrival time 0.
    """
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode("ascii"),
                    "approximateArrivalTimestamp": (r.arrival_ms or 0) / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": role,
                "awsRegion": region,
                "eventSourceARN": f"arn:aws:kinesis:{region}:{account}:stream/{r.stream}",
            }
            for r in records
        ]
    }
