"""The handler over the wire: records from kinesalite, DynamoDB and SQS in the moto server.

DynamoDB is reached through the fault proxy, so a throttle is a real HTTP answer that
botocore gives up on (attempts set to 1), exactly as in AWS after the retries ran out.
Shard lineage is checked against kinesalite's ListShards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from binlog.clients import client_config
from binlog.deadletter import DeadLetter, letter_from_document
from binlog.reader import read_stream
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema
from binlog.version import Version
from emulators.faultproxy import Fault, FaultProxy, Rule
from emulators.stack import LocalStack
from lambda_consumer import handler
from lambda_consumer.consumer import build_consumer
from lambda_consumer.events import KinesisStreamEvent, StreamRecord, kinesis_event
from lambda_consumer.settings import ConsumerSettings
from producer import Producer, ProducerConfig

pytestmark = pytest.mark.wire

NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


@dataclass
class Wire:
    """One test's stream, tables, queue and fault proxy on the shared local stack."""

    stream: str
    table: str
    topology: Path
    dynamodb: Any
    kinesis: Any
    sqs: Any
    queue_url: str
    proxy: FaultProxy

    def events(self) -> list[StreamRecord]:
        return [
            StreamRecord(
                self.stream,
                r.shard_id,
                r.sequence_number,
                r.partition_key,
                round(r.arrival.timestamp() * 1000),
                r.data,
            )
            for r in read_stream(self.kinesis, self.stream)
        ]

    def items(self) -> dict[str, dict[str, Any]]:
        items = self.dynamodb.scan(TableName=self.table, ConsistentRead=True)["Items"]
        return {item["id"]["S"]: item for item in items}

    def letters(self) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        while True:
            page = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not page.get("Messages"):
                return letters
            letters += [letter_from_document(m["Body"]) for m in page["Messages"]]


@pytest.fixture
def wire(stack_env: LocalStack, tmp_path: Path) -> Iterator[Wire]:
    suffix = uuid.uuid4().hex[:8]
    stream, table, queue = f"binlog-{suffix}", f"items-{suffix}", f"dead-{suffix}"
    tombstones = f"tombstones-{suffix}"
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    create_table(dynamodb, table, KeySchema(KeyAttribute("id", "S")))
    create_tombstone_table(dynamodb, tombstones)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    topology = tmp_path / "topology.toml"
    topology.write_text(
        f"""
[stream]
name = "{stream}"
region = "us-east-1"
shards = 1

[tables."{table}"]
partition_key = {{ name = "id", type = "S" }}

[dead_letter]
kind = "sqs"
name = "{queue}"

[applier]
tombstone_table = "{tombstones}"
"""
    )
    with FaultProxy(upstream=stack_env.endpoints.dynamodb, seed=7) as proxy:
        yield Wire(stream, table, topology, dynamodb, kinesis, sqs, url, proxy)
    handler.use(None)


def use_consumer(wire: Wire) -> None:
    """The handler's consumer: DynamoDB through the proxy, one attempt a call."""
    proxied = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=wire.proxy.url,
        config=client_config(max_attempts=1),
    )
    settings = ConsumerSettings(str(wire.topology), max_workers=4, dynamodb_max_attempts=1)
    handler.use(build_consumer(settings, dynamodb=proxied))


def handle(records: list[StreamRecord]) -> Any:
    event: KinesisStreamEvent = kinesis_event(records)
    return handler.handle(event, None)


def test_throttled_item_is_reported_from_its_first_failure_and_converges(wire: Wire) -> None:
    # GIVEN records of items a, b, c in the stream, and a poison record among them
    with Producer(wire.topology, config=ProducerConfig(linger_ms=0)) as producer:
        add = "ADD n :one"
        one = {":one": 1}
        producer.put_item(wire.table, {"id": "a", "n": 1}).result(10)
        producer.put_item(wire.table, {"id": "b", "v": 1}).result(10)
        # a's first ADD will be throttled; its second follows it
        producer.update_item(wire.table, {"id": "a"}, add, values=one).result(10)
        producer.put_item(wire.table, {"id": "b", "v": 2}).result(10)
        producer.update_item(wire.table, {"id": "a"}, add, values=one).result(10)
    wire.kinesis.put_record(StreamName=wire.stream, PartitionKey="x", Data=b"\x00poison")
    with Producer(wire.topology, config=ProducerConfig(linger_ms=0)) as producer:
        producer.put_item(wire.table, {"id": "c"}).result(10)
    records = wire.events()
    assert len(records) == 7
    # AND DynamoDB throttling every UpdateItem
    use_consumer(wire)
    wire.proxy.set_rules([Rule(Fault.THROTTLE, "UpdateItem")])
    # WHEN the batch is handled
    response = handle(records)
    # THEN a's first ADD is reported; a holds only its put; b and c were applied
    assert response == {"batchItemFailures": [{"itemIdentifier": records[2].sequence_number}]}
    assert wire.proxy.stats.faults(Fault.THROTTLE, "UpdateItem") == 1  # a's second: never sent
    items = wire.items()
    assert {k: (v.get("n"), v.get("v")) for k, v in items.items()} == {
        "a": ({"N": "1"}, None),
        "b": (None, {"N": "2"}),
        "c": (None, None),
    }
    # AND the poison record, after the reported one, is left for the redelivery to park
    assert wire.letters() == []
    # WHEN the throttling ends and Lambda delivers again from the reported record
    wire.proxy.clear()
    again = handle(records[2:])
    # THEN every record is applied once, in order: a = 1 + 1 + 1, the rest unchanged
    assert again == NO_FAILURES
    shard = records[0].shard_id
    final = wire.items()
    assert final["a"] == {
        "id": {"S": "a"},
        "n": {"N": "3"},
        "_lr_version": {"B": Version(int(shard[-12:]), int(records[4].sequence_number)).encode()},
        "_lr_id": final["a"]["_lr_id"],
    }
    assert {k: v for k, v in final.items() if k != "a"} == {
        k: v for k, v in items.items() if k != "a"
    }
    # AND the poison record was parked, once
    assert [(x.reason, x.letter_id) for x in wire.letters()] == [
        ("not_json", f"{shard}/{records[5].sequence_number}/0")
    ]


def test_record_too_large_for_the_queue_is_parked_truncated(wire: Wire) -> None:
    # GIVEN an undecodable 1,000,000-byte record: 1.33 MB as base64, over SQS's 1 MiB
    raw = b"\x00" + bytes(range(256)) * 3906
    wire.kinesis.put_record(StreamName=wire.stream, PartitionKey="big", Data=raw)
    use_consumer(wire)
    # WHEN the handler parks it
    assert handle(wire.events()) == NO_FAILURES
    # THEN the letter holds its first bytes, flagged, with the full record's length and hash
    (body,) = [
        m["Body"]
        for m in wire.sqs.receive_message(QueueUrl=wire.queue_url, MaxNumberOfMessages=10)[
            "Messages"
        ]
    ]
    doc = json.loads(body)
    assert len(body) <= 1024 * 1024
    assert (doc["reason"], doc["truncated"], doc["data_bytes"]) == ("not_json", True, len(raw))
    assert doc["data_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.startswith(base64.b64decode(doc["data"]))
