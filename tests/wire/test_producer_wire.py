"""The producer over the wire, through the fault proxy, against kinesalite.

8 threads (boto3) and 8 tasks (aiobotocore) write interleaved actions on 200
items while the proxy throttles, fails, partially fails and cuts connections.
Read back directly from the emulator: nothing missing, per-item order kept,
duplicates only where a cut after the server acted made the outcome unknown.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import defaultdict
from collections.abc import Iterator

import boto3
import pytest

from binlog.codec import decode
from binlog.reader import read_stream
from binlog.topology import KeyAttribute, KeySchema
from emulators.faultproxy import FaultProxy
from emulators.stack import LocalStack
from producer import AsyncProducer, Producer, ProducerConfig

pytestmark = pytest.mark.wire

TABLES = {"items": KeySchema(KeyAttribute("id", "S"))}
WRITERS = 16  # 8 threads + 8 tasks
ITEMS = 200
ACTIONS_PER_WRITER = 150
CONFIG = ProducerConfig(linger_ms=2, max_attempts=30, backoff_base_ms=5, backoff_max_ms=100)
FAULTS = [
    {
        "fault": "partial_failure",
        "operation": "PutRecords",
        "probability": 0.3,
        "failed_fraction": 0.3,
    },
    {"fault": "throttle", "operation": "PutRecords", "probability": 0.1},
    {"fault": "server_error", "operation": "PutRecords", "probability": 0.05},
    {"fault": "cut_before", "operation": "PutRecords", "probability": 0.04},
    {"fault": "cut_after", "operation": "PutRecords", "probability": 0.04},
]


@pytest.fixture
def proxy(stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=stack_env.endpoints.kinesis, seed=42) as fault_proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", fault_proxy.url)
        yield fault_proxy


def plan(writer: int) -> list[tuple[str, int]]:
    """Interleaved actions on the items this writer owns: (item id, step)."""
    rng = random.Random(writer)
    owned = [f"item-{i}" for i in range(writer, ITEMS, WRITERS)]
    return [(rng.choice(owned), step) for step in range(ACTIONS_PER_WRITER)]


def test_no_loss_no_reordering_under_faults(stack_env: LocalStack, proxy: FaultProxy) -> None:
    # GIVEN a stream, reached only through the faulty proxy
    direct = boto3.client(
        "kinesis", region_name="us-east-1", endpoint_url=stack_env.endpoints.kinesis
    )
    direct.create_stream(StreamName="faulty", ShardCount=4)
    direct.get_waiter("stream_exists").wait(StreamName="faulty", WaiterConfig={"Delay": 1})
    proxy.set_rules(FAULTS)
    issued: dict[str, list[str]] = defaultdict(list)  # item -> envelope ids in issue order
    lock = threading.Lock()

    # WHEN 8 threads share a sync producer...
    with Producer(stream="faulty", tables=TABLES, config=CONFIG) as producer:

        def write(writer: int) -> None:
            futures = []
            for item, step in plan(writer):
                futures.append(
                    (
                        item,
                        producer.update_item(
                            "items",
                            {"id": item},
                            "ADD #n :one SET #s = :s",
                            names={"#n": "n", "#s": "step"},
                            values={":one": 1, ":s": step},
                        ),
                    )
                )
            for item, future in futures:
                result = future.result(timeout=120)
                with lock:
                    issued[item].append(result.envelope_id)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # ...and 8 tasks share an async one
    async def write_async() -> None:
        async with AsyncProducer(stream="faulty", tables=TABLES, config=CONFIG) as aproducer:

            async def write(writer: int) -> None:
                futures = []
                for item, step in plan(writer):
                    futures.append(
                        (item, await aproducer.put_item("items", {"id": item, "step": step}))
                    )
                for item, future in futures:
                    issued[item].append((await future).envelope_id)

            await asyncio.gather(*(write(w) for w in range(8, 16)))

    asyncio.run(write_async())
    stats = proxy.stats
    proxy.clear()

    # THEN the faults really happened
    assert stats.records_failed("PutRecords") > 0
    assert stats.faults("throttle") > 0
    assert stats.faults("server_error") > 0
    assert stats.faults("cut_before") > 0
    assert stats.faults("cut_after") > 0
    # AND reading the stream directly, every acknowledged action is there, in order
    position = {eid: (item, n) for item, ids in issued.items() for n, eid in enumerate(ids)}
    assert len(position) == WRITERS * ACTIONS_PER_WRITER
    seen_per_item: dict[str, list[int]] = defaultdict(list)
    copies: dict[str, int] = defaultdict(int)
    for record in read_stream(direct, "faulty"):
        envelope = decode(record.data, TABLES)
        item, n = position[envelope.id]  # KeyError: a record nobody acknowledged
        assert envelope.key == {"id": {"S": item}}
        seen_per_item[item].append(n)
        copies[envelope.id] += 1
    assert set(copies) == set(position), "acknowledged actions missing from the stream"
    for item, indexes in seen_per_item.items():
        assert indexes == sorted(indexes), f"{item}: a record overtook an earlier one"
    duplicates = sum(n - 1 for n in copies.values())
    # Duplicates come only from cuts after the server acted (botocore then resends).
    assert duplicates <= stats.faults("cut_after") * 500
    if stats.faults("cut_after") == 0:
        assert duplicates == 0
