"""`lazyrep demo` for now: produce a mixed workload with both SDKs, read it back, check it.

Until the appliers exist (issues 3 and 4) the demo shows the binlog itself: every
action lands once, in the order its item's writer issued it, with a position an
operator could replay from; invalid actions are refused before sending.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from binlog.clients import boto3_client, dynamodb_client, kinesis_client
from binlog.codec import decode
from binlog.errors import ActionError, RecordError
from binlog.reader import read_stream
from binlog.tables import create_table, create_topology_tables
from binlog.topology import Topology, load_topology
from emulators.esm import EventSourceMapping
from emulators.esm_settings import EsmSettings
from lazyrep.reference import apply_plainly, table_contents
from lazyrep.workload import ops_for_writer
from producer import ActionResult, AsyncProducer, Producer

Progress = Callable[[int], None]


@dataclass
class DemoReport:
    """What the demo produced, what it read back, and what it found wrong."""

    produced: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    sdk_seconds: dict[str, float] = field(default_factory=dict)
    sdk_actions: dict[str, int] = field(default_factory=dict)
    read: int = 0
    read_seconds: float = 0.0
    shards: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    undecodable: int = 0
    primary_seconds: float = 0.0
    primary_invocations: int = 0
    primary_records: int = 0
    primary_tables: dict[str, tuple[int, bool]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the stream holds exactly what was produced, in order, and the primary
        tables equal the reference model."""
        stream_ok = not (self.missing or self.duplicates or self.out_of_order or self.undecodable)
        return stream_ok and all(equal for _, equal in self.primary_tables.values())


def _results(value: ActionResult | list[ActionResult]) -> list[ActionResult]:
    return value if isinstance(value, list) else [value]


