"""The operator tools over the real MultiLangDaemon: `lazyrep rewind` and `lazyrep backfill`.

Rewind: GIVEN a running replica worker that has applied a workload with ADD and
list_append updates (among puts, conditional writes, deletes and batch writes);
WHEN `lazyrep rewind --force` moves a shard's checkpoint back to a mid-shard record
while the worker holds the lease; THEN the KCL re-reads the checkpoint (a new record
processor initializes the shard at the rewound position), every record from the
target on is delivered again and skipped as stale (none applied twice), the replica
still equals the reference model, and later writes are applied as usual.

Backfill: GIVEN a primary in us-east-1 fed by the producer and applied by the Lambda
handler behind the local event source mapping; WHEN `lazyrep backfill
--write-properties` copies it to a new replica while writes continue, and a replica
worker then starts from that properties file (AT_TIMESTAMP); THEN the replica
converges to the primary, bookkeeping included, and `lazyrep verify --lag none` finds
nothing missing, extra or diverged.

One worker per scenario; small workloads (`LAZYREP_OPERATOR_E2E_ACTIONS`, default
1,500 per scenario). The KCL takes 30-45 s to its first record.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from replica_support import (
    Worker,
    kill_workers,
    left_behind,
    plan_actions,
    produce,
    reference_tables,
    start_worker,
    unordered_sets,
)

from binlog.tables import create_topology_tables
from binlog.topology import Topology, load_topology
from emulators.esm import EsmSettings, EventSourceMapping
from emulators.stack import LocalStack
from kcl_consumer.properties import parse_properties
from kcl_consumer.status import ShardProgress, read_status, status_table_name
from lambda_consumer import handler
from lazyrep.cli_replica import render_local
from lazyrep.cli_rewind import rewind_command
from lazyrep.cli_verify import verify
from lazyrep.reference import table_contents

pytestmark = [pytest.mark.daemon, pytest.mark.wire]

ACTIONS = int(os.environ.get("LAZYREP_OPERATOR_E2E_ACTIONS", "1500"))
WRITERS = 4
SHARDS = 2
REPLICA_REGION = "eu-west-1"
SHARD0 = "shardId-000000000000"
BUDGET_S = 300  # one scenario, set-up to clean stop (a quiet machine needs about 100 s)
BOOKKEEPING = ("_lr_version", "_lr_id")
SCHEMAS = {
    "users": ('{ name = "user_id", type = "S" }', None),
    "orders": ('{ name = "customer_id", type = "S" }', '{ name = "order_no", type = "N" }'),
    "carts": ('{ name = "cart_id", type = "S" }', None),
}


def write_topology(path: Path, run: str) -> Path:
    lines = [
        f'[stream]\nname = "op-{run}"\nregion = "us-east-1"\nshards = {SHARDS}\n',
        f'[applier]\ntombstone_table = "tombstones-{run}"\n',
        f'[dead_letter]\nkind = "sqs"\nname = "dlq-{run}"\n',
    ]
    for name, (partition, sort) in SCHEMAS.items():
        sort_line = f"\nsort_key = {sort}" if sort else ""
        lines.append(f"[tables.{run}{name}]\npartition_key = {partition}{sort_line}\n")
    # The shortest deadline (0.01 h, 36 s) makes the pacer spend fast: the test cannot wait.
    lines.append(
        f'[replicas.eu]\nregion = "{REPLICA_REGION}"\nmax_wcu = 20000\n'
        f'deadline_hours = 0.01\napplication_name = "app-{run}"\n'
        f'tables = {{ "{run}users" = "{run}users-eu" }}\n'
    )
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Scenario:
    """One topology on the local stack, its worker, clients, deadlines and a timeline."""

    def __init__(self, tmp_path: Path) -> None:
        self.started = time.monotonic()
        self.run = f"o{uuid.uuid4().hex[:6]}"
        self.tmp_path = tmp_path
        self.path = write_topology(tmp_path / "topology.toml", self.run)
        self.topology: Topology = load_topology(self.path)
        self.stream = self.topology.stream.name
        self.app = self.topology.replicas["eu"].application_name
        self.kinesis = boto3.client("kinesis", region_name="us-east-1")
        self.primary = boto3.client("dynamodb", region_name="us-east-1")
        self.replica = boto3.client("dynamodb", region_name=REPLICA_REGION)
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.workers: list[Worker] = []
        self.timeline: list[tuple[float, str]] = []
        self.seen: Any = None  # what a condition saw last, for the failure message
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=SHARDS)
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 1}
        )
        self.queue = self.sqs.create_queue(QueueName=f"dlq-{self.run}")["QueueUrl"]
        create_topology_tables(
            self.replica, self.topology, table_map=self.topology.replicas["eu"].tables
        )

    def mark(self, what: str) -> None:
        self.timeline.append((round(time.monotonic() - self.started, 1), what))

    def wait(self, what: str, condition: Callable[[], bool], timeout_s: float) -> None:
        deadline = min(time.monotonic() + timeout_s, self.started + BUDGET_S)
        while not condition():
            for worker in self.workers:
                if worker.process.poll() is not None:
                    pytest.fail(
                        f"{worker.worker_id} exited with {worker.process.returncode} while "
                        f"waiting for {what}:\n{worker.tail()}"
                    )
            if time.monotonic() > deadline:
                tails = "\n\n".join(f"== {w.worker_id}\n{w.tail(60)}" for w in self.workers)
                seen = f"; last seen {self.seen}" if self.seen is not None else ""
                pytest.fail(f"timed out waiting for {what}{seen}; {self.timeline}\n{tails}")
            time.sleep(1)
        self.mark(what)

    def write_properties(self, worker_id: str) -> Path:
        """The local properties: lease tables in the replica's region, as on AWS, where the
        operator tools (rewind, status, verify) look for them."""
        text = render_local(
            self.path, "eu", worker_id, ("maxRecords=2000", "varianceBalancingFrequency=10")
        )
        path = self.tmp_path / f"{worker_id}.properties"
        path.write_text(text, encoding="utf-8")
        keys = parse_properties(text)
        assert "regionName" not in keys
        assert keys["dynamoDbClient.region"] == REPLICA_REGION
        return path

    def start_worker(self, worker_id: str, properties: Path) -> Worker:
        worker = start_worker(self.path, worker_id, self.tmp_path, properties=properties)
        self.workers.append(worker)
        self.mark(f"started worker {worker_id}")
        return worker

    def stop_workers(self) -> None:
        """SIGTERM: each shard checkpoints what it applied, and the worker exits 0."""
        for worker in self.workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            assert worker.process.wait(timeout=90) == 0, worker.tail()
        self.mark("workers stopped")

    def cleanup(self) -> list[int]:
        """Kill whatever is left; the process groups still alive after that."""
        groups = kill_workers(self.workers)
        print(f"operator e2e timeline (s): {self.timeline}", file=sys.stderr)
        return left_behind(groups)

    # -- reading the replica's side ---------------------------------------------------------

    def lease(self, shard_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.replica.get_item(
            TableName=self.app, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True
        ).get("Item", {})
        return item

    def checkpoint(self, shard_id: str) -> str | None:
        try:
            self.seen = self.lease(shard_id)
            return str(self.seen["checkpoint"]["S"])
        except Exception:  # no lease table or item yet
            return None

    def progress(self, shard_id: str) -> ShardProgress | None:
        try:
            found = read_status(self.replica, status_table_name(self.app))
        except Exception:  # the worker has not created its status table yet
            return None
        return next((p for p in found if p.shard_id == shard_id), None)

    def replica_contents(self, ignore: tuple[str, ...] = BOOKKEEPING) -> dict[str, Any]:
        target = self.topology.replicas["eu"]
        return {
            name: unordered_sets(
                table_contents(self.replica, target.replica_table(name), ignore=ignore)
            )
            for name in self.topology.tables
        }

    def primary_contents(self) -> dict[str, Any]:
        return {
            name: unordered_sets(table_contents(self.primary, name, ignore=()))
            for name in self.topology.tables
        }

    def parked(self) -> list[Any]:
        reply = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=0)
        return list(reply.get("Messages", []))


def shard_records(kinesis: Any, stream: str, shard_id: str) -> list[str]:
    """Every sequence number in the shard, oldest first."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    found: list[str] = []
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        found += [r["SequenceNumber"] for r in page["Records"]]
        if not page["Records"] and not page.get("MillisBehindLatest"):
            return found
        iterator = page.get("NextShardIterator")
    return found


