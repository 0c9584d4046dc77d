"""The demo's rogue writer: raw boto3 `put_records` past the SDK's checks, as a buggy
producer in another language could write. Every consumer must park each record in the
dead-letter store with the reason given here, and carry on (DESIGN invariant 4)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from binlog.deadletter import UNAUTHORIZED_TABLE
from binlog.envelope import FORMAT_VERSION
from binlog.errors import Reason

ROGUE_ORIGIN = "demo-rogue-writer"


class RogueRecord(NamedTuple):
    """One invalid record, and why consumers must refuse it."""

    what: str
    reason: str
    data: bytes
    partition_key: str


class RogueResult(NamedTuple):
    """Where a rogue record landed."""

    record: RogueRecord
    shard_id: str
    sequence_number: str


def _doc(table: str, key: Mapping[str, Any], **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "id": f"rogue-{uuid.uuid4().hex}",
        "time": 0,
        "action": "PutItem",
        "table": table,
        "key": dict(key),
        "origin": ROGUE_ORIGIN,
    }
    doc.update(fields)
    return orjson.dumps(doc)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(depth):
        value = {"M": {"a": value}}
    return value


def rogue_records() -> list[RogueRecord]:
    """The invalid records: garbled bytes, an unknown table, wrong types, too deep, too large."""
    user = {"user_id": {"S": "rogue-user"}}
    return [
        RogueRecord("garbled bytes", Reason.NOT_JSON.value, b"\x8b\x00garbled\xff\xfe", "rogue-1"),
        RogueRecord(
            "a table outside the topology",
            UNAUTHORIZED_TABLE,
            _doc("payments", {"id": {"S": "p1"}}, item={"id": {"S": "p1"}}),
            "rogue-2",
        ),
        RogueRecord(
            "a key of the wrong type",
            Reason.KEY_MISMATCH.value,
            _doc("users", {"user_id": {"N": "7"}}, item={"user_id": {"N": "7"}}),
            "rogue-3",
        ),
        RogueRecord(
            "a number that is not one",
            Reason.BAD_VALUE.value,
            _doc("users", user, item={**user, "score": {"N": "twelve"}}),
            "rogue-4",
        ),
        RogueRecord(
            "an item nested 40 levels deep",
            Reason.TOO_DEEP.value,
            _doc("users", user, item={**user, "deep": _nested(40)}),
            "rogue-5",
        ),
        RogueRecord(
            "an item over 400 KB",
            Reason.ITEM_TOO_LARGE.value,
            _doc("users", user, item={**user, "blob": {"S": "x" * 420_000}}),
            "rogue-6",
        ),
    ]


def write_rogue_records(kinesis: Any, stream: str) -> list[RogueResult]:
    """Send the rogue records with one raw PutRecords (retrying the ones refused).

    Raises:
        RuntimeError: Kinesis kept refusing some of them.
    """
    pending = rogue_records()
    landed: list[RogueResult] = []
    for _ in range(10):
        reply = kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
        )
        retry = []
        for record, entry in zip(pending, reply["Records"], strict=True):
            if "SequenceNumber" in entry:
                landed.append(RogueResult(record, entry["ShardId"], entry["SequenceNumber"]))
            else:
                retry.append(record)
        pending = retry
        if not pending:
            return landed
    raise RuntimeError(f"Kinesis refused {len(pending)} rogue records ten times")
