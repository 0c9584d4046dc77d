"""The producer benchmark: the SDK against raw boto3 and the naive one-call-per-action way.

All variants run in one process, in alternating rounds against the same stream,
so drift on a shared machine hits them alike; medians are reported. CPU is the
process's own CPU time (the emulator runs in other processes).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binlog.clients import client_config, kinesis_client
from binlog.topology import KeyAttribute, KeySchema
from producer import AsyncProducer, Producer
from producer.actions import ActionEncoder

TABLE = "bench"
TABLES = {TABLE: KeySchema(KeyAttribute("pk", "S"), KeyAttribute("sk", "N"))}


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """How much to send: records per timed round, rounds, naive records, shards."""

    records: int
    rounds: int
    naive_records: int
    shards: int

    @classmethod
    def quick(cls) -> BenchPlan:
        """Under a minute on two cores."""
        return cls(records=10_000, rounds=3, naive_records=500, shards=2)

    @classmethod
    def full(cls) -> BenchPlan:
        """Steadier figures: more records per round."""
        return cls(records=50_000, rounds=3, naive_records=2_000, shards=2)


class Timing:
    """Wall and process CPU seconds of one block."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timing:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _item(round_no: int, n: int) -> dict[str, Any]:
    # ~200 bytes, typical of an order line; distinct items so batches can fill.
    return {
        "pk": f"customer-{round_no}-{n % 5000}",
        "sk": n,
        "status": "PENDING",
        "qty": n % 17,
        "note": "x" * 120,
    }


def _create_stream(client: Any, name: str, shards: int) -> None:
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def run(plan: BenchPlan, *, stream: str, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run every variant `plan.rounds` times, alternating, and return the figures."""
    client = kinesis_client(config=client_config(pool=16))
    _create_stream(client, stream, plan.shards)
    try:
        return _run(plan, client, stream, progress)
    finally:
        client.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def _run(
    plan: BenchPlan, client: Any, stream: str, progress: Callable[[str], None]
) -> dict[str, Any]:
    encoder = ActionEncoder(TABLES)
    rates: dict[str, list[float]] = {"raw": [], "sync": [], "async": [], "naive": []}
    cpus: dict[str, list[float]] = {"raw": [], "sync": [], "async": []}

    def naive(round_no: int) -> None:
        records = [encoder.put(TABLE, _item(round_no, n)) for n in range(plan.naive_records)]
        with Timing() as t:
            for r in records:
                client.put_record(StreamName=stream, Data=r.data, PartitionKey=r.partition_key)
        rates["naive"].append(plan.naive_records / t.wall)

    def raw(round_no: int) -> None:
        records = [encoder.put(TABLE, _item(round_no, n)) for n in range(plan.records)]
        with Timing() as t:
            for start in range(0, len(records), 500):
                chunk = records[start : start + 500]
                pending: list[Any] = [
                    {"Data": r.data, "PartitionKey": r.partition_key} for r in chunk
                ]
                while pending:  # the ceiling still has to resend what the stream refused
                    response = client.put_records(StreamName=stream, Records=pending)
                    pending = [
                        p
                        for p, out in zip(pending, response["Records"], strict=True)
                        if out.get("ErrorCode")
                    ]
        rates["raw"].append(plan.records / t.wall)
        cpus["raw"].append(t.cpu / plan.records * 1e6)

    def sync(round_no: int) -> None:
        items = [_item(round_no, n) for n in range(plan.records)]
        producer = Producer(stream=stream, tables=TABLES)  # client set-up is not timed
        with Timing() as t:
            for item in items:
                producer.put_item(TABLE, item)
            producer.flush()
        producer.close()
        rates["sync"].append(plan.records / t.wall)
        cpus["sync"].append(t.cpu / plan.records * 1e6)

    def async_(round_no: int) -> None:
        items = [_item(round_no, n) for n in range(plan.records)]

        async def main() -> Timing:
            producer = AsyncProducer(stream=stream, tables=TABLES)
            await producer.start()
            with Timing() as t:
                for item in items:
                    await producer.put_item(TABLE, item)
                await producer.flush()
            await producer.close()
            return t

        t = asyncio.run(main())
        rates["async"].append(plan.records / t.wall)
        cpus["async"].append(t.cpu / plan.records * 1e6)

    variants = [("naive", naive), ("raw", raw), ("sync", sync), ("async", async_)]
    for round_no in range(plan.rounds):
        for name, variant in variants:
            progress(f"round {round_no + 1}/{plan.rounds}: {name}")
            variant(round_no * len(variants) + variants.index((name, variant)))

    median = {name: statistics.median(values) for name, values in rates.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    return {
        "records_per_round": plan.records,
        "rounds": plan.rounds,
        "shards": plan.shards,
        "naive_rps": round(median["naive"], 1),
        "raw_rps": round(median["raw"], 1),
        "sync_rps": round(median["sync"], 1),
        "async_rps": round(median["async"], 1),
        "raw_cpu_us_per_record": round(cpu["raw"], 2),
        "sdk_cpu_us_per_record": round(cpu["sync"], 2),
        "async_cpu_us_per_record": round(cpu["async"], 2),
        "sync_vs_raw": round(median["sync"] / median["raw"], 3),
        "async_vs_raw": round(median["async"] / median["raw"], 3),
        "sync_vs_naive": round(median["sync"] / median["naive"], 1),
        "sdk_cpu_vs_raw": round(cpu["sync"] / cpu["raw"], 3),
    }
