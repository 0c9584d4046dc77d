"""The lazy path under fire: producer -> stream -> real KCL MultiLangDaemon workers -> replica.

One run: a fresh world (stream, the suite's tables, an SQS dead-letter queue, a replica
target `eu` in another region with its tables), one or two `lazyrep replica run`
workers (a supervisor over the real daemon, each in its own session), the suite's
workload produced through the SDK, and meanwhile the faults of the scenario: the
daemon of a worker killed with SIGKILL again and again (the supervisor restarts it), a
record processor (a `kcl_consumer.worker` child) killed with SIGKILL, two workers whose
leases move between them, SplitShard and MergeShards, and the replica's DynamoDB
unavailable for a window (a fault proxy between the record processors and moto
answers every request with throttling or 5xx; the daemon's lease table is reached
directly). Then the replica tables are compared with the reference model until they
converge or time runs out: a record checkpointed before it was applied and then lost
to a kill shows as `lost`, a record applied twice as `duplicated`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import boto3

from binlog.clients import client_config
from binlog.tables import create_topology_tables
from emulators.faultproxy import FaultProxy
from emulators.procs import group_alive
from emulators.stack import KCL_KINESIS_ENV, h2c_front
from kcl_consumer.status import read_status, status_table_name
from lazyrep.reliability.accounting import Tally, compare
from lazyrep.reliability.framework import Progress, Result, Scale
from lazyrep.reliability.model import ModelProcess, Tables, contents
from lazyrep.reliability.primary import World, direct_client, produce, split_then_merge
from lazyrep.reliability.workload import action_count, plan
from lazyrep.replica_process import spawn_replica_worker
from lazyrep.workload import Op
from producer import Producer, ProducerConfig

REPLICA_REGION = "eu-west-1"
REPLICA = "eu"
Rules = tuple[Mapping[str, Any], ...]

OUTAGE_RULES: Rules = (
    {"fault": "throttle", "operation": "*", "probability": 0.3},
    {
        "fault": "server_error",
        "operation": "*",
        "probability": 0.5,
        "error_code": "ServiceUnavailable",
    },
    {"fault": "server_error", "operation": "*"},
)
"""Every request of the record processors to DynamoDB refused: throttled, 503, 500."""

DYNAMODB_STORM: Rules = (
    {"fault": "throttle", "operation": "*", "probability": 0.15},
    {"fault": "server_error", "operation": "*", "probability": 0.05},
    {
        "fault": "server_error",
        "operation": "*",
        "probability": 0.03,
        "error_code": "ServiceUnavailable",
    },
)
"""Throttling and 5xx on some of the record processors' requests, all through the replay."""

KINESIS_STORM: Rules = (
    {"fault": "throttle", "operation": "GetRecords", "probability": 0.25},
    {"fault": "server_error", "operation": "GetRecords", "probability": 0.05},
    {"fault": "server_error", "operation": "GetShardIterator", "probability": 0.05},
    {"fault": "throttle", "operation": "ListShards", "probability": 0.1},
)
"""Throttling and 5xx on the daemons' reads of the stream, all through the replay."""


# -- one worker: a supervisor over the real daemon --------------------------------------------


@dataclass
class LazyWorker:
    """One `lazyrep replica run` (a supervisor over a daemon, its own session) and its log."""

    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, Any]]:
        """Our JSON log lines: the supervisor's, and the record processors' (the daemon echoes)."""
        found = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                start = line.find('{"ts"')
                if start < 0:
                    continue
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line[start : line.rfind("}") + 1]))
        return found

    def lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace").splitlines()
        return []

    def starts(self) -> int:
        return sum(1 for e in self.events() if e.get("event") == "started")

    def daemon_pid(self) -> int | None:
        """The supervisor's child: the JVM (leader of its own process group)."""
        pid = self.process.pid
        with contextlib.suppress(OSError, ValueError):
            pids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return int(pids[0]) if pids else None
        return None

    def record_processors(self) -> list[int]:
        """The daemon's `kcl_consumer.worker` children (one per shard it holds)."""
        daemon = self.daemon_pid()
        if daemon is None:
            return []
        found: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{daemon}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    for pid in (task / "children").read_text().split():
                        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                        if b"kcl_consumer" in cmdline or b"lazyrep" in cmdline:
                            found.append(int(pid))
        return found

    def groups(self) -> list[int]:
        """Every process group this worker started: its daemons' and its own."""
        daemons = [int(e["daemon_pid"]) for e in self.events() if e.get("event") == "started"]
        return [*daemons, self.process.pid]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.lines()[-lines:])