def initialize_events(worker: Worker, shard_id: str | None = None) -> list[dict[str, Any]]:
    """The `initialize` log events of `worker`'s record processors for `shard_id` (any
    shard if None), in order. The daemon echoes each stderr line twice (once quoted in
    its own log line): one per record processor pid and time."""
    found: dict[tuple[Any, Any], dict[str, Any]] = {}
    for e in worker.json_events():
        if e.get("event") == "initialize" and shard_id in (None, e.get("shard_id")):
            found[e.get("pid"), e.get("ts")] = e
    return list(found.values())


def initializations(worker: Worker, shard_id: str | None = None) -> list[str]:
    """Where each record processor started: `SEQUENCE/SUB`, or the initial position."""
    return [
        str(e.get("message", "")).rsplit(" at ", 1)[-1] for e in initialize_events(worker, shard_id)
    ]


@pytest.fixture
def reference_pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


# -- rewind ----------------------------------------------------------------------------------


@pytest.mark.timeout(BUDGET_S + 60)
def test_rewind_makes_a_running_replica_apply_again_without_double_applying(
    stack_env: LocalStack, tmp_path: Path, reference_pool: ProcessPoolExecutor
) -> None:
    scenario = Scenario(tmp_path)
    plans = plan_actions(scenario.run, ACTIONS, WRITERS)
    assert any(
        op.method == "update_item" and "ADD" in op.kwargs["update"] for ops in plans for op in ops
    )
    assert any("list_append" in op.kwargs.get("update", "") for ops in plans for op in ops)
    path = str(scenario.path)
    expected: Future[dict[str, Any]] = reference_pool.submit(reference_tables, path, plans)
    try:
        # GIVEN a running worker that has applied the workload
        worker = scenario.start_worker("rw1", scenario.write_properties("rw1"))
        sent = produce(scenario.path, plans)
        scenario.mark(f"produced {sent} actions")
        reference = expected.result(timeout=120)
        latest: dict[str, Any] = {}

        def converged() -> bool:
            nonlocal latest
            latest = scenario.replica_contents()
            return latest == reference

        try:
            scenario.wait("workload applied", converged, 200)
        except pytest.fail.Exception:
            report_difference(reference, latest)
            raise
        records = shard_records(scenario.kinesis, scenario.stream, SHARD0)
        assert len(records) > 100
        scenario.wait(
            f"{SHARD0} checkpointed at its last record {records[-1]}",
            lambda: scenario.checkpoint(SHARD0) == records[-1],
            30,
        )
        # (a loaded machine can make the KCL drop and retake a lease now and then: each
        # retake starts a record processor at the lease's checkpoint)
        assert initializations(worker, SHARD0)[0] == "TRIM_HORIZON/0"
        known = len(initializations(worker, SHARD0))

        # WHEN the shard's checkpoint is moved back to a mid-shard record, the lease held
        target = len(records) // 3
        result = None
        for _ in range(5):  # exit 1: the lease moved between read and write; run again
            result = CliRunner().invoke(
                rewind_command,
                [
                    "--topology",
                    path,
                    "--replica",
                    "eu",
                    "--shard",
                    SHARD0,
                    "--to-sequence",
                    records[target],
                    "--force",
                    "--observe",
                    "2",
                ],
            )
            if result.exit_code != 1:
                break
        assert result is not None
        assert result.exit_code == 0, result.output
        scenario.mark("rewound")
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"before: checkpoint {records[-1]}/0, owner rw1, ")
        assert lines[-2].startswith(f"after:  checkpoint {records[target - 1]}/0, owner rw1, ")
        assert f"first record applied again is {records[target]}" in lines[-1]

        # THEN the KCL re-reads the checkpoint: a new record processor takes the shard there
        scenario.wait(
            f"{SHARD0} initialized again at the rewound checkpoint",
            lambda: (
                initializations(worker, SHARD0)[known : known + 1] == [f"{records[target - 1]}/0"]
            ),
            60,
        )
        # AND every record from the target on is delivered again, and none applied twice
        again = len(records) - target
        latest_progress: list[ShardProgress] = []

        def delivered_again() -> bool:
            processors = initialize_events(worker, SHARD0)[known:]
            progress = scenario.progress(SHARD0)
            if progress is None or progress.owner != processors[-1]["owner"]:
                return False  # the status of the newest record processor, once it reports
            latest_progress[:] = [progress]
            retaken = len(processors) > 1
            # `records` counts a batch when it arrives, the outcomes as it is applied
            done = progress.applied + progress.skipped_stale + progress.condition_failed
            return (
                scenario.checkpoint(SHARD0) == records[-1]
                and done == progress.records
                and (retaken or progress.records >= again)
            )

        scenario.wait(f"{again} records delivered again", delivered_again, 60)
        after = latest_progress[0]
        assert after.applied == 0, after  # every record was applied already
        if len(initialize_events(worker, SHARD0)) == known + 1:  # one processor did it all
            assert after.records == again, after
            assert after.skipped_stale > 0, after
        else:
            scenario.mark("the lease was retaken during the re-delivery: counts are partial")
        # AND the replica still equals the model: no ADD or list_append applied twice
        latest = scenario.replica_contents()
        if latest != reference:
            report_difference(reference, latest)
        assert latest == reference

        assert scenario.parked() == []
        scenario.stop_workers()
    finally:
        leftovers = scenario.cleanup()
    assert not leftovers, "processes left behind"


