"""The primary path end to end: producer -> stream -> local event source mapping -> handler.

GIVEN the demo workload (puts, ADD and list_append updates, conditional writes, deletes,
batch writes) from four writers, a SplitShard half-way, DynamoDB throttling through the
fault proxy, and a handler that crashes mid-batch now and then;
WHEN the mapping drains the stream;
THEN every primary table equals the reference model (each action once, in order).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from binlog.tables import create_table, create_tombstone_table
from binlog.topology import load_topology
from emulators.esm import EventSourceMapping
from emulators.esm_settings import EsmSettings
from emulators.faultproxy import FaultProxy
from emulators.stack import LocalStack
from lambda_consumer import handler
from lazyrep.reference import apply_plainly, table_contents
from lazyrep.workload import ops_for_writer
from producer import Producer

pytestmark = pytest.mark.wire

TABLES = {
    "users": '{ name = "user_id", type = "S" }',
    "orders": '{ name = "customer_id", type = "S" }',
    "carts": '{ name = "cart_id", type = "S" }',
}
SORT = {"orders": '{ name = "order_no", type = "N" }'}


def topology(path: Path, run: str) -> Path:
    lines = [
        f'[stream]\nname = "primary-{run}"\nregion = "us-east-1"\nshards = 2\n',
        f'[applier]\ntombstone_table = "tombstones-{run}"\n',
        f'[dead_letter]\nkind = "sqs"\nname = "dlq-{run}"\n',
    ]
    for name, key in TABLES.items():
        sort = f"\nsort_key = {SORT[name]}" if name in SORT else ""
        lines.append(f"[tables.{run}{name}]\npartition_key = {key}{sort}\n")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class CrashingHandler:
    """The real handler, but every so often it applies half a batch and then crashes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.crashes = 0
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Mapping[str, Any] | None:
        records = event["Records"]
        with self.lock:
            crash = len(records) > 1 and self.rng.random() < 0.2
        if crash:
            handler.handle({"Records": records[: len(records) // 2]}, context)
            with self.lock:
                self.crashes += 1
            raise RuntimeError("the function crashed mid-batch")
        return handler.handle(event, context)


def test_primary_tables_equal_the_reference_whatever_fails(
    stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = f"p{uuid.uuid4().hex[:6]}"
    path = topology(tmp_path / "topology.toml", run)
    direct = boto3.client("dynamodb", region_name="us-east-1")
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    boto3.client("sqs", region_name="us-east-1").create_queue(QueueName=f"dlq-{run}")
    loaded = load_topology(path)
    for name, schema in loaded.tables.items():
        create_table(direct, name, schema)
        create_table(direct, f"ref-{name}", schema)
    create_tombstone_table(direct, f"tombstones-{run}")
    kinesis.create_stream(StreamName=f"primary-{run}", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=f"primary-{run}", WaiterConfig={"Delay": 1})

    # GIVEN the workload in the stream, a split half-way, and the reference applied plainly
    writers = range(4)
    with Producer(path) as producer:
        for half in (0, 1):
            for writer in writers:
                ops = list(ops_for_writer(writer, 120, prefix=run))
                for op in ops[half * 60 : (half + 1) * 60]:
                    getattr(producer, op.method)(op.table, **op.kwargs)
                    apply_plainly(direct, f"ref-{op.table}", op.method, op.kwargs)
            producer.flush()
            if half == 0:
                shard = kinesis.list_shards(StreamName=f"primary-{run}")["Shards"][0]
                low = int(shard["HashKeyRange"]["StartingHashKey"])
                high = int(shard["HashKeyRange"]["EndingHashKey"])
                kinesis.split_shard(
                    StreamName=f"primary-{run}",
                    ShardToSplit=shard["ShardId"],
                    NewStartingHashKey=str((low + high) // 2),
                )
                kinesis.get_waiter("stream_exists").wait(
                    StreamName=f"primary-{run}", WaiterConfig={"Delay": 1}
                )

    # WHEN the mapping drains it through a throttling DynamoDB and a crashing function
    with FaultProxy(upstream=stack_env.endpoints.dynamodb, seed=3) as proxy:
        proxy.set_rules(
            [
                {"fault": "throttle", "operation": "UpdateItem", "probability": 0.15},
                {"fault": "throttle", "operation": "PutItem", "probability": 0.15},
                {"fault": "server_error", "operation": "TransactWriteItems", "probability": 0.1},
            ]
        )
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        monkeypatch.setenv("LAZYREP_TOPOLOGY", str(path))
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        handler.use(None)
        crashing = CrashingHandler(seed=5)
        settings = EsmSettings(
            batch_size=50,
            function_response_types=("ReportBatchItemFailures",),
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=-1,
            poll_interval_s=0.05,
            shard_discovery_interval_s=0.2,
            retry_backoff_s=0.01,
            retry_backoff_max_s=0.05,
        )
        mapping = EventSourceMapping(f"primary-{run}", crashing, settings, region="us-east-1")
        try:
            stats = mapping.run_until_idle(timeout_s=180)
        finally:
            handler.use(None)
        faults = proxy.stats

    # THEN the faults happened, and every primary table equals the reference
    assert crashing.crashes > 0
    assert faults.faults("throttle") > 0
    assert stats.function_errors > 0
    assert stats.discarded_records == 0
    for name in loaded.tables:
        assert table_contents(direct, name) == table_contents(direct, f"ref-{name}"), name
