"""The dead-letter store: SQS and S3 (moto in-process), retries and size limits (stub clients)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from binlog.awserrors import Failure
from binlog.deadletter import (
    DeadLetter,
    MemoryDeadLetterStore,
    S3DeadLetterStore,
    SqsDeadLetterStore,
    dead_letter_store,
    letter_from_document,
)
from binlog.topology import DeadLetterConfig

ARRIVAL = datetime(2018, 12, 17, 22, 10, 50, 987000, tzinfo=UTC)
PARKED = datetime(2018, 12, 17, 22, 11, tzinfo=UTC)


def letter(n: int = 0, data: bytes = b"\xff not json", **fields: Any) -> DeadLetter:
    values: dict[str, Any] = {
        "data": data,
        "reason": "not_json",
        "detail": "not UTF-8 JSON",
        "stream": "lambda-stream",
        "shard_id": "shardId-000000000003",
        "sequence_number": str(49590338271490256608559692538361571095921575989136588898 + n),
        "subsequence_number": 0,
        "partition_key": f"pk-{n}",
        "arrival": ARRIVAL,
        "consumer": "lambda:primary",
        "parked_at": PARKED,
    }
    values.update(fields)
    return DeadLetter(**values)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def sqs_messages(client: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        page = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not page:
            return messages
        messages += page


class Recorder:
    """A stub SQS client answering SendMessageBatch from a script, recording each call."""

    def __init__(self, answers: list[Any], attributes: Any = None) -> None:
        self.answers = answers
        self.attributes = attributes or {"Attributes": {"MaximumMessageSize": "1048576"}}
        self.calls: list[list[dict[str, Any]]] = []

    def get_queue_url(self, **kwargs: str) -> dict[str, str]:
        name = kwargs["QueueName"]
        return {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"}

    def get_queue_attributes(self, **_: Any) -> Any:
        if isinstance(self.attributes, Exception):
            raise self.attributes
        return self.attributes

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs["Entries"])
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_error(code: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendMessageBatch")


def test_document_round_trips_every_field() -> None:
    # GIVEN a letter for subsequence 2 of an aggregate
    original = letter(subsequence_number=2, reason="key_mismatch", detail="key.user_id is N")
    # WHEN it is written and read back
    body = original.document()
    doc = json.loads(body)
    # THEN every field survives, the record is base64, and the id names its position
    assert letter_from_document(body) == original
    assert doc["data"] == base64.b64encode(b"\xff not json").decode()
    assert doc["letter_id"] == f"shardId-000000000003/{original.sequence_number}/2"
    assert doc["truncated"] is False
    assert doc["data_bytes"] == 10
    assert doc["data_sha256"] == hashlib.sha256(b"\xff not json").hexdigest()
    assert body.isascii()


def test_document_too_large_keeps_the_first_bytes_and_the_records_digest() -> None:
    # GIVEN a letter whose record is 5,000 bytes
    data = bytes(range(256)) * 19 + b"tail" * 34
    # WHEN it must fit 2,048 bytes
    body = letter(data=data).document(max_bytes=2048)
    doc = json.loads(body)
    # THEN it fits, says it is truncated, and holds a prefix plus the full record's length and hash
    assert len(body) <= 2048
    assert doc["truncated"] is True
    kept = base64.b64decode(doc["data"])
    assert 0 < len(kept) < len(data)
    assert data.startswith(kept)
    assert 2048 - len(body) < 4  # as much as fits (base64 works in 4-character steps)
    assert doc["data_bytes"] == len(data)
    assert doc["data_sha256"] == hashlib.sha256(data).hexdigest()


def test_document_that_cannot_fit_even_empty_raises() -> None:
    with pytest.raises(ValueError, match="exceeds 200 bytes"):
        letter().document(max_bytes=200)


@pytest.mark.usefixtures("aws")
def test_sqs_parks_23_letters_in_3_calls_of_at_most_10() -> None:
    # GIVEN a standard queue
    client = boto3.client("sqs", region_name="us-east-1")
    url = client.create_queue(QueueName="dead")["QueueUrl"]
    calls: list[int] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def send_message_batch(self, **kwargs: Any) -> Any:
            calls.append(len(kwargs["Entries"]))
            return client.send_message_batch(**kwargs)

    store = SqsDeadLetterStore(Counting(), "dead")
    letters = [letter(n) for n in range(23)]
    # WHEN 23 letters are parked
    results = store.park(letters)
    # THEN all are parked, 10 + 10 + 3 a call, each message one letter
    assert results == [None] * 23
    assert calls == [10, 10, 3]
    parked = sorted(
        (letter_from_document(m["Body"]) for m in sqs_messages(client, url)),
        key=lambda parked_letter: int(parked_letter.sequence_number),
    )
    assert parked == letters


@pytest.mark.usefixtures("aws")
def test_sqs_message_over_the_queues_limit_is_truncated_and_flagged() -> None:
    # GIVEN a queue that takes messages of at most 1 KiB (SQS's minimum setting)
    client = boto3.client("sqs", region_name="us-east-1")
    url = client.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    data = b"x" * 3000
    # WHEN a letter with a 3,000-byte record is parked
    results = SqsDeadLetterStore(client, "small").park([letter(data=data)])
    # THEN SQS accepted it, cut to fit, with the full record's length and SHA-256
    assert results == [None]
    (message,) = sqs_messages(client, url)
    doc = json.loads(message["Body"])
    assert len(message["Body"]) <= 1024
    assert doc["truncated"] is True
    assert data.startswith(base64.b64decode(doc["data"]))
    assert doc["data_bytes"] == 3000
    assert doc["data_sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.usefixtures("aws")
def test_sqs_fifo_queue_groups_by_shard() -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    url = client.create_queue(QueueName="dead.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    assert SqsDeadLetterStore(client, "dead.fifo").park([letter(0), letter(1)]) == [None, None]
    messages = sqs_messages(client, url)
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == ["shardId-000000000003"] * 2


@pytest.mark.usefixtures("aws")
def test_sqs_missing_queue_reports_every_letter_failed() -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    results = SqsDeadLetterStore(client, "no-such-queue").park([letter(0), letter(1)])
    assert [r is not None and not r.retriable for r in results] == [True, True]
    assert results[0] is not None
    assert "NonExistentQueue" in results[0].code


def test_sqs_entries_failed_as_transient_are_sent_again() -> None:
    # GIVEN SQS failing entry 1 of the first call with a server fault
    stub = Recorder(
        [
            {"Failed": [{"Id": "1", "Code": "InternalError", "SenderFault": False}]},
            {},
        ]
    )
    sleeps: list[float] = []
    store = SqsDeadLetterStore(stub, "dead", sleep=sleeps.append, backoff_s=0.1)
    # WHEN three letters are parked
    results = store.park([letter(0), letter(1), letter(2)])
    # THEN the failed entry alone is sent again, after a back-off, and all are parked
    assert results == [None, None, None]
    assert [len(call) for call in stub.calls] == [3, 1]
    assert json.loads(stub.calls[1][0]["MessageBody"])["partition_key"] == "pk-1"
    assert sleeps == [0.1]


def test_sqs_entries_refused_as_senders_fault_are_reported_not_retried() -> None:
    stub = Recorder(
        [{"Failed": [{"Id": "0", "Code": "InvalidMessageContents", "SenderFault": True}]}]
    )
    results = SqsDeadLetterStore(stub, "dead", sleep=lambda _: None).park([letter(0), letter(1)])
    assert results == [Failure("InvalidMessageContents", "InvalidMessageContents", False), None]
    assert len(stub.calls) == 1


def test_sqs_throttled_every_time_reports_failures_after_the_attempts() -> None:
    stub = Recorder([client_error("RequestThrottled")] * 10)
    store = SqsDeadLetterStore(stub, "dead", max_attempts=3, sleep=lambda _: None)
    results = store.park([letter(0)])
    assert results == [Failure("RequestThrottled", "RequestThrottled", True)]
    assert len(stub.calls) == 3


def test_sqs_unreadable_queue_size_assumes_256_kib() -> None:
    # GIVEN no permission to read the queue's attributes
    stub = Recorder([{}], attributes=client_error("AccessDenied"))
    # WHEN a letter of 300 KB is parked
    results = SqsDeadLetterStore(stub, "dead").park([letter(data=b"y" * 300_000)])
    # THEN it was cut to the pre-2025 limit, which every queue accepts
    assert results == [None]
    body = stub.calls[0][0]["MessageBody"]
    assert 256 * 1024 - 4 <= len(body) <= 256 * 1024
    assert json.loads(body)["truncated"] is True


def test_sqs_batch_stays_under_the_queues_limit_in_total() -> None:
    # GIVEN a 1 MiB queue and ten letters of ~300 KB messages each
    stub = Recorder([])
    letters = [letter(n, data=b"z" * 220_000) for n in range(10)]
    # WHEN they are parked
    assert SqsDeadLetterStore(stub, "dead").park(letters) == [None] * 10
    # THEN no SendMessageBatch exceeds 1 MiB in total
    sizes = [sum(len(e["MessageBody"]) for e in call) for call in stub.calls]
    assert all(size <= 1024 * 1024 for size in sizes)
    assert sum(len(call) for call in stub.calls) == 10
    assert len(stub.calls) == 4


@pytest.mark.usefixtures("aws")
def test_s3_puts_one_object_per_letter_under_consumer_shard_and_sequence() -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="dead")
    aggregate_part = letter(1, subsequence_number=4, consumer="kcl:eu")
    store = S3DeadLetterStore(client, "dead", "letters/")
    assert store.park([letter(0), aggregate_part]) == [None, None]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="dead")["Contents"])
    assert keys == [
        f"letters/kcl:eu/shardId-000000000003/{aggregate_part.sequence_number}-4.json",
        f"letters/lambda:primary/shardId-000000000003/{letter(0).sequence_number}-0.json",
    ]
    body = client.get_object(Bucket="dead", Key=keys[0])["Body"].read()
    assert letter_from_document(body) == aggregate_part


@pytest.mark.usefixtures("aws")
def test_s3_missing_bucket_reports_the_failure() -> None:
    client = boto3.client("s3", region_name="us-east-1")
    results = S3DeadLetterStore(client, "no-such-bucket").park([letter(0)])
    assert results[0] is not None
    assert results[0].code == "NoSuchBucket"
    assert not results[0].retriable


@pytest.mark.usefixtures("aws")
def test_store_from_topology_config() -> None:
    sqs = boto3.client("sqs", region_name="eu-west-1")
    url = sqs.create_queue(QueueName="dead")["QueueUrl"]
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bucket")
    queue_store = dead_letter_store(DeadLetterConfig("sqs", "dead", "eu-west-1"))
    bucket_store = dead_letter_store(DeadLetterConfig("s3", "bucket", "us-east-1", "p/"))
    assert isinstance(queue_store, SqsDeadLetterStore)
    assert isinstance(bucket_store, S3DeadLetterStore)
    assert queue_store.park([letter(0)]) == [None]
    assert bucket_store.park([letter(0)]) == [None]
    assert len(sqs_messages(sqs, url)) == 1


def test_memory_store_keeps_letters() -> None:
    store = MemoryDeadLetterStore()
    assert store.park([letter(0), letter(1)]) == [None, None]
    assert store.letters == [letter(0), letter(1)]