def report_difference(expected: dict[str, Any], got: dict[str, Any]) -> None:
    for name, items in expected.items():
        mine = got.get(name, {})
        missing = sorted(set(items) - set(mine))[:5]
        wrong = [k for k in items if k in mine and mine[k] != items[k]][:5]
        extra = sorted(set(mine) - set(items))[:5]
        print(f"{name}: missing {missing} wrong {wrong} extra {extra}", file=sys.stderr)
        for key in wrong[:2]:
            print(f"  {key}: replica {mine[key]}\n  expected {items[key]}", file=sys.stderr)


# -- backfill --------------------------------------------------------------------------------


@pytest.mark.timeout(BUDGET_S + 60)
def test_backfill_then_the_kcl_from_the_printed_position_converges_while_writes_continue(
    stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = Scenario(tmp_path)
    plans = plan_actions(scenario.run, ACTIONS, WRITERS)
    history = [ops[: len(ops) // 3] for ops in plans]
    meanwhile = [ops[len(ops) // 3 :] for ops in plans]
    create_topology_tables(scenario.primary, scenario.topology)
    properties = scenario.write_properties("bw1")
    monkeypatch.setenv("LAZYREP_TOPOLOGY", str(scenario.path))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    handler.use(None)
    settings = EsmSettings(
        batch_size=500,
        function_response_types=("ReportBatchItemFailures",),
        bisect_batch_on_function_error=True,
        poll_interval_s=0.2,
        shard_discovery_interval_s=0.5,
    )
    mapping = EventSourceMapping(scenario.stream, handler.handle, settings, region="us-east-1")
    writer: threading.Thread | None = None
    try:
        # GIVEN a primary with history, applied by the Lambda handler behind its mapping
        mapping.start()
        sent = produce(scenario.path, history)
        mapping.drain(timeout_s=60)
        scenario.mark(f"primary applied {sent} actions")
        time.sleep(6)  # the history is older than the backfill's start (5 s margin below)

        # WHEN the backfill copies it while writes continue
        box: dict[str, int] = {}
        copied_event = threading.Event()  # a quarter of the writes wait for the copy's end
        writer = threading.Thread(
            target=lambda: box.setdefault(
                "sent", produce(scenario.path, meanwhile, pause_s=0.05, gate=copied_event)
            )
        )
        writer.start()
        scenario.mark("writes continue")
        copied = subprocess.run(
            [
                str(Path(sys.executable).with_name("lazyrep")),
                "backfill",
                "--topology",
                str(scenario.path),
                "--replica",
                "eu",
                "--rate",
                "1000",
                "--segments",
                "2",
                "--start-margin",
                "5s",
                "--write-properties",
                str(properties),
                "--json",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert copied.returncode == 0, copied.stderr
        doc = json.loads(copied.stdout)
        scenario.mark(f"backfill done: {[t['outcomes'] for t in doc['tables']]}")
        assert writer.is_alive(), "the writes must continue past the copy"
        start = doc["properties"]
        assert list(start) == ["initialPositionInStreamExtended"]  # AT_TIMESTAMP, epoch s
        written = parse_properties(properties.read_text())
        assert written.items() >= start.items()
        assert "initialPositionInStream" not in written  # the daemon refuses AT_TIMESTAMP
        assert sum(t["scanned"] for t in doc["tables"]) > 50

        # AND the replica's worker starts from the position the backfill wrote
        copied_event.set()
        worker = scenario.start_worker("bw1", properties)
        writer.join(timeout=120)
        assert not writer.is_alive()
        scenario.mark(f"writes stopped after {box['sent']} actions")
        mapping.drain(timeout_s=60)
        scenario.mark("primary caught up")

        # THEN the replica converges with the primary, versions and action ids included
        expected = scenario.primary_contents()
        assert sum(len(items) for items in expected.values()) > 100
        latest: dict[str, Any] = {}

        def converged() -> bool:
            nonlocal latest
            latest = scenario.replica_contents(ignore=())
            return latest == expected

        try:
            scenario.wait("replica equals the primary", converged, 150)
        except pytest.fail.Exception:
            report_difference(expected, latest)
            raise
        checked = CliRunner(env={"COLUMNS": "200"}).invoke(
            verify,
            ["--topology", str(scenario.path), "--replica", "eu", "--lag", "none", "--json"],
        )
        assert checked.exit_code == 0, checked.output
        report = json.loads(checked.stdout)
        assert report["ok"]
        assert report["remaining_errors"] == 0
        for table in report["tables"]:
            assert table["checked"] == table["in_sync"] > 0, table
            assert set(table["errors"].values()) == {0}, table
        assert scenario.parked() == []

        # AND the worker began every shard at the printed AT_TIMESTAMP (the lease's initial
        # checkpoint), not at the trim horizon or the tip
        firsts: dict[str, str] = {}
        for event in initialize_events(worker):
            firsts.setdefault(event["shard_id"], event["message"].rsplit(" at ", 1)[-1])
        assert firsts == {f"shardId-00000000000{n}": "AT_TIMESTAMP/0" for n in range(SHARDS)}
        scenario.stop_workers()
    finally:
        if writer is not None:
            copied_event.set()
            writer.join(timeout=120)
        mapping.stop()
        handler.use(None)
        leftovers = scenario.cleanup()
    assert not leftovers, "processes left behind"
