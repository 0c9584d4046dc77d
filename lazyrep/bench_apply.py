"""The apply benchmark: the Lambda handler end to end against plain DynamoDB writes.

One stream of PutItem records (ten versions of each of 1,000 items, as a table
under steady writes sees them) is applied three ways, each into a fresh table:
naive (one unconditional PutItem per record, in sequence: the 2015 proof of
concept), raw (the same number of conditional single-item writes, the emulator's
ceiling, at the best of several concurrencies) and the handler (AWS-shaped events
of 100 records per shard, one invocation per shard at a time, shards in
parallel, decoding and dead-letter checks included).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binlog.clients import boto3_client, client_config, dynamodb_client, kinesis_client
from binlog.codec import decode
from binlog.reader import StreamRecord, read_stream
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema
from emulators.esm_events import FunctionIdentity, LambdaContext, build_event
from emulators.esm_events import StreamRecord as EventRecord
from emulators.faultproxy import FaultProxy
from emulators.stack import LocalStack
from producer import Producer

SCHEMA = KeySchema(KeyAttribute("pk", "S"))
BATCH = 100


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    """Records, items, shards, and the concurrencies tried for the raw ceiling."""

    records: int
    items: int
    shards: int
    concurrencies: tuple[int, ...]

    @classmethod
    def quick(cls) -> ApplyPlan:
        """Under a minute."""
        return cls(records=4_000, items=400, shards=4, concurrencies=(8, 16))

    @classmethod
    def full(cls) -> ApplyPlan:
        """The issue's 10,000 records."""
        return cls(records=10_000, items=1_000, shards=4, concurrencies=(1, 8, 16, 32))


def _topology_file(directory: Path, stream: str, table: str, tombstones: str, dlq: str) -> Path:
    path = directory / "bench-topology.toml"
    path.write_text(
        f"""
[stream]
name = "{stream}"
region = "us-east-1"
shards = 4

[tables.{table}]
partition_key = {{ name = "pk", type = "S" }}

[applier]
tombstone_table = "{tombstones}"

[dead_letter]
kind = "sqs"
name = "{dlq}"
""",
        encoding="utf-8",
    )
    return path