def _run_sync(topology: Topology, writers: range, ops: int, progress: Progress) -> list[list[str]]:
    logs: list[list[str]] = [[] for _ in writers]
    with Producer(topology) as producer:

        def write(slot: int, writer: int) -> None:
            futures = []
            for op in ops_for_writer(writer, ops):
                futures.append(getattr(producer, op.method)(op.table, **op.kwargs))
                progress(len(op.actions))
            for future in futures:
                logs[slot] += [r.envelope_id for r in _results(future.result())]

        threads = [
            threading.Thread(target=write, args=(slot, writer))
            for slot, writer in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return logs


def _run_async(topology: Topology, writers: range, ops: int, progress: Progress) -> list[list[str]]:
    async def main() -> list[list[str]]:
        async with AsyncProducer(topology) as producer:

            async def write(writer: int) -> list[str]:
                futures = []
                for op in ops_for_writer(writer, ops):
                    futures.append(await getattr(producer, op.method)(op.table, **op.kwargs))
                    progress(len(op.actions))
                return [r.envelope_id for f in futures for r in _results(await f)]

            return list(await asyncio.gather(*(write(w) for w in writers)))

    return asyncio.run(main())


def refused_examples(topology: Topology) -> list[tuple[str, str, str]]:
    """Invalid actions the SDK refuses before sending, with its reasons."""
    attempts: list[tuple[str, Callable[[Producer], Any]]] = [
        ("a float", lambda p: p.put_item("users", {"user_id": "u", "score": 1.5})),
        ("an unknown table", lambda p: p.put_item("payments", {"id": "p1"})),
        ("a missing key attribute", lambda p: p.put_item("orders", {"customer_id": "c"})),
        (
            "a wrong key type",
            lambda p: p.delete_item("orders", {"customer_id": "c", "order_no": "1"}),
        ),
        (
            "an item over 400 KB",
            lambda p: p.put_item("users", {"user_id": "u", "bio": "x" * 410_000}),
        ),
        (
            "an undefined placeholder",
            lambda p: p.update_item("users", {"user_id": "u"}, "SET a = :a"),
        ),
        (
            "a Decimal beyond 38 digits",
            lambda p: p.put_item("users", {"user_id": "u", "n": Decimal("1." + "1" * 40)}),
        ),
    ]
    refused = []
    with Producer(topology) as producer:
        for what, attempt in attempts:
            try:
                attempt(producer)
            except ActionError as exc:
                refused.append((what, exc.reason.value, exc.detail))
            else:  # pragma: no cover - would mean the SDK let an invalid action through
                refused.append((what, "ACCEPTED", "the SDK sent it"))
    return refused


def run_demo(
    topology_path: Path,
    *,
    sync_writers: int = 4,
    async_writers: int = 4,
    ops_per_writer: int = 500,
    progress: Progress = lambda _: None,
) -> DemoReport:
    """Create the stream, produce, read everything back and check it, then apply it to the
    primary tables through the local event source mapping and the Lambda handler."""
    topology = load_topology(topology_path)
    report = DemoReport()
    client = kinesis_client(region=topology.stream.region)
    stream = topology.stream.name
    client.create_stream(StreamName=stream, ShardCount=topology.stream.shards)
    client.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    report.refused = refused_examples(topology)
    sync_range = range(sync_writers)
    async_range = range(sync_writers, sync_writers + async_writers)
    logs: list[list[str]] = []
    for name, runner, writers in (
        ("sync (boto3)", _run_sync, sync_range),
        ("async (aiobotocore)", _run_async, async_range),
    ):
        began = time.perf_counter()
        writer_logs = runner(topology, writers, ops_per_writer, progress)
        report.sdk_seconds[name] = time.perf_counter() - began
        report.sdk_actions[name] = sum(len(log) for log in writer_logs)
        logs += writer_logs
    issued = {eid: (slot, n) for slot, log in enumerate(logs) for n, eid in enumerate(log)}

    began = time.perf_counter()
    records = read_stream(client, stream)
    report.read_seconds = time.perf_counter() - began
    report.read = len(records)
    seen: Counter[str] = Counter()
    last: dict[str, tuple[int, int]] = {}
    for record in records:
        report.shards[record.shard_id] += 1
        try:
            envelope = decode(record.data, topology.tables)
        except RecordError:
            report.undecodable += 1
            continue
        seen[envelope.id] += 1
        report.produced[(envelope.table, envelope.action.value)] += 1
        position = issued.get(envelope.id)
        if position is None:
            continue
        previous = last.get(record.partition_key)
        if previous is not None and previous >= position:
            report.out_of_order += 1
        last[record.partition_key] = position
    report.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    report.missing = len(set(issued) - set(seen))
    _apply_primary(topology, topology_path, sync_writers + async_writers, ops_per_writer, report)
    return report


def _apply_primary(
    topology: Topology, path: Path, writers: int, ops: int, report: DemoReport
) -> None:
    """The primary path: the mapping drains the stream into the tables; check the reference."""
    dynamodb = dynamodb_client(region=topology.stream.region)
    create_topology_tables(dynamodb, topology)
    for table, schema in topology.tables.items():
        create_table(dynamodb, f"reference-{table}", schema)
    if topology.dead_letter is not None and topology.dead_letter.kind == "sqs":
        boto3_client("sqs", region=topology.dead_letter.region).create_queue(
            QueueName=topology.dead_letter.name
        )
    for writer in range(writers):
        for op in ops_for_writer(writer, ops):
            apply_plainly(dynamodb, f"reference-{op.table}", op.method, op.kwargs)
    os.environ["LAZYREP_TOPOLOGY"] = str(path)
    # The handler's JSON logs and EMF metrics go to stdout in Lambda; here the demo's
    # report does, so keep only errors.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    from lambda_consumer import handler  # noqa: PLC0415 - reads the variables above

    handler.use(None)
    settings = EsmSettings(
        batch_size=500,
        function_response_types=("ReportBatchItemFailures",),
        bisect_batch_on_function_error=True,
        poll_interval_s=0.2,
    )
    began = time.perf_counter()
    stats = EventSourceMapping(
        topology.stream.name, handler.handle, settings, region=topology.stream.region
    ).run_until_idle(timeout_s=300)
    report.primary_seconds = time.perf_counter() - began
    report.primary_invocations = stats.invocations
    report.primary_records = stats.records_delivered
    for table in topology.tables:
        actual = table_contents(dynamodb, table)
        report.primary_tables[table] = (
            len(actual),
            actual == table_contents(dynamodb, f"reference-{table}"),
        )