def start_worker(
    topology: Path,
    worker_id: str,
    directory: Path,
    *,
    overrides: Mapping[str, str],
    env: Mapping[str, str],
) -> LazyWorker:
    """`lazyrep replica run` for replica `eu`, local properties with `overrides`."""
    log = directory / f"{worker_id}.log"
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    process = spawn_replica_worker(
        topology, REPLICA, worker_id, log, env=dict(os.environ, **env), extra=sets
    )
    return LazyWorker(worker_id, process, log)


def stop_workers(workers: list[LazyWorker], timeout_s: float = 60.0) -> list[int]:
    """SIGTERM each supervisor (a clean stop), SIGKILL every group left; the groups still
    alive 10 s later (should be none)."""
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    groups: set[int] = set()
    for worker in workers:
        groups |= set(worker.groups())
        for group in worker.groups():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group_alive(group):
                    os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=30)
    until = time.monotonic() + 10
    while any(map(group_alive, groups)) and time.monotonic() < until:
        time.sleep(0.2)
    return [g for g in groups if group_alive(g)]


# -- the scenario ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LazyScenario:
    """A run of the lazy path with the given faults."""

    name: str
    family: str
    description: str
    actions: int = 4000
    writers: int = 4
    workers: int = 2
    shards: int = 4
    max_wcu: int = 2000
    """The pacer's ceiling: low enough that the replay lasts while the faults happen."""
    deadline_hours: float = 0.05
    """The replica's deadline: the pacer speeds up as the oldest record nears it."""
    sigkills: int = 0
    """Daemon kills (full scale; at least 3, or all of them if fewer)."""
    kill_interval_s: float = 5.0
    child_kill: bool = False
    reshard: bool = False
    outage_s: float = 0.0
    """Full-scale length of the replica's DynamoDB outage (0: none)."""
    steal_leases: bool = False
    """Aggressive lease settings so that leases move between the workers."""
    dynamodb_storm: Rules = ()
    """Fault rules on the record processors' requests to the replica, once records flow."""
    kinesis_storm: Rules = ()
    """Fault rules on the daemons' Kinesis requests (through nghttpx), from their start."""
    produce_s: float = 0.0
    """Spread the writes over this long (full scale; scaled), so that records keep arriving
    while the faults happen; 0: as fast as the producer goes."""
    storm_s: float = 120.0
    """How long the storms blow once records flow (full scale; scaled, at least 10 s)."""
    seed: int = 1
    converge_timeout_s: float = 900.0
    overrides: Mapping[str, str] = field(default_factory=dict)

    def run(self, scale: Scale, progress: Progress) -> Result:
        return run_lazy(self, scale, progress)


def replica_toml(app: str, max_wcu: int, deadline_hours: float) -> str:
    """The replica target: same table names, another region; a short deadline (minutes,
    not hours) so that the pacer never waits on a 24-hour average."""
    return (
        f'[replicas.{REPLICA}]\nregion = "{REPLICA_REGION}"\nmax_wcu = {max_wcu}\n'
        f'deadline_hours = {deadline_hours}\napplication_name = "{app}"\n'
    )


