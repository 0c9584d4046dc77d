"""The producer SDK against moto (in-process for boto3, a threaded server for aiobotocore)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from binlog.codec import decode
from binlog.envelope import Action, Envelope
from binlog.errors import ActionError, Reason
from binlog.topology import KeyAttribute, KeySchema
from producer import AsyncProducer, DeliveryError, Producer, ProducerClosedError, ProducerConfig

TABLES = {
    "orders": KeySchema(KeyAttribute("pk", "S"), KeyAttribute("sk", "N")),
    "blobs": KeySchema(KeyAttribute("id", "B")),
}
FAST = ProducerConfig(linger_ms=1, backoff_base_ms=1, backoff_max_ms=5, max_attempts=2)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def stream(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="binlog", ShardCount=2)
        yield client


def read_all(client: Any, name: str = "binlog") -> list[tuple[str, Envelope]]:
    out = []
    for shard in client.list_shards(StreamName=name)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = client.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        out += [(shard["ShardId"], decode(r["Data"], TABLES)) for r in records]
    return out


def test_each_action_lands_once_with_its_position_and_exact_values(stream: Any) -> None:
    with Producer(stream="binlog", tables=TABLES, region="us-east-1", config=FAST) as producer:
        put = producer.put_item(
            "orders", {"pk": "a", "sk": 1, "n": Decimal("1.10"), "s": {"x", "y"}, "b": b"\x00"}
        )
        update = producer.update_item(
            "orders", {"pk": "a", "sk": 1}, "ADD #c :one", names={"#c": "c"}, values={":one": 1}
        )
        delete = producer.delete_item(
            "orders", {"pk": "a", "sk": 1}, condition="attribute_exists(pk)"
        )
        batch = producer.batch_write(
            "blobs", puts=[{"id": b"\x01"}, {"id": b"\x02"}], deletes=[{"id": b"\x03"}]
        )
        results = [put.result(), update.result(), delete.result(), *batch.result()]
    records = read_all(stream)
    # THEN every action is in the stream once, at the position its result names
    assert sorted(r.envelope_id for r in results) == sorted(e.id for _, e in records)
    by_id = {e.id: (shard, e) for shard, e in records}
    assert all(by_id[r.envelope_id][0] == r.shard_id for r in results)
    first = by_id[put.result().envelope_id][1]
    assert first.item is not None
    assert sorted(first.item.pop("s")["SS"]) == ["x", "y"]
    assert first.item == {
        "pk": {"S": "a"},
        "sk": {"N": "1"},
        "n": {"N": "1.10"},
        "b": {"B": b"\x00"},
    }
    assert [a.action for a in results] == [
        Action.PUT,
        Action.UPDATE,
        Action.DELETE,
        Action.PUT,
        Action.PUT,
        Action.DELETE,
    ]
    # AND one item's records share a shard and keep their order
    item_records = [e for _, e in records if e.table == "orders"]
    assert [e.action for e in item_records] == [Action.PUT, Action.UPDATE, Action.DELETE]


def test_typed_values_are_taken_as_given(stream: Any) -> None:
    with Producer(stream="binlog", tables=TABLES, region="us-east-1", config=FAST) as producer:
        producer.put_item(
            "orders",
            {"pk": {"S": "t"}, "sk": {"N": "1E+2"}, "v": {"NS": ["1", "2.5"]}},
            typed=True,
        ).result()
    ((_, envelope),) = read_all(stream)
    assert envelope.key == {"pk": {"S": "t"}, "sk": {"N": "1E+2"}}


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda p: p.put_item("orders", {"pk": "a"}), Reason.KEY_MISMATCH),
        (lambda p: p.put_item("orders", {"pk": 1, "sk": 1}), Reason.KEY_MISMATCH),
        (lambda p: p.delete_item("orders", {"pk": "a", "sk": 1, "x": 1}), Reason.KEY_MISMATCH),
        (lambda p: p.put_item("nope", {"pk": "a"}), Reason.UNKNOWN_TABLE),
        (lambda p: p.put_item("orders", {"pk": "a", "sk": 1, "f": 0.1}), Reason.FLOAT_VALUE),
        (
            lambda p: p.put_item("orders", {"pk": "a", "sk": 1, "x": "y" * 409_600}),
            Reason.ITEM_TOO_LARGE,
        ),
        (lambda p: p.put_item("orders", {"pk": "a", "sk": 1, "x": set()}), Reason.BAD_VALUE),
        (
            lambda p: p.update_item("orders", {"pk": "a", "sk": 1}, "SET a = :a"),
            Reason.BAD_EXPRESSION,
        ),
        (lambda p: p.update_item("orders", {"pk": "a", "sk": 1}, " "), Reason.BAD_EXPRESSION),
        (
            lambda p: p.batch_write(
                "orders", puts=[{"pk": "a", "sk": 1}], deletes=[{"pk": "a", "sk": 1}]
            ),
            Reason.DUPLICATE_KEY,
        ),
    ],
)
def test_invalid_actions_are_refused_before_anything_is_sent(
    stream: Any, call: Any, reason: Reason
) -> None:
    with (
        Producer(stream="binlog", tables=TABLES, region="us-east-1", config=FAST) as producer,
        pytest.raises(ActionError) as caught,
    ):
        call(producer)
    assert caught.value.reason is reason
    assert read_all(stream) == []


def test_a_record_over_one_mib_is_refused_even_when_the_item_fits(stream: Any) -> None:
    # GIVEN 200 KB of control characters: 200 KB to DynamoDB, 1.2 MB as JSON escapes
    item = {"pk": "a", "sk": 1, "x": "\x01" * 200_000}
    with (
        Producer(stream="binlog", tables=TABLES, region="us-east-1", config=FAST) as producer,
        pytest.raises(ActionError) as caught,
    ):
        producer.put_item("orders", item)
    assert caught.value.reason is Reason.RECORD_TOO_LARGE
    assert read_all(stream) == []


def test_a_missing_stream_fails_fast_and_flush_names_every_action(aws_env: None) -> None:
    with mock_aws():
        producer = Producer(stream="absent", tables=TABLES, region="us-east-1", config=FAST)
        future = producer.put_item("orders", {"pk": "a", "sk": 1})
        with pytest.raises(DeliveryError) as caught:
            producer.flush()
        assert [f.error_code for f in caught.value.failures] == ["ResourceNotFoundException"]
        assert caught.value.failures[0].attempts == 1
        with pytest.raises(DeliveryError):
            future.result()
        producer.close()
        with pytest.raises(ProducerClosedError):
            producer.put_item("orders", {"pk": "a", "sk": 1})


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", url)
    try:
        yield url
    finally:
        server.stop()


def test_async_producer_over_http_same_contract(moto_server: str) -> None:
    client = boto3.client("kinesis", region_name="us-east-1")
    client.create_stream(StreamName="binlog", ShardCount=1)

    async def main() -> list[str]:
        async with AsyncProducer(
            stream="binlog", tables=TABLES, region="us-east-1", config=FAST
        ) as producer:
            futures = [
                await producer.update_item(
                    "orders",
                    {"pk": "a", "sk": 1},
                    "SET #v = :v",
                    names={"#v": "v"},
                    values={":v": i},
                )
                for i in range(50)
            ]
            batch = await producer.batch_write(
                "orders", puts=[{"pk": "b", "sk": i} for i in range(5)]
            )
            with pytest.raises(ActionError):
                await producer.put_item("orders", {"pk": "a", "sk": 1.5})
            return [r.envelope_id for r in await asyncio.gather(*futures)] + [
                r.envelope_id for r in await batch
            ]

    ids = asyncio.run(main())
    records = read_all(client)
    assert [e.id for _, e in records if e.key["pk"] == {"S": "a"}] == ids[:50]
    assert sorted(e.id for _, e in records) == sorted(ids)
