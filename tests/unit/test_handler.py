"""The Lambda handler on events in AWS's exact shape, against DynamoDB and SQS in moto (in-process).

Fixtures in tests/events/ (written by tests/events/regenerate.py, which spells out
what each record holds); exact batchItemFailures, exact table contents, exact letters.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import boto3
import orjson
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator  # type: ignore[import-untyped]
from botocore.exceptions import ClientError
from moto import mock_aws

from binlog.awserrors import Failure
from binlog.deadletter import DeadLetter, MemoryDeadLetterStore, letter_from_document
from binlog.errors import TopologyError
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema
from binlog.version import Version
from lambda_consumer import handler
from lambda_consumer.consumer import Consumer, build_consumer
from lambda_consumer.events import StreamRecord, kinesis_event
from lambda_consumer.settings import ConsumerSettings

EVENTS = Path(__file__).parent.parent / "events"
STREAM = "lambda-stream"
QUEUE = "lazyrep-dead-letters"
TOPOLOGY = f"""
[stream]
name = "{STREAM}"
region = "us-east-1"

[tables.users]
partition_key = {{ name = "user_id", type = "S" }}

[tables.orders]
partition_key = {{ name = "customer_id", type = "S" }}
sort_key = {{ name = "order_no", type = "N" }}

[tables.audit]  # named here, but never created: writes to it fail permanently
partition_key = {{ name = "entry", type = "S" }}
"""
DEAD_LETTER = f"""
[dead_letter]
kind = "sqs"
name = "{QUEUE}"
"""
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


@dataclass
class Context:
    """The attributes of Lambda's context object the handler reads."""

    function_name: str = "lazyrep-primary"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:lazyrep-primary"


class FakeKinesis:
    """ListShards over a fixed shard list (moto's Kinesis is not used: issue 2)."""

    def __init__(self, parents: dict[str, str | None] | None = None) -> None:
        self.parents = parents or {}
        self.calls = 0
        self.error: Exception | None = None

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        start = kwargs.get("ExclusiveStartShardId", "")
        ids = sorted({f"shardId-{n:012d}" for n in range(10)} | set(self.parents))
        shards = [
            {"ShardId": s, **({"ParentShardId": p} if (p := self.parents.get(s)) else {})}
            for s in ids
            if s > start
        ]
        return {"Shards": shards[: kwargs.get("MaxResults", 1000)]}


@dataclass
class Env:
    """The moto account of one test, and the consumer the handler serves with."""

    dynamodb: Any
    sqs: Any
    queue_url: str
    topology: Path
    kinesis: FakeKinesis

    def consumer(self, **overrides: Any) -> Consumer:
        kwargs: dict[str, Any] = {"kinesis": self.kinesis, **overrides}
        settings = ConsumerSettings(str(self.topology), max_workers=4)
        consumer = build_consumer(settings, **kwargs)
        handler.use(consumer)
        return consumer

    def items(self, table: str) -> list[dict[str, Any]]:
        items = self.dynamodb.scan(TableName=table)["Items"]
        return sorted(items, key=lambda i: json.dumps(i, sort_keys=True, default=str))

    def letters(self) -> list[DeadLetter]:
        letters = []
        while True:
            page = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not page.get("Messages"):
                break
            letters += [letter_from_document(m["Body"]) for m in page["Messages"]]
        return sorted(letters, key=lambda x: (int(x.sequence_number), x.subsequence_number))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "users", KeySchema(KeyAttribute("user_id", "S")))
        create_table(
            dynamodb,
            "orders",
            KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N")),
        )
        # A real table the topology does not name: the consumer must never write it.
        create_table(dynamodb, "payroll", KeySchema(KeyAttribute("emp", "S")))
        create_tombstone_table(dynamodb, "lazyrep-tombstones")
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        topology = tmp_path / "topology.toml"
        topology.write_text(TOPOLOGY + DEAD_LETTER)
        yield Env(dynamodb, sqs, url, topology, FakeKinesis())
    handler.use(None)


def load(name: str) -> dict[str, Any]:
    return cast("dict[str, Any]", json.loads((EVENTS / name).read_text()))