class Run:
    """One run's workers, clients, timeline and observations."""

    def __init__(self, spec: LazyScenario, world: World, progress: Progress) -> None:
        self.spec = spec
        self.world = world
        self.progress = progress
        self.started = time.monotonic()
        self.app = world.topology.replicas[REPLICA].application_name
        self.replica = boto3.session.Session().client(
            "dynamodb", region_name=REPLICA_REGION, config=client_config(max_attempts=3, pool=8)
        )
        self.workers: list[LazyWorker] = []
        self.timeline: list[str] = []
        self.owner_changes = 0
        self.owners_seen: dict[str, set[str]] = {}
        self.stop = threading.Event()
        self.kills: list[str] = []
        self.child_kill: dict[str, Any] = {}
        self.outage: dict[str, Any] = {}
        self.storms: dict[str, dict[str, int]] = {}

    def mark(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:.1f}s {what}")
        self.progress(f"{self.spec.name}: {what}")

    def lease_owners(self) -> dict[str, str]:
        with contextlib.suppress(Exception):
            items = self.replica.scan(TableName=self.app, ConsistentRead=True)["Items"]
            return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S", "") for i in items}
        return {}

    def watch_leases(self) -> None:
        """Count lease owner changes (one worker's lease taken by another, or a dead one's
        taken over), sampling the lease table every second."""
        last: dict[str, str] = {}
        while not self.stop.wait(1.0):
            for shard, owner in self.lease_owners().items():
                if not owner:
                    continue
                before = last.get(shard)
                if before is not None and before != owner:
                    self.owner_changes += 1
                last[shard] = owner
                self.owners_seen.setdefault(shard, set()).add(owner)

    def applied(self) -> int:
        with contextlib.suppress(Exception):
            rows = read_status(self.replica, status_table_name(self.app))
            return sum(p.applied + p.skipped_stale + p.condition_failed for p in rows)
        return 0

    def leader(self) -> str | None:
        """The KCL leader's worker id, from the latest log line that names it."""
        latest: tuple[str, str] | None = None
        for worker in self.workers:
            for line in worker.lines():
                at = line.find("is the current leader")
                if at < 0 or "Worker : " not in line:
                    continue
                name = line[line.find("Worker : ") + 9 : at].strip()
                if latest is None or line[:23] > latest[0]:
                    latest = (line[:23], name)
        return None if latest is None else latest[1]

    def shards_never_read(self) -> list[str]:
        """The stream's shards that no record processor of any worker initialized: a lease
        stranded somewhere (e.g. a graceful hand-off that never ended, docs/REPLICA.md)."""
        with contextlib.suppress(Exception):
            kinesis = direct_client("kinesis")
            shards = kinesis.list_shards(StreamName=self.world.stream)["Shards"]
            read = {
                e.get("shard_id")
                for w in self.workers
                for e in w.events()
                if e.get("event") == "initialize"
            }
            return sorted(s["ShardId"] for s in shards if s["ShardId"] not in read)
        return ["(ListShards failed)"]

    def graceful_handoffs(self) -> int:
        """Lease hand-offs the KCL leader began (should be none: they are off)."""
        marker = "Initiated graceful lease handoff"
        return sum(1 for w in self.workers for line in w.lines() if marker in line)

    def wait(self, what: str, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                self.mark(f"gave up waiting for {what}")
                return False
            time.sleep(0.5)
        self.mark(what)
        return True

    def victim(self) -> LazyWorker:
        """A worker that is not the KCL leader (a dead leader's lock takes 2 minutes to
        expire in KCL 3, and only the leader reassigns a dead worker's leases)."""
        leader = self.leader() or ""
        others = [w for w in self.workers if leader.split("#")[0] != w.worker_id]
        return others[-1] if others else self.workers[-1]

    # -- the faults --

    def sigkill_daemons(self, kills: int) -> None:
        """Kill a non-leader worker's daemon group with SIGKILL `kills` times, each once it is
        processing again (it initialized a shard since its last start) plus 1-`interval` s,
        or after 90 s whatever it does; wait for the supervisor's restart each time."""
        rng = random.Random(self.spec.seed)
        for n in range(kills):
            victim = self.victim()
            starts = victim.starts()

            def working(victim: LazyWorker = victim) -> bool:
                events = victim.events()
                last_start = max(
                    (i for i, e in enumerate(events) if e.get("event") == "started"), default=-1
                )
                return any(e.get("event") == "initialize" for e in events[last_start + 1 :])

            self.wait(f"{victim.worker_id} processing (kill {n + 1})", working, 90)
            time.sleep(rng.uniform(1.0, max(1.0, self.spec.kill_interval_s)))
            daemon = victim.daemon_pid()
            if daemon is None:
                self.mark(f"{victim.worker_id} has no daemon to kill")
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon, signal.SIGKILL)
            self.kills.append(f"{victim.worker_id}:{daemon}")
            self.mark(f"SIGKILL {victim.worker_id}'s daemon group {daemon}")

            def restarted(victim: LazyWorker = victim, starts: int = starts) -> bool:
                return victim.starts() > starts

            self.wait(f"{victim.worker_id} restarted", restarted, 60)

    def kill_child(self) -> None:
        """SIGKILL one record processor of a worker and observe what its daemon does."""
        victim = self.victim()
        if not self.wait(
            f"{victim.worker_id} has record processors",
            lambda: bool(victim.record_processors()),
            120,
        ):
            self.child_kill = {"killed": False}
            return
        daemon = victim.daemon_pid()
        starts = victim.starts()
        child = victim.record_processors()[0]
        killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        self.mark(f"SIGKILL record processor {child} of {victim.worker_id}'s daemon {daemon}")
        restarted = self.wait(
            f"{victim.worker_id}'s daemon exited and was restarted",
            lambda: victim.starts() > starts,
            90,
        )
        codes = [
            e.get("code")
            for e in victim.events()
            if e.get("event") == "restarting" and e.get("restart") is not None
        ]
        self.child_kill = {
            "killed": True,
            "worker": victim.worker_id,
            "daemon_exited": restarted,
            "daemon_exit_code": codes[-1] if codes and restarted else None,
            "seconds_to_restart": round(time.monotonic() - killed_at, 1) if restarted else None,
        }

    def storm(self, proxies: Proxies, seconds: float) -> None:
        """Throttling and 5xx on a share of the workers' requests (the scenario's rules)
        for `seconds`, then calm. (Not "until most is applied": the status table's counts
        start again when a lease moves.)"""
        storms = [
            (name, proxy, rules)
            for name, proxy, rules in (
                ("dynamodb", proxies.dynamodb, self.spec.dynamodb_storm),
                ("kinesis", proxies.kinesis, self.spec.kinesis_storm),
            )
            if proxy is not None and rules
        ]
        for name, proxy, rules in storms:
            if name == "dynamodb":  # the Kinesis storm blows since the workers started
                proxy.reset_stats()
                proxy.set_rules([dict(r) for r in rules], seed=self.spec.seed)
            self.mark(f"{name} storm on: {len(rules)} rules")
        time.sleep(seconds)
        for name, proxy, _ in storms:
            proxy.clear()
            stats = proxy.stats
            self.storms[name] = {
                "throttled": stats.faults("throttle"),
                "server_errors": stats.faults("server_error"),
            }
        self.mark(f"storms over: {self.storms}")

    def outage_window(self, proxy: FaultProxy, seconds: float) -> None:
        """The replica's DynamoDB refuses every record processor request for `seconds`."""
        proxy.reset_stats()
        proxy.set_rules([dict(r) for r in OUTAGE_RULES], seed=self.spec.seed)
        self.mark(f"replica DynamoDB down for {seconds:.0f} s")
        began = [e for w in self.workers for e in w.events() if e.get("event") == "started"]
        time.sleep(seconds)
        proxy.clear()
        stats = proxy.stats
        self.outage = {
            "seconds": round(seconds, 1),
            "throttled": stats.faults("throttle"),
            "server_errors": stats.faults("server_error"),
            "restarts_during": sum(
                1 for w in self.workers for e in w.events() if e.get("event") == "started"
            )
            - len(began),
        }
        self.mark(f"replica DynamoDB back: {self.outage}")


