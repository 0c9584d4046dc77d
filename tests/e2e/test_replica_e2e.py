"""The lazy replica end to end: two real MultiLangDaemons sharing one replica's leases.

GIVEN a 4-shard stream fed by the producer SDK with the demo workload (puts, ADD and
list_append updates, conditional writes, deletes, batch writes) from eight writers;
WHEN two workers of one replica (`lazyrep replica run`, same application, different
worker ids) consume it, the stream is split (SplitShard) while they do, and one worker's
daemon is killed with SIGKILL mid-way and restarted by its supervisor;
THEN the replica tables (another region, one of them renamed) equal the reference model
(every action applied once, in order: nothing lost, no update applied twice), nothing
was parked, the parent shard was checkpointed at its end, and both workers stop cleanly.

The reference model is computed meanwhile in a separate process with in-process moto,
so it costs the local stack's moto server nothing. Slow by nature: the KCL takes tens
of seconds to its first record. `LAZYREP_E2E_ACTIONS` scales the workload (default
10,000 actions, about 2.5 minutes; 20,000 takes about 5 on two cores).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from replica_support import (
    Worker,
    plan_actions,
    produce,
    reference_tables,
    start_worker,
    unordered_sets,
)

from binlog.tables import create_topology_tables
from binlog.topology import Topology, load_topology
from emulators.procs import group_alive
from emulators.stack import LocalStack
from kcl_consumer.status import read_status, status_table_name
from lazyrep.reference import table_contents
from lazyrep.workload import Op

pytestmark = [pytest.mark.daemon, pytest.mark.wire]

# 20,000 (the figure) passes in about 5 minutes on a 2-core machine; 10,000 keeps
# the test near its 4-minute budget with every element of the scenario kept.
ACTIONS = int(os.environ.get("LAZYREP_E2E_ACTIONS", "10000"))
WRITERS = 8
SHARDS = 4
REPLICA_REGION = "eu-west-1"
BUDGET_S = 300  # the whole scenario, set-up to clean stop
LEADER = re.compile(r"Worker : (\S+) is the current leader")
SCHEMAS = {
    "users": ('{ name = "user_id", type = "S" }', None),
    "orders": ('{ name = "customer_id", type = "S" }', '{ name = "order_no", type = "N" }'),
    "carts": ('{ name = "cart_id", type = "S" }', None),
}


def plan(prefix: str) -> list[list[Op]]:
    """Each writer's SDK calls: together ACTIONS actions (records)."""
    return plan_actions(prefix, ACTIONS, WRITERS)


# -- the run ----------------------------------------------------------------------------------


def write_topology(path: Path, run: str) -> Path:
    lines = [
        f'[stream]\nname = "rep-{run}"\nregion = "us-east-1"\nshards = {SHARDS}\n',
        f'[applier]\ntombstone_table = "tombstones-{run}"\n',
        f'[dead_letter]\nkind = "sqs"\nname = "dlq-{run}"\n',
    ]
    for name, (partition, sort) in SCHEMAS.items():
        sort_line = f"\nsort_key = {sort}" if sort else ""
        lines.append(f"[tables.{run}{name}]\npartition_key = {partition}{sort_line}\n")
    # A short deadline (72 s) makes the pacer spend fast: the test cannot wait 20 hours.
    lines.append(
        f'[replicas.eu]\nregion = "{REPLICA_REGION}"\nmax_wcu = 20000\n'
        f'deadline_hours = 0.02\napplication_name = "app-{run}"\n'
        f'tables = {{ "{run}users" = "{run}users-replica" }}\n'
    )
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Scenario:
    """Clients, deadlines and checks shared by the steps of the test."""

    def __init__(self, topology: Topology, workers: list[Worker], started: float) -> None:
        self.topology = topology
        self.workers = workers
        self.started = started
        self.stream = topology.stream.name
        self.app = topology.replicas["eu"].application_name
        self.kinesis = boto3.client("kinesis", region_name="us-east-1")
        self.leases = boto3.client("dynamodb", region_name=REPLICA_REGION)  # as on AWS
        self.replica = boto3.client("dynamodb", region_name=REPLICA_REGION)
        self.timeline: list[tuple[float, str]] = []

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
                tails = "\n\n".join(f"== {w.worker_id}\n{w.tail()}" for w in self.workers)
                pytest.fail(f"timed out waiting for {what}; {self.timeline}\n{tails}")
            time.sleep(1)
        self.mark(what)

    def lease_owners(self) -> dict[str, str]:
        with contextlib.suppress(Exception):
            items = self.leases.scan(TableName=self.app, ConsistentRead=True)["Items"]
            return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S", "") for i in items}
        return {}

    def applied(self) -> int:
        with contextlib.suppress(Exception):
            progress = read_status(self.replica, status_table_name(self.app))
            return sum(p.applied + p.skipped_stale + p.condition_failed for p in progress)
        return 0

    def leader(self) -> str | None:
        """The KCL leader (it alone assigns leases), from the workers' latest log line on it."""
        latest: tuple[str, str] | None = None
        for worker in self.workers:
            for line in worker.lines():
                match = LEADER.search(line)
                if match and (latest is None or line[:23] > latest[0]):
                    latest = (line[:23], match.group(1))
        return None if latest is None else latest[1]

    def rates(self) -> str:
        """Each shard's owner and pacer rate (WCU/s), for the timeline."""
        with contextlib.suppress(Exception):
            progress = read_status(self.replica, status_table_name(self.app))
            return ", ".join(
                f"{p.shard_id[-2:]}:{p.owner.split('/')[0]}:{p.state[:4]}:"
                f"{(p.pacer or {}).get('rate_wcu')}"
                for p in progress
            )
        return "?"

    def split(self) -> str:
        shard = self.kinesis.list_shards(StreamName=self.stream)["Shards"][0]
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        self.kinesis.split_shard(
            StreamName=self.stream,
            ShardToSplit=shard["ShardId"],
            NewStartingHashKey=str((low + high) // 2),
        )
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 1}
        )
        return str(shard["ShardId"])

    def replica_contents(self) -> dict[str, dict[str, Any]]:
        target = self.topology.replicas["eu"]
        return {
            name: unordered_sets(table_contents(self.replica, target.replica_table(name)))
            for name in self.topology.tables
        }