def _produce(plan: ApplyPlan, stream: str, table: str) -> list[StreamRecord]:
    kinesis = kinesis_client(region="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=plan.shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    with Producer(stream=stream, tables={table: SCHEMA}, region="us-east-1") as producer:
        for n in range(plan.records):
            item = n % plan.items
            producer.put_item(
                table, {"pk": f"item-{item}", "n": n, "status": "ok", "note": "x" * 100}
            )
    return read_stream(kinesis, stream)


def _fresh_table(client: Any, name: str) -> None:
    create_table(client, name, SCHEMA)


@contextlib.contextmanager
def latency(stack: LocalStack | None, latency_ms: int) -> Iterator[None]:
    """Route DynamoDB through the fault proxy, delaying every request by `latency_ms`."""
    if not latency_ms or stack is None:
        yield
        return
    saved = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    rules = [{"fault": "delay", "delay_ms": latency_ms}]
    with FaultProxy(upstream=stack.endpoints.dynamodb, rules=rules) as proxy:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = proxy.url
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
            else:
                os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = saved


def run(plan: ApplyPlan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Produce once, apply three ways, return the figures."""
    run_id = uuid.uuid4().hex[:8]
    base = f"bench-{run_id}"
    client = dynamodb_client(region="us-east-1", config=client_config(pool=64))
    progress("producing the records")
    records = _produce(plan, f"{base}-stream", base)
    envelopes = [decode(r.data) for r in records]

    progress("naive: one unconditional PutItem per record")
    _fresh_table(client, f"{base}-naive")
    began = time.perf_counter()
    for envelope in envelopes:
        client.put_item(TableName=f"{base}-naive", Item=envelope.item)  # type: ignore[arg-type]
    naive_ips = len(records) / (time.perf_counter() - began)

    raw: dict[int, float] = {}
    for workers in plan.concurrencies:
        progress(f"raw: conditional writes, {workers} threads")
        table = f"{base}-raw{workers}"
        _fresh_table(client, table)
        raw[workers] = _raw(client, table, records, envelopes, workers)
    best = max(raw, key=raw.__getitem__)

    progress("handler: AWS-shaped events through lambda_consumer.handler.handle")
    handler_ips = _handler(plan, client, base, records)
    return {
        "records": len(records),
        "items": plan.items,
        "naive_ips": round(naive_ips, 1),
        "raw_ips": round(raw[best], 1),
        "raw_best_concurrency": best,
        "raw_ips_by_concurrency": {str(k): round(v, 1) for k, v in raw.items()},
        "handler_ips": round(handler_ips, 1),
        "handler_vs_raw": round(handler_ips / raw[best], 3),
        "handler_vs_naive": round(handler_ips / naive_ips, 2),
    }


def _raw(
    client: Any, table: str, records: list[StreamRecord], envelopes: list[Any], workers: int
) -> float:
    """Conditional single-item writes (version guard), items spread over threads in order."""
    lanes: list[list[int]] = [[] for _ in range(workers)]
    for index, record in enumerate(records):
        lanes[hash(record.partition_key) % workers].append(index)

    def lane(indexes: list[int]) -> None:
        for index in indexes:
            item = dict(envelopes[index].item)
            item["_v"] = {"N": str(index)}
            with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
                client.put_item(
                    TableName=table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                    ExpressionAttributeNames={"#v": "_v"},
                    ExpressionAttributeValues={":v": {"N": str(index)}},
                )

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lane, lanes))
    return len(records) / (time.perf_counter() - began)


def _handler(plan: ApplyPlan, client: Any, base: str, records: list[StreamRecord]) -> float:
    # The records name table `base`: the handler writes it, as a primary consumer does.
    table, tombstones = base, f"{base}-tombstones"
    # Quiet: Powertools writes JSON logs and EMF metrics to stdout, our figures go there.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    from lambda_consumer import handler  # noqa: PLC0415 - reads the variables above at import

    sqs = boto3_client("sqs", region="us-east-1")
    sqs.create_queue(QueueName=f"{base}-dlq")
    _fresh_table(client, table)
    create_tombstone_table(client, tombstones)
    with tempfile.TemporaryDirectory() as directory:
        path = _topology_file(Path(directory), f"{base}-stream", table, tombstones, f"{base}-dlq")
        saved = os.environ.get("LAZYREP_TOPOLOGY")
        os.environ["LAZYREP_TOPOLOGY"] = str(path)
        handler.use(None)
        try:
            by_shard: dict[str, list[StreamRecord]] = {}
            for record in records:
                by_shard.setdefault(record.shard_id, []).append(record)
            arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{base}-stream"
            who = FunctionIdentity("lazyrep-bench", "us-east-1", arn)
            # A first call builds the container's consumer (clients, topology): not timed.
            handler.handle({"Records": []}, LambdaContext("lazyrep-bench", "arn", 1024, 900))
            failures: list[Any] = []
            lock = threading.Lock()

            def shard(shard_id: str, shard_records: list[StreamRecord]) -> None:
                for start in range(0, len(shard_records), BATCH):
                    chunk = [
                        EventRecord(
                            r.sequence_number, r.partition_key, r.data, r.arrival.timestamp()
                        )
                        for r in shard_records[start : start + BATCH]
                    ]
                    event = build_event(chunk, shard_id, who)
                    response = handler.handle(
                        dict(event), LambdaContext("lazyrep-bench", "arn", 1024, 900)
                    )
                    if response and response.get("batchItemFailures"):
                        with lock:
                            failures.extend(response["batchItemFailures"])

            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(by_shard)) as pool:
                list(pool.map(lambda kv: shard(*kv), by_shard.items()))
            elapsed = time.perf_counter() - began
        finally:
            handler.use(None)
            if saved is None:
                os.environ.pop("LAZYREP_TOPOLOGY", None)
            else:
                os.environ["LAZYREP_TOPOLOGY"] = saved
    if failures:
        raise RuntimeError(f"the handler reported failures: {failures[:3]}")
    return len(records) / elapsed