def _producer(world: World) -> Producer:
    return Producer(
        world.path,
        client=direct_client("kinesis", pool=8),
        config=ProducerConfig(max_attempts=60, backoff_base_ms=20, backoff_max_ms=500),
    )


def _load(
    run: Run, plans: list[list[Op]], consuming: threading.Event, seconds: float
) -> list[str]:
    """Produce the plans over `seconds`; with reshards, in thirds: split after the first (once
    the workers consume), merge after the second."""
    reshards: list[str] = []
    admin = direct_client("kinesis")
    with _producer(run.world) as producer:
        if not run.spec.reshard:
            produce(producer, plans, 0.0, 1.0, seconds=seconds)
            producer.flush()
            return reshards
        for third in range(3):
            produce(producer, plans, third / 3, (third + 1) / 3, seconds=seconds / 3)
            producer.flush()
            if third < 2:
                consuming.wait(timeout=180)
                reshards.append(split_then_merge(admin, run.world.stream, third))
                run.mark(reshards[-1])
    return reshards


def run_lazy(spec: LazyScenario, scale: Scale, progress: Progress) -> Result:
    """Run one lazy-path scenario and count what it lost, doubled and diverged."""
    result = Result(spec.name)
    began = time.monotonic()
    run_id = f"l{uuid.uuid4().hex[:6]}"
    plans = plan(spec.writers, scale.count(spec.actions, 40), prefix=run_id)
    result.produced = action_count(plans)
    with contextlib.ExitStack() as stack:
        directory = Path(tempfile.mkdtemp(prefix="lazyrep-rel-"))
        # The workers' logs outlive a failed run (its `logs`): they say what went wrong.
        stack.callback(_keep_logs_if_failed, result, directory)
        expected = stack.enter_context(ModelProcess()).submit(run_id, plans)
        progress(f"{spec.name}: creating the world of run {run_id}")
        world = World.create(
            run_id,
            directory,
            shards=spec.shards,
            replicas=replica_toml(f"app-{run_id}", spec.max_wcu, spec.deadline_hours),
        )
        run = Run(spec, world, progress)
        create_topology_tables(run.replica, world.topology)
        proxies = _start_workers(run, stack, directory)
        stack.callback(lambda: result.extra.update(left_behind=stop_workers(run.workers)))
        watcher = threading.Thread(target=run.watch_leases, daemon=True)
        watcher.start()
        stack.callback(run.stop.set)
        run.mark(f"{spec.workers} workers started, producing {result.produced} actions")
        consuming = threading.Event()
        loaded: dict[str, Any] = {}

        def load() -> None:
            try:
                loaded["reshards"] = _load(run, plans, consuming, spec.produce_s * scale.factor)
                run.mark("produced everything")
            except Exception as exc:  # surfaced as a failure of the run
                loaded["error"] = exc

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        if run.wait("first records applied", lambda: run.applied() > 0, 240):
            consuming.set()
        else:
            result.failures.append("no record was applied within 240 s")
        _faults(run, spec, scale, proxies)
        consuming.set()
        loader.join(timeout=900)
        if "error" in loaded:
            result.failures.append(f"producing failed: {loaded['error']!r}")
        reference = expected.result(timeout=600)
        tally = _converge(run, run_id, reference, spec.converge_timeout_s)
        letters = world.letters()
        run.stop.set()
        stop_workers(run.workers)
        unread = run.shards_never_read()
        _fill(result, run, tally, letters, loaded.get("reshards", []), scale)
        result.extra["shards_never_read"] = unread
        result.expect(not unread, f"no record processor ever read {unread}")
    result.seconds = time.monotonic() - began
    return result