def sequences(event: dict[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]


def version(shard: int, sequence: str, sub: int = 0) -> dict[str, bytes]:
    return {"B": Version(shard, int(sequence), sub).encode()}


def emf(stdout: str) -> dict[str, Any]:
    """The metric values of the (one) EMF document printed by the invocation."""
    docs = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    assert len(docs) == 1
    names = [m["Name"] for m in docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LazyReplication"
    # Powertools writes each value as a list of the values added in the invocation.
    return {name: sum(docs[0][name]) for name in names}


# -- event fixtures ---------------------------------------------------------------------------


def test_plain_event_applies_every_record(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the fixture: u1 put and ADD 1, an order, u2 put then deleted (shard 6)
    env.consumer()
    event = load("kinesis_stream_event.json")
    seq = sequences(event)
    # WHEN Lambda invokes the handler with it
    response = handler.handle(event, Context())
    # THEN nothing is reported and the tables hold exactly the result, versioned by position
    assert response == NO_FAILURES
    assert env.items("users") == [
        {
            "user_id": {"S": "u1"},
            "name": {"S": "Ada"},
            "visits": {"N": "2"},
            "_lr_version": version(6, seq[1]),
            "_lr_id": {"S": "fx-add-u1"},
        }
    ]
    assert env.items("orders") == [
        {
            "customer_id": {"S": "u1"},
            "order_no": {"N": "7"},
            "total": {"N": "12.5"},
            "_lr_version": version(6, seq[2]),
            "_lr_id": {"S": "fx-put-order"},
        }
    ]
    assert env.letters() == []
    metrics = emf(capsys.readouterr().out)
    assert metrics["BatchSize"] == 5.0
    assert metrics["RecordsApplied"] == 5.0
    assert metrics["RecordsParked"] == 0.0
    assert metrics["RecordsRetried"] == 0.0
    assert metrics["IteratorAgeMs"] > 0


def test_redelivered_event_changes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the plain event, applied once
    env.consumer()
    event = load("kinesis_stream_event.json")
    handler.handle(event, Context())
    users, orders = env.items("users"), env.items("orders")
    capsys.readouterr()
    # WHEN Lambda delivers it again (at least once)
    response = handler.handle(event, Context())
    # THEN the tables are unchanged and every record is skipped as stale (the delete of the
    # gone u2 runs again, which repairs a crash between its tombstone and the delete, but
    # finds its own tombstone and deletes nothing)
    assert response == NO_FAILURES
    assert (env.items("users"), env.items("orders")) == (users, orders)
    metrics = emf(capsys.readouterr().out)
    assert (metrics["RecordsApplied"], metrics["RecordsSkippedStale"]) == (0.0, 5.0)


def test_poison_event_parks_each_record_with_its_reason(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the poison fixture: valid u1 put, 8 poison records, valid u1 ADD (shard 3)
    env.consumer()
    event = load("kinesis_stream_event_poison.json")
    seq = sequences(event)
    # WHEN the handler runs
    response = handler.handle(event, Context())
    # THEN the batch went on: nothing reported, the valid records around the poison applied
    assert response == NO_FAILURES
    (u1,) = env.items("users")
    assert (u1["visits"], u1["_lr_version"]) == ({"N": "2"}, version(3, seq[9]))
    assert env.items("payroll") == []
    # AND each poison record is in the dead-letter queue, raw, with its reason and position
    letters = env.letters()
    assert [(x.reason, x.sequence_number) for x in letters] == [
        ("not_json", seq[1]),
        ("not_object", seq[2]),
        ("unknown_format", seq[3]),
        ("missing_field", seq[4]),
        ("key_mismatch", seq[5]),
        ("unauthorized_table", seq[6]),
        ("bad_expression", seq[7]),
        ("ResourceNotFoundException", seq[8]),
    ]
    records = event["Records"]
    for x, record in zip(letters, records[1:9], strict=True):
        assert x.data == base64.b64decode(record["kinesis"]["data"])
        assert (x.stream, x.shard_id, x.subsequence_number) == (STREAM, "shardId-000000000003", 0)
        assert x.partition_key == record["kinesis"]["partitionKey"]
        assert x.consumer == "lambda:primary"
        assert x.arrival is not None
        assert round(x.arrival.timestamp() * 1000) == round(
            record["kinesis"]["approximateArrivalTimestamp"] * 1000
        )
    assert "payroll" in letters[5].detail
    metrics = emf(capsys.readouterr().out)
    assert (metrics["RecordsApplied"], metrics["RecordsParked"]) == (2.0, 8.0)


def test_aggregated_event_applies_every_user_record_once(env: Env) -> None:
    # GIVEN a KPL aggregate (u1 put, u1 ADD 1, an order) and a plain u1 ADD 1 after it (shard 1)
    env.consumer()
    event = load("kinesis_stream_event_aggregated.json")
    seq = sequences(event)
    # WHEN the handler runs, and Lambda delivers the batch a second time
    first = handler.handle(event, Context())
    second = handler.handle(event, Context())
    # THEN each user record was applied once, versioned by sequence and subsequence number
    assert first == second == NO_FAILURES
    (u1,) = env.items("users")
    assert (u1["visits"], u1["_lr_version"]) == ({"N": "3"}, version(1, seq[1]))
    (order,) = env.items("orders")
    assert order["_lr_version"] == version(1, seq[0], 2)


# -- retries and dead-letter failures ---------------------------------------------------------


class ThrottledUpdates:
    """A DynamoDB client whose UpdateItem on some keys is throttled (botocore gave up)."""

    def __init__(self, client: Any, users: set[str]) -> None:
        self._client = client
        self.users = users

    def update_item(self, **kwargs: Any) -> Any:
        if kwargs["Key"].get("user_id", {}).get("S") in self.users:
            response: Any = {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(response, "UpdateItem")
        return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def put(envelope_id: str, user: str, visits: int) -> bytes:
    return orjson.dumps(
        {
            "format": 1,
            "id": envelope_id,
            "time": 1,
            "action": "PutItem",
            "table": "users",
            "key": {"user_id": {"S": user}},
            "item": {"user_id": {"S": user}, "visits": {"N": str(visits)}},
        }
    )


def add(envelope_id: str, user: str) -> bytes:
    return orjson.dumps(
        {
            "format": 1,
            "id": envelope_id,
            "time": 1,
            "action": "UpdateItem",
            "table": "users",
            "key": {"user_id": {"S": user}},
            "update": "ADD visits :one",
            "values": {":one": {"N": "1"}},
        }
    )


def records(*payloads: bytes, shard: int = 0, first: int = 1000) -> list[StreamRecord]:
    return [
        StreamRecord(
            STREAM, f"shardId-{shard:012d}", str(first + 10 * n), f"pk-{n}", 1_700_000_000_000, data
        )
        for n, data in enumerate(payloads)
    ]


def visits(env: Env) -> dict[str, str]:
    return {i["user_id"]["S"]: i["visits"]["N"] for i in env.items("users")}


def test_retry_reports_the_first_failed_record_and_holds_that_items_later_records(
    env: Env,
) -> None:
    # GIVEN UpdateItem on u1 throttled beyond botocore's retries
    throttled = ThrottledUpdates(boto3.client("dynamodb", region_name="us-east-1"), {"u1"})
    env.consumer(dynamodb=throttled)
    batch = records(
        put("p1", "u1", 10),
        put("p2", "u2", 20),
        add("a1", "u1"),  # throttled: RETRY
        add("a2", "u2"),
        put("p1b", "u1", 100),  # later record of u1: must not be applied now
        add("a3", "u2"),
        b"poison",
    )
    # WHEN the batch is handled
    response = handler.handle(kinesis_event(batch), Context())
    # THEN the throttled record is reported, u1 stays as before it, u2 got everything,
    # and the poison record after the reported one waits for the redelivery
    assert response == {"batchItemFailures": [{"itemIdentifier": batch[2].sequence_number}]}
    assert visits(env) == {"u1": "10", "u2": "22"}
    assert env.letters() == []
    # WHEN the throttling ends and Lambda delivers again from the reported record
    throttled.users.clear()
    again = handler.handle(kinesis_event(batch[2:]), Context())
    # THEN the table converges to every record applied once, in order, and the poison is parked
    assert again == NO_FAILURES
    assert visits(env) == {"u1": "100", "u2": "22"}
    assert [(x.reason, x.sequence_number) for x in env.letters()] == [
        ("not_json", batch[6].sequence_number)
    ]


def test_dead_letter_write_failing_reports_that_record(env: Env) -> None:
    # GIVEN a dead-letter store that fails for the second poison record
    class Flaky(MemoryDeadLetterStore):
        def park(self, letters: Any) -> list[Failure | None]:
            parked = [x for x in letters if x.sequence_number != "1030"]
            super().park(parked)
            return [
                Failure("ServiceUnavailable", "down", True) if x not in parked else None
                for x in letters
            ]

    store = Flaky()
    env.consumer(dead_letters=store)
    batch = records(put("p1", "u1", 1), b"not json", put("p2", "u2", 2), b"[]", put("p3", "u3", 3))
    # WHEN the batch is handled
    response = handler.handle(kinesis_event(batch), Context())
    # THEN the record whose letter was not written is reported; the others went on
    assert response == {"batchItemFailures": [{"itemIdentifier": "1030"}]}
    assert visits(env) == {"u1": "1", "u2": "2", "u3": "3"}
    assert [(x.reason, x.sequence_number) for x in store.letters] == [("not_json", "1010")]


def test_dead_letter_store_raising_reports_the_record(env: Env) -> None:
    class Broken(MemoryDeadLetterStore):
        def park(self, letters: Any) -> list[Failure | None]:
            raise RuntimeError("bug")

    env.consumer(dead_letters=Broken())
    batch = records(put("p1", "u1", 1), b"not json", put("p2", "u2", 2))
    response = handler.handle(kinesis_event(batch), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "1010"}]}
    assert visits(env) == {"u1": "1", "u2": "2"}


# -- every poison kind ------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "leaf"}
    for _ in range(depth):
        value = {"L": [value]}
    return value


def bad_aggregate() -> bytes:
    """A KPL aggregate with a valid checksum whose user record names a missing partition key."""
    aggregator = RecordAggregator()
    aggregator.add_user_record("pk", put("agg", "u9", 9))
    _, _, data = aggregator.clear_and_get().get_contents()
    magic, message = data[:4], bytearray(data[4:-16])
    # The record's partition_key_index (field 1, varint 0) directly follows its tag byte 0x08.
    message[message.index(b"\x08\x00") + 1] = 3
    body = bytes(message)
    return bytes(magic + body + hashlib.md5(body).digest())


def document(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "format": 1,
        "id": "poison",
        "time": 1,
        "action": "PutItem",
        "table": "users",
        "key": {"user_id": {"S": "u5"}},
        "item": {"user_id": {"S": "u5"}},
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


POISON = {
    "not_json": b"\x80\x81",
    "not_object": b'"a string"',
    "unknown_format": document(format=2),
    "missing_field": document(action=None),
    "bad_field": document(action="BatchWriteItem"),
    "bad_value": document(item={"user_id": {"S": "u5"}, "n": {"N": "one"}}),
    "key_mismatch": document(key={"user_id": {"S": "u5"}, "extra": {"S": "x"}}),
    "item_too_large": document(item={"user_id": {"S": "u5"}, "blob": {"S": "x" * 410_000}}),
    "too_deep": document(item={"user_id": {"S": "u5"}, "deep": nested(40)}),
    "bad_expression": document(condition="attribute_exists(#missing)"),
    "unauthorized_table": document(table="payroll", key={"emp": {"S": "e"}}, item=None),
    "ResourceNotFoundException": document(
        table="audit", key={"entry": {"S": "a"}}, item={"entry": {"S": "a"}}
    ),
    "bad_aggregate": bad_aggregate(),
    "record_too_large": b" " * (1024 * 1024 + 1),
}


@pytest.mark.parametrize("reason", sorted(POISON))
def test_every_poison_kind_is_parked_and_the_records_around_it_applied(
    env: Env, reason: str
) -> None:
    # GIVEN a poison record between two valid records of one item
    store = MemoryDeadLetterStore()
    consumer = env.consumer(dead_letters=store)
    batch = records(put("p1", "u1", 1), POISON[reason], add("a1", "u1"))
    # WHEN the batch is processed (the core: a 1 MiB + 1 record cannot travel in an event)
    report = consumer.process(batch)
    # THEN the poison is parked with its reason, raw, and both valid records are applied
    assert report.response() == NO_FAILURES
    assert [(x.reason, x.sequence_number, x.data) for x in store.letters] == [
        (reason, "1010", POISON[reason])
    ]
    assert visits(env) == {"u1": "2"}
    assert env.items("payroll") == []


# -- shards, streams and configuration ----------------------------------------------------


def test_shard_lineage_is_checked_once_per_shard(env: Env) -> None:
    env.kinesis.parents = {"shardId-000000000004": "shardId-000000000001"}
    env.consumer()
    for n in range(3):
        batch = records(put(f"p{n}", "u1", n), shard=4, first=2000 + 100 * n)
        assert handler.handle(kinesis_event(batch), Context()) == NO_FAILURES
    assert env.kinesis.calls == 1
    assert visits(env) == {"u1": "2"}


def test_child_numbered_below_its_parent_stops_the_batch(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN shard 2 claiming shard 5 as its parent (versions would order them wrongly)
    env.kinesis.parents = {"shardId-000000000002": "shardId-000000000005"}
    env.consumer()
    batch = records(put("p1", "u1", 1), b"not json", shard=2)
    # WHEN its batch arrives
    response = handler.handle(kinesis_event(batch), Context())
    # THEN nothing is applied or parked, the first record is reported, and it says why
    assert response == {"batchItemFailures": [{"itemIdentifier": "1000"}]}
    assert env.items("users") == []
    assert env.letters() == []
    assert "shardId-000000000002 stopped" in caplog.text


def test_lineage_lookup_failing_reports_the_batch_and_is_tried_again(env: Env) -> None:
    env.kinesis.error = ClientError(
        {"Error": {"Code": "LimitExceededException", "Message": "slow down"}}, "ListShards"
    )
    env.consumer()
    batch = records(put("p1", "u1", 1))
    assert handler.handle(kinesis_event(batch), Context()) == {
        "batchItemFailures": [{"itemIdentifier": "1000"}]
    }
    env.kinesis.error = None
    assert handler.handle(kinesis_event(batch), Context()) == NO_FAILURES
    assert visits(env) == {"u1": "1"}


def test_records_of_another_stream_are_not_applied(env: Env) -> None:
    env.consumer()
    batch = [r._replace(stream="someone-elses") for r in records(put("p1", "u1", 1))]
    response = handler.handle(kinesis_event(batch), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "1000"}]}
    assert env.items("users") == []


def test_handler_builds_its_consumer_from_the_environment(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN only environment variables, as in a Lambda function's configuration
    monkeypatch.setenv("LAZYREP_TOPOLOGY", str(env.topology))
    monkeypatch.setenv("LAZYREP_CHECK_LINEAGE", "false")
    handler.use(None)
    batch = records(put("p1", "u1", 1), b"not json")
    # WHEN two invocations arrive
    assert handler.handle(kinesis_event(batch), Context()) == NO_FAILURES
    consumer = handler.current_consumer()
    assert handler.handle(kinesis_event(batch), Context()) == NO_FAILURES
    # THEN one consumer served both, writing the table and the topology's queue
    assert handler.current_consumer() is consumer
    assert visits(env) == {"u1": "1"}
    assert [x.reason for x in env.letters()] == ["not_json", "not_json"]


def test_topology_without_dead_letter_store_is_refused(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "no-dlq.toml"
    path.write_text(TOPOLOGY)
    with pytest.raises(TopologyError, match="dead_letter: the Lambda consumer needs"):
        build_consumer(ConsumerSettings(str(path)))


def test_concurrent_invocations_publish_their_own_metrics(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN four shards' batches of 1, 2, 3 and 4 records, invoked at once (a local mapping)
    env.consumer()
    batches = [
        records(*(put(f"s{shard}-{n}", f"u{shard}-{n}", n) for n in range(shard)), shard=shard)
        for shard in range(1, 5)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda b: handler.handle(kinesis_event(b), Context()), batches))
    # THEN each invocation printed one EMF document with its own counts
    assert responses == [NO_FAILURES] * 4
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert sorted((d["BatchSize"], d["RecordsApplied"]) for d in docs) == [
        ([float(n)], [float(n)]) for n in range(1, 5)
    ]


def test_malformed_event_fails_the_invocation(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.consumer()
    with pytest.raises(ValueError, match="no Records list"):
        handler.handle({"Records": None}, Context())
    # AND the invocation still published its batch size
    assert emf(capsys.readouterr().out) == {"BatchSize": 0.0}
