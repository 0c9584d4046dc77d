"""Helpers shared by the end-to-end tests over the real MultiLangDaemon.

A replica worker is `python -m lazyrep.cli_replica run` (a supervisor over a daemon)
started in its own session, its output in a log file; `stop_workers` ends it and
everything it started, by process group. The reference model (every action applied
once, in order) runs in a separate process with in-process moto, so it costs the local
stack nothing and leaves the test process's botocore untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from binlog.tables import create_table
from binlog.topology import load_topology
from emulators.procs import group_alive
from lazyrep.reference import apply_plainly, table_contents, unordered_sets
from lazyrep.replica_process import spawn_replica_worker
from lazyrep.workload import Op, ops_for_writer
from producer import Producer

# -- workloads and the reference model -------------------------------------------------------


def plan_actions(prefix: str, actions: int, writers: int, *, items: int = 50) -> list[list[Op]]:
    """Each writer's SDK calls (the demo workload's mix): together about `actions` records."""
    per_writer = actions // writers
    plans = []
    for writer in range(writers):
        ops, count = [], 0
        for op in ops_for_writer(writer, 10 * per_writer, prefix=prefix, items=items):
            if count >= per_writer:
                break
            ops.append(op)
            count += len(op.actions)
        plans.append(ops)
    return plans


def reference_tables(
    topology_path: str, plans: list[list[Op]], ignore: tuple[str, ...] = ("_lr_version", "_lr_id")
) -> dict[str, dict[str, Any]]:
    """Every call of `plans` applied once, in order, to moto in this (separate) process."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]  # in-process moto, not the local stack
    topology = load_topology(topology_path)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name, schema in topology.tables.items():
            create_table(client, name, schema)
        for ops in plans:
            for op in ops:
                apply_plainly(client, op.table, op.method, op.kwargs)
        return {
            name: unordered_sets(table_contents(client, name, ignore=ignore))
            for name in topology.tables
        }


def produce(
    topology: Path,
    plans: Sequence[Sequence[Op]],
    *,
    pause_s: float = 0.0,
    gate: threading.Event | None = None,
    gate_at: float = 0.75,
) -> int:
    """Send every writer's calls, writers in parallel (each owns its items); records sent.

    `pause_s` between calls spreads the writes out (writes that continue meanwhile);
    with `gate`, each writer waits for it to be set before the last `1 - gate_at` of its
    calls, so some writes surely come after whatever sets it.
    """
    sent = [0] * len(plans)
    with Producer(topology) as producer:

        def write(writer: int) -> None:
            ops = plans[writer]
            for index, op in enumerate(ops):
                if gate is not None and index == int(len(ops) * gate_at):
                    gate.wait(timeout=600)
                getattr(producer, op.method)(op.table, **op.kwargs)
                sent[writer] += len(op.actions)
                if pause_s:
                    producer.flush()
                    time.sleep(pause_s)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(len(plans))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        producer.flush()
    return sum(sent)


# -- workers ---------------------------------------------------------------------------------


@dataclass
class Worker:
    """One `lazyrep replica run` (a supervisor over a daemon) and its log."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path
    events: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def json_events(self) -> list[dict[str, Any]]:
        """Our JSON log lines: the supervisor's, and the workers' (which the daemon echoes)."""
        found = []
        for line in self.lines():
            start = line.find('{"ts"')
            if start < 0:
                continue
            end = line.rfind("}")
            with contextlib.suppress(ValueError):
                found.append(json.loads(line[start : end + 1]))
        return found

    def daemon_groups(self) -> list[int]:
        """Every daemon the supervisor started (each leads its own process group)."""
        return [e["daemon_pid"] for e in self.json_events() if e.get("event") == "started"]

    def daemon_pid(self) -> int | None:
        """The supervisor's child: the JVM (leader of its own process group)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            pids = children.read_text().split()
            return int(pids[0]) if pids else None
        return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines()[-lines:])


def start_worker(
    topology: Path, worker_id: str, tmp_path: Path, *, properties: Path | None = None
) -> Worker:
    """`lazyrep replica run` for replica `eu`: rendered local properties (with the test's
    overrides), or `properties` run as they are."""
    log = tmp_path / f"{worker_id}.log"
    env = dict(os.environ, LAZYREP_STATUS_INTERVAL_S="2", LAZYREP_CHECKPOINT_INTERVAL_S="5")
    if properties is not None:
        source = ["--properties", str(properties)]
    else:
        source = [
            "--set",
            "maxRecords=2000",
            # KCL 3 rebalances by throughput, which a paced consumer keeps changing:
            # every 30 s here instead of every 9 s (3 x leaseAssignmentIntervalMillis)
            "--set",
            "varianceBalancingFrequency=10",
        ]
    process = spawn_replica_worker(topology, "eu", worker_id, log, env=env, extra=source)
    return Worker(worker_id, process, log)


def kill_workers(workers: Sequence[Worker]) -> set[int]:
    """SIGKILL every process group a worker started; the groups (for `left_behind`)."""
    groups: set[int] = set()
    for worker in workers:
        mine = [*worker.daemon_groups(), worker.process.pid]
        groups |= set(mine)
        for group in mine:
            with contextlib.suppress(ProcessLookupError):
                if group_alive(group):
                    os.killpg(group, signal.SIGKILL)
        worker.process.wait(timeout=30)
    return groups


def left_behind(groups: set[int], timeout_s: float = 10.0) -> list[int]:
    """The groups still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while any(map(group_alive, groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [g for g in groups if group_alive(g)]