class Proxies(NamedTuple):
    """The fault proxies of a run: before the replica's DynamoDB (record processors) and
    before kinesalite (the daemons' Kinesis client, through an h2c front)."""

    dynamodb: FaultProxy | None
    kinesis: FaultProxy | None


KEEP_LOGS_ENV = "LAZYREP_KEEP_LOGS"
"""Set (to anything) to keep the workers' logs of a run that passed too."""


def _keep_logs_if_failed(result: Result, directory: Path) -> None:
    if result.ok and not os.environ.get(KEEP_LOGS_ENV):
        shutil.rmtree(directory, ignore_errors=True)
    else:
        result.extra["logs"] = str(directory)


def _start_workers(run: Run, stack: contextlib.ExitStack, directory: Path) -> Proxies:
    """Start the run's workers, behind the fault proxies the scenario needs."""
    env = {"LAZYREP_STATUS_INTERVAL_S": "2", "LAZYREP_CHECKPOINT_INTERVAL_S": "5"}
    overrides = {"maxRecords": "1000", "varianceBalancingFrequency": "10"}
    dynamodb: FaultProxy | None = None
    kinesis: FaultProxy | None = None
    if run.spec.outage_s or run.spec.dynamodb_storm:
        moto = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
        dynamodb = stack.enter_context(FaultProxy(upstream=moto, seed=run.spec.seed))
        # the record processors reach DynamoDB through the proxy; the daemon's leases not
        env["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.url
        overrides["dynamoDBEndpoint"] = moto
    if run.spec.kinesis_storm:
        kinesalite = os.environ["AWS_ENDPOINT_URL_KINESIS"]
        kinesis = stack.enter_context(FaultProxy(upstream=kinesalite, seed=run.spec.seed + 1))
        env[KCL_KINESIS_ENV] = stack.enter_context(h2c_front(kinesis.url, directory))
        # From the daemons' start: once the processors are paced, reads are few.
        kinesis.set_rules([dict(r) for r in run.spec.kinesis_storm], seed=run.spec.seed)
    if run.spec.steal_leases:
        overrides.update(
            {
                # The leader rebalances every 6 s: leases move all along. Every second,
                # they moved faster than the processors got going (docs/RELIABILITY.md).
                "failoverTimeMillis": "2000",
                "leaseAssignmentIntervalMillis": "2000",
                "varianceBalancingFrequency": "3",
            }
        )
    overrides.update(run.spec.overrides)
    for n in range(run.spec.workers):
        run.workers.append(
            start_worker(run.world.path, f"w{chr(65 + n)}", directory, overrides=overrides, env=env)
        )
    return Proxies(dynamodb, kinesis)


def _faults(run: Run, spec: LazyScenario, scale: Scale, proxies: Proxies) -> None:
    """The scenario's faults, one after another, while the replay runs (the outage first:
    it needs unapplied records to refuse)."""
    if proxies.dynamodb is not None and spec.outage_s:
        run.outage_window(proxies.dynamodb, max(10.0, spec.outage_s * scale.factor))
    if spec.dynamodb_storm or spec.kinesis_storm:
        run.storm(proxies, max(10.0, spec.storm_s * scale.factor))
    if spec.child_kill:
        run.kill_child()
    if spec.sigkills:
        run.sigkill_daemons(scale.count(spec.sigkills, min(3, spec.sigkills)))


def _converge(run: Run, run_id: str, reference: Tables, timeout_s: float) -> Tally:
    """Compare the replica with the reference until they are equal or time runs out."""
    deadline = time.monotonic() + timeout_s
    tally = Tally()
    while True:
        try:
            tally = compare(reference, contents(run.replica, run_id))
        except Exception as exc:  # a scan that failed is retried
            run.mark(f"comparison failed: {exc!r}")
        if tally.diverged == 0 and tally.items:
            run.mark("replica equals the reference model")
            return tally
        if time.monotonic() > deadline:
            run.mark(f"did not converge: {tally.diverged} items differ")
            return tally
        time.sleep(3)


def _fill(
    result: Result,
    run: Run,
    tally: Tally,
    letters: Mapping[str, Mapping[str, Any]],
    reshards: list[str],
    scale: Scale,
) -> None:
    spec = run.spec
    result.parked = len(letters)
    result.lost = max(0, tally.lost - result.parked)
    result.duplicated = tally.duplicated
    result.diverged = tally.diverged
    result.applied = result.produced - result.parked - result.lost
    events = [e for w in run.workers for e in w.events()]
    exits = Counter(str(e.get("code")) for e in events if e.get("event") == "restarting")
    restarts = sum(1 for e in events if e.get("event") == "started") - len(run.workers)
    result.extra.update(
        {
            "items_compared": tally.items,
            "workers": len(run.workers),
            "kills": len(run.kills),
            "restarts": restarts,
            "daemon_exit_codes": dict(exits),
            "retries_exhausted": sum(1 for e in events if e.get("event") == "retries_exhausted"),
            "lease_moves": run.owner_changes,
            "lease_owners_per_shard": {k: len(v) for k, v in sorted(run.owners_seen.items())},
            "lease_lost_events": sum(1 for e in events if e.get("event") == "lease_lost"),
            "graceful_handoffs": run.graceful_handoffs(),
            "timeline": run.timeline,
            "parked_by_reason": dict(Counter(str(v["reason"]) for v in letters.values())),
        }
    )
    if run.child_kill:
        result.extra["child_kill"] = run.child_kill
    if run.outage:
        result.extra["outage"] = run.outage
    if run.storms:
        result.extra["storms"] = run.storms
    if reshards:
        result.extra["reshards"] = reshards
    if tally.examples:
        result.extra["differences"] = tally.examples
    result.expect(
        result.parked == 0, f"valid actions were parked: {result.extra['parked_by_reason']}"
    )
    if spec.sigkills:
        want = scale.count(spec.sigkills, min(3, spec.sigkills))
        result.expect(len(run.kills) == want, f"{len(run.kills)} daemon kills of {want}")
        result.expect(restarts >= len(run.kills), f"{restarts} restarts for {len(run.kills)} kills")
    if spec.child_kill:
        result.expect(bool(run.child_kill.get("killed")), "no record processor was killed")
    if spec.reshard:
        result.expect(len(reshards) == 2, f"reshards done: {reshards}")
    if spec.outage_s:
        refused = run.outage.get("throttled", 0) + run.outage.get("server_errors", 0)
        result.expect(refused > 0, "the outage refused no request: it proved nothing")
    for name, rules in (("dynamodb", spec.dynamodb_storm), ("kinesis", spec.kinesis_storm)):
        if rules:
            faults = run.storms.get(name, {})
            hurt = faults.get("throttled", 0) + faults.get("server_errors", 0)
            result.expect(hurt > 0, f"the {name} storm refused no request: it proved nothing")
    if spec.steal_leases:
        result.expect(run.owner_changes > 0, "no lease moved between workers")
    result.expect(
        result.extra["graceful_handoffs"] == 0,
        "the KCL began graceful lease hand-offs: isGracefulLeaseHandoffEnabled is not off",
    )