def produce_half(topology: Path, plans: list[list[Op]], half: int) -> int:
    """Send one half of every writer's calls, writers in parallel (each owns its items)."""
    halves = [ops[: len(ops) // 2] if half == 0 else ops[len(ops) // 2 :] for ops in plans]
    return produce(topology, halves)


def require_child_shards(kinesis: Any, run: str) -> None:
    """The KCL cannot finish a closed shard without ChildShards at its end (docs/REPLICA.md)."""
    stream = f"probe-{run}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    kinesis.split_shard(
        StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
    )
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    reply: dict[str, Any] = {}
    for _ in range(5):  # the end shows once the iterator passes the shard's last sequence number
        reply = kinesis.get_records(ShardIterator=iterator)
        iterator = reply.get("NextShardIterator")
        if iterator is None:
            break
    kinesis.delete_stream(StreamName=stream)
    if reply.get("NextShardIterator") is None and not reply.get("ChildShards"):
        pytest.fail(
            "the local stack's Kinesis ends a closed shard without ChildShards: the KCL would "
            "retry that shard for ever and never start its children (see docs/REPLICA.md)"
        )


@pytest.fixture
def reference_pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


@pytest.mark.timeout(BUDGET_S + 120)
def test_two_workers_replicate_through_split_and_sigkill(
    stack_env: LocalStack, tmp_path: Path, reference_pool: ProcessPoolExecutor
) -> None:
    started = time.monotonic()
    run = f"r{uuid.uuid4().hex[:6]}"
    path = write_topology(tmp_path / "topology.toml", run)
    topology = load_topology(path)
    plans = plan(run)
    expected: Future[dict[str, dict[str, Any]]] = reference_pool.submit(
        reference_tables, str(path), plans
    )

    # GIVEN the stream, the replica's tables in another region, and the dead-letter queue
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    require_child_shards(kinesis, run)
    kinesis.create_stream(StreamName=topology.stream.name, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=topology.stream.name, WaiterConfig={"Delay": 1}
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"dlq-{run}")["QueueUrl"]
    create_topology_tables(
        boto3.client("dynamodb", region_name=REPLICA_REGION),
        topology,
        table_map=topology.replicas["eu"].tables,
    )

    # WHEN two workers of the replica start, and the first half of the workload is written
    workers = [start_worker(path, worker_id, tmp_path) for worker_id in ("wA", "wB")]
    scenario = Scenario(topology, workers, started)
    try:
        first = produce_half(path, plans, 0)
        scenario.mark(f"produced {first} actions")
        scenario.wait("first records applied", lambda: scenario.applied() > 0, 150)

        # AND the stream is split while they consume it, then the second half is written
        parent = scenario.split()
        scenario.mark(f"split {parent}")
        second = produce_half(path, plans, 1)
        scenario.mark(f"produced {second} more actions")
        assert first + second == sum(len(op.actions) for ops in plans for op in ops) >= ACTIONS

        # AND a worker's daemon (the JVM and its record processors) is killed mid-way: one
        # that holds leases and is not the KCL leader (KCL 3 reassigns the leases of a dead
        # worker only from the leader, and a dead leader's lock takes 2 minutes to expire)
        victims: list[Worker] = []

        def victim_working() -> bool:
            owners = scenario.lease_owners().values()
            leader = scenario.leader()
            victims[:] = [
                w
                for w in workers
                if leader is not None
                and w.worker_id != leader
                and any(owner == w.worker_id for owner in owners)
                and any(e.get("event") == "initialize" for e in w.json_events())
            ]
            return bool(victims) and scenario.applied() < 0.9 * (first + second)

        scenario.wait("a worker that is not the leader holds leases", victim_working, 90)
        victim = victims[0]
        daemon = victim.daemon_pid()
        assert daemon is not None
        os.killpg(daemon, signal.SIGKILL)
        scenario.mark(f"SIGKILL to {victim.worker_id}'s daemon group {daemon}")

        def restarted() -> bool:
            starts = [e for e in victim.json_events() if e.get("event") == "started"]
            return len(starts) >= 2

        scenario.wait(f"{victim.worker_id} restarted by its supervisor", restarted, 30)

        # THEN the replica converges to the reference model
        expected_tables = expected.result(timeout=max(1, BUDGET_S - (time.monotonic() - started)))
        scenario.mark("reference computed")
        latest: dict[str, dict[str, Any]] = {}

        progress_at = [time.monotonic()]

        def converged() -> bool:
            nonlocal latest
            if time.monotonic() - progress_at[0] > 15:
                progress_at[0] = time.monotonic()
                scenario.mark(
                    f"{scenario.applied()} records applied by current owners; {scenario.rates()}"
                )
            latest = scenario.replica_contents()
            return latest == expected_tables

        try:
            scenario.wait("replica equals the reference", converged, BUDGET_S)
        except pytest.fail.Exception:
            for name, items in expected_tables.items():
                got = latest.get(name, {})
                missing = sorted(set(items) - set(got))[:5]
                wrong = [k for k in items if k in got and got[k] != items[k]][:5]
                extra = sorted(set(got) - set(items))[:5]
                print(f"{name}: missing {missing} wrong {wrong} extra {extra}", file=sys.stderr)
                for key in wrong[:2]:
                    print(f"  {key}: replica {got[key]}\n  reference {items[key]}", file=sys.stderr)
            raise
        assert sum(len(items) for items in expected_tables.values()) > 100

        # AND nothing was parked, and the split's parent was checkpointed at its end
        assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages") is None
        leases = scenario.leases.scan(TableName=scenario.app, ConsistentRead=True)["Items"]
        checkpoints = {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in leases}
        assert checkpoints.get(parent) == "SHARD_END", checkpoints
        assert len(checkpoints) == SHARDS + 2

        # AND both workers processed shards (the leases were shared), each shard reporting
        # its progress in the status table
        for worker in workers:
            initialized = {
                e["shard_id"] for e in worker.json_events() if e.get("event") == "initialize"
            }
            assert initialized, f"{worker.worker_id} never processed a shard"
        status = {
            p.shard_id: p for p in read_status(scenario.replica, status_table_name(scenario.app))
        }
        assert set(status) == set(checkpoints)
        assert status[parent].state == "ended"

        # AND SIGTERM stops each worker cleanly: shutdownRequested, then exit 0
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.process.wait(timeout=90) == 0, worker.tail()
        scenario.mark("both workers stopped")
    finally:
        for worker in workers:
            for group in [*worker.daemon_groups(), worker.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    if group_alive(group):
                        os.killpg(group, signal.SIGKILL)
            worker.process.wait(timeout=30)
        print(f"replica e2e timeline (s): {scenario.timeline}", file=sys.stderr)
    # AND no supervisor, daemon or record processor is left behind
    groups = {w.process.pid for w in workers}
    for worker in workers:
        groups |= set(worker.daemon_groups())
    deadline = time.monotonic() + 10
    while any(map(group_alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [g for g in groups if group_alive(g)], "processes left behind"
