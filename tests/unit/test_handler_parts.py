"""The Lambda consumer's pure parts: event shape, KPL deaggregation, settings, shard lineage."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator  # type: ignore[import-untyped]

from binlog.version import LineageError
from lambda_consumer.aggregation import AggregateError, UserRecord, deaggregate
from lambda_consumer.events import (
    EventShapeError,
    StreamRecord,
    kinesis_event,
    partial_response,
    stream_name,
    stream_records,
)
from lambda_consumer.lineage import ShardLineage, ShardNotFoundError
from lambda_consumer.settings import ConsumerSettings

EVENTS = Path(__file__).parent.parent / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


# -- event shape ------------------------------------------------------------------------------


def test_event_records_are_read_as_lambda_delivers_them() -> None:
    # GIVEN the plain fixture, in AWS's documented shape
    event = load("kinesis_stream_event.json")
    # WHEN it is read
    records = stream_records(event)
    # THEN each record has its stream, shard, sequence number, arrival (ms) and raw data
    assert len(records) == 5
    first = records[0]
    assert first == StreamRecord(
        "lambda-stream",
        "shardId-000000000006",
        "49590338271490256608559692538361571095921575989136588898",
        "pk-0",
        1545084650987,
        base64.b64decode(event["Records"][0]["kinesis"]["data"]),
    )
    assert [r.arrival_ms for r in records] == [1545084650987 + n for n in range(5)]


def test_event_built_from_records_reads_back_the_same() -> None:
    records = stream_records(load("kinesis_stream_event_poison.json"))
    assert stream_records(kinesis_event(records)) == records
    assert kinesis_event(records) == load("kinesis_stream_event_poison.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("Records"), "no Records list"),
        (lambda e: e["Records"][0].pop("kinesis"), r"Records\[0\] is not a Kinesis event record"),
        (lambda e: e["Records"][0]["kinesis"].update(data="not base64!"), "not a Kinesis event"),
        (lambda e: e["Records"][0].update(eventID="shardId-000000000006:1"), "disagree"),
        (lambda e: e["Records"][0].update(eventSourceARN="arn:aws:sqs:q"), "not a Kinesis stream"),
    ],
)
def test_malformed_events_are_refused(mutate: Any, message: str) -> None:
    event = load("kinesis_stream_event.json")
    mutate(event)
    with pytest.raises(EventShapeError, match=message):
        stream_records(event)


def test_stream_name_from_arn() -> None:
    assert stream_name("arn:aws:kinesis:us-east-1:123456789012:stream/orders") == "orders"
    assert stream_name("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b_c-d") == "a.b_c-d"


def test_partial_response_shape() -> None:
    assert partial_response([]) == {"batchItemFailures": []}
    assert partial_response(["42"]) == {"batchItemFailures": [{"itemIdentifier": "42"}]}


# -- KPL aggregation --------------------------------------------------------------------------


def aggregate(*users: tuple[str, bytes]) -> bytes:
    aggregator = RecordAggregator()
    for key, data in users:
        aggregator.add_user_record(key, data)
    _, _, data = aggregator.clear_and_get().get_contents()
    return bytes(data)


def test_aggregate_gives_each_user_record_its_subsequence_number() -> None:
    data = aggregate(("a", b'{"x":1}'), ("b", b'{"x":2}'), ("a", b""))
    assert deaggregate(data) == [
        UserRecord("a", b'{"x":1}', 0),
        UserRecord("b", b'{"x":2}', 1),
        UserRecord("a", b"", 2),
    ]


def test_fixture_aggregate_holds_three_records() -> None:
    record = stream_records(load("kinesis_stream_event_aggregated.json"))[0]
    users = deaggregate(record.data)
    assert users is not None
    assert [json.loads(u.data)["id"] for u in users] == ["fx-put-u1", "fx-add-u1", "fx-put-order"]


@pytest.mark.parametrize(
    "data",
    [b'{"format":1}', b"", b"\xf3\x89\x9a\xc2", b"\xf3\x89\x9a\xc2" + b"x" * 16],
)
def test_plain_records_are_not_aggregates(data: bytes) -> None:
    assert deaggregate(data) is None


def test_aggregate_with_a_wrong_checksum_is_a_plain_record() -> None:
    # As the KPL: the magic may start ordinary data by chance; the MD5 decides.
    data = aggregate(("a", b"x"))
    assert deaggregate(data[:-1] + bytes([data[-1] ^ 1])) is None


def test_aggregate_naming_a_missing_partition_key_is_refused() -> None:
    # GIVEN an aggregate (valid checksum) whose record uses partition key index 1 of 1 key
    data = aggregate(("a", b"x"))
    magic, message = data[:4], bytearray(data[4:-16])
    # The record's first field (partition_key_index, varint 0) directly follows its tag 0x08.
    position = message.index(b"\x08\x00")
    message[position + 1] = 1
    body = bytes(message)
    tampered = magic + body + hashlib.md5(body).digest()
    # THEN deaggregation refuses it instead of dropping the record
    with pytest.raises(AggregateError, match="names partition key 1 of 1"):
        deaggregate(tampered)


# -- settings ---------------------------------------------------------------------------------


def test_settings_come_from_the_environment() -> None:
    env = {
        "LAZYREP_TOPOLOGY": "/var/task/topology.toml",
        "LAZYREP_CONSUMER_NAME": "lambda:blue",
        "LAZYREP_MAX_WORKERS": "8",
        "LAZYREP_DYNAMODB_MAX_ATTEMPTS": "5",
        "LAZYREP_CHECK_LINEAGE": "false",
    }
    assert ConsumerSettings.resolve(environ=env) == ConsumerSettings(
        "/var/task/topology.toml", "lambda:blue", 8, 5, check_lineage=False
    )


def test_explicit_settings_win_over_the_environment() -> None:
    env = {"LAZYREP_TOPOLOGY": "/env.toml", "LAZYREP_MAX_WORKERS": "8"}
    settings = ConsumerSettings.resolve(
        topology_path="/arg.toml", max_workers=2, check_lineage=False, environ=env
    )
    assert settings == ConsumerSettings("/arg.toml", max_workers=2, check_lineage=False)


def test_settings_default() -> None:
    assert ConsumerSettings.resolve(environ={"LAZYREP_TOPOLOGY": "t.toml"}) == ConsumerSettings(
        "t.toml", "lambda:primary", 16, 3, check_lineage=True
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "topology_path .or LAZYREP_TOPOLOGY. is required"),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_MAX_WORKERS": "many"}, "LAZYREP_MAX_WORKERS="),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_MAX_WORKERS": "0"}, "max_workers must be between"),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_DYNAMODB_MAX_ATTEMPTS": "99"}, "dynamodb_max_att"),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_CHECK_LINEAGE": "maybe"}, "not true or false"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConsumerSettings.resolve(environ=env)


# -- shard lineage ----------------------------------------------------------------------------


class Shards:
    """ListShards over a fixed list, paged by 2 when asked for everything."""

    def __init__(self, shards: list[dict[str, str]], *, honour_start: bool = True) -> None:
        self.shards = shards
        self.honour_start = honour_start
        self.requests: list[dict[str, Any]] = []

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        start = kwargs.get("ExclusiveStartShardId", "") if self.honour_start else ""
        offset = int(kwargs["NextToken"]) if "NextToken" in kwargs else 0
        after = [s for s in self.shards if s["ShardId"] > start]
        page = after[offset : offset + min(kwargs.get("MaxResults", 2), 2)]
        answer: dict[str, Any] = {"Shards": page}
        if offset + 2 < len(after):
            answer["NextToken"] = str(offset + 2)
        return answer


def shard(n: int, parent: int | None = None, adjacent: int | None = None) -> dict[str, str]:
    entry = {"ShardId": f"shardId-{n:012d}"}
    if parent is not None:
        entry["ParentShardId"] = f"shardId-{parent:012d}"
    if adjacent is not None:
        entry["AdjacentParentShardId"] = f"shardId-{adjacent:012d}"
    return entry


def test_lineage_is_looked_up_once_with_one_call() -> None:
    # GIVEN a merged shard 3 of parents 0 and 1
    kinesis = Shards([shard(0), shard(1), shard(2), shard(3, 0, 1)])
    lineage = ShardLineage(kinesis)
    # WHEN it is verified twice
    lineage.verify("s", "shardId-000000000003")
    lineage.verify("s", "shardId-000000000003")
    # THEN one ListShards call, starting just before it, was enough
    assert kinesis.requests == [
        {"StreamName": "s", "MaxResults": 1, "ExclusiveStartShardId": "shardId-000000000002"}
    ]


def test_lineage_pages_through_every_shard_if_the_first_call_misses() -> None:
    # GIVEN a ListShards that ignores ExclusiveStartShardId (as some emulators might)
    kinesis = Shards([shard(0), shard(5), shard(7), shard(9), shard(11, 9)], honour_start=False)
    # WHEN shard 11 is verified
    ShardLineage(kinesis).verify("s", "shardId-000000000011")
    # THEN the one-shard call missed it and every page was read
    assert [r.get("NextToken") for r in kinesis.requests] == [None, None, "2", "4"]


def test_child_numbered_below_its_parent_is_refused() -> None:
    kinesis = Shards([shard(2, 5), shard(5)])
    lineage = ShardLineage(kinesis)
    with pytest.raises(LineageError, match="child of shardId-000000000005"):
        lineage.verify("s", "shardId-000000000002")
    with pytest.raises(LineageError):  # not cached: refused every time
        lineage.verify("s", "shardId-000000000002")


def test_unlisted_shard_is_reported() -> None:
    with pytest.raises(ShardNotFoundError, match="shardId-000000000004"):
        ShardLineage(Shards([shard(0)])).verify("s", "shardId-000000000004")
