"""`lazyrep demo`: the whole system on the local stack, start to finish.

1. The stream, the primary tables (the stream's region), each replica's tables (its own
   region, renamed where the topology says) and the dead-letter queue.
2. One real KCL worker per replica target (`lazyrep replica run`, a MultiLangDaemon
   under its supervisor), and the local event source mapping calling the Lambda
   handler in-process, both running while the producers write.
3. Writers with the sync (boto3) and async (aiobotocore) SDKs, paced to `rate`
   actions per second: a mixed workload over three tables. Half way, a rogue raw-boto3
   writer puts invalid records that every consumer must park with their reasons.
4. Live figures: produced, the primary's progress and lag, each replica's progress,
   lag and pacer rate (from its status table).
5. Once every consumer has passed the last record of every shard: verify each replica
   against the primary (no lag allowed), the primary against the reference model, and
   read the dead-letter queue; the report says whether everything holds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from binlog.clients import boto3_client, client_config, dynamodb_client, kinesis_client
from binlog.deadletter import letter_from_document
from binlog.tables import create_topology_tables
from binlog.topology import Topology, load_topology
from emulators.procs import group_alive
from lazyrep.demo_model import expected_tables
from lazyrep.demo_primary import PrimaryFigures, PrimaryPath
from lazyrep.demo_produce import Production, refused_examples, start_writers
from lazyrep.demo_regions import RegionalDynamo
from lazyrep.demo_report import (
    DemoReport,
    LetterCount,
    PrimaryReport,
    ReplicaReport,
    TableCheck,
    verify_summary,
)
from lazyrep.demo_rogue import RogueResult, rogue_records, write_rogue_records
from lazyrep.demo_workers import ReplicaFigures, ReplicaWorker, WcuHistory, replica_figures
from lazyrep.demo_workers import start_worker as start_replica_worker
from lazyrep.reference import table_contents, unordered_sets
from lazyrep.verify import Verifier, VerifyConfig
from lazyrep.verify_progress import LagMode
from lazyrep.verify_target import Clients, resolve
from lazyrep.workload import Op, plan_writers

POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """actions: SDK actions (records) to produce; writers: half boto3 threads, half
    aiobotocore tasks; rate_per_s: actions per second over all writers; wait_s: the most
    to wait for every consumer after the last write; regional_dynamodb: each replica
    region gets its own moto server (else the stack's serves every region)."""

    actions: int = 20_000
    writers: int = 8
    rate_per_s: float = 200.0
    wait_s: float = 600.0
    regional_dynamodb: bool = True  # a moto server per replica region (lazyrep.demo_regions)

    def __post_init__(self) -> None:
        if not 100 <= self.actions <= 1_000_000:
            raise ValueError("DemoOptions.actions must be between 100 and 1000000")
        if not 2 <= self.writers <= 64 or self.writers % 2:
            raise ValueError("DemoOptions.writers must be an even number between 2 and 64")
        if not 1 <= self.rate_per_s <= 100_000:
            raise ValueError("DemoOptions.rate_per_s must be between 1 and 100000")
        if not 10 <= self.wait_s <= 3600:
            raise ValueError("DemoOptions.wait_s must be between 10 and 3600")


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """What the live display shows, once a second."""

    phase: str
    elapsed_s: float
    target: int  # SDK actions to produce
    expected_records: int  # and the rogue records
    produced: int
    primary: PrimaryFigures
    replicas: dict[str, ReplicaFigures | None]
    topology: Topology


Progress = Callable[[LiveFigures], None]


def create_resources(topology: Topology, regions: RegionalDynamo) -> None:
    """The stream, the primary's tables, each replica's tables, the dead-letter queue."""
    kinesis = kinesis_client(region=topology.stream.region)
    kinesis.create_stream(StreamName=topology.stream.name, ShardCount=topology.stream.shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=topology.stream.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    create_topology_tables(dynamodb_client(region=topology.stream.region), topology)
    for replica in topology.replicas.values():
        create_topology_tables(
            regions.client("dynamodb", replica.region), topology, table_map=replica.tables
        )
    if topology.dead_letter is not None and topology.dead_letter.kind == "sqs":
        boto3_client("sqs", region=topology.dead_letter.region).create_queue(
            QueueName=topology.dead_letter.name
        )


def _replica_complete(figures: ReplicaFigures | None, last: dict[str, int]) -> bool:
    """Every shard's applied prefix has reached the shard's last record."""
    if figures is None:
        return False
    applied = figures.applied_sequences
    return all(shard in applied and int(applied[shard]) >= n for shard, n in last.items())


def read_dead_letters(topology: Topology) -> list[LetterCount]:
    """Every letter in the queue, counted by consumer, reason and partition key."""
    if topology.dead_letter is None or topology.dead_letter.kind != "sqs":
        return []
    sqs = boto3_client("sqs", region=topology.dead_letter.region)
    url = sqs.get_queue_url(QueueName=topology.dead_letter.name)["QueueUrl"]
    counts: Counter[tuple[str, str, str]] = Counter()
    details: dict[tuple[str, str, str], str] = {}
    empty = 0
    while empty < 2:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
        ).get("Messages", [])
        empty = empty + 1 if not messages else 0
        for message in messages:
            letter = letter_from_document(message["Body"])
            key = (letter.consumer, letter.reason, letter.partition_key)
            counts[key] += 1
            details.setdefault(key, letter.detail)
    return [
        LetterCount(consumer, reason, key, n, details[(consumer, reason, key)])
        for (consumer, reason, key), n in sorted(counts.items())
    ]


def run_demo(
    topology_path: Path,
    options: DemoOptions = DemoOptions(),
    *,
    log_dir: Path,
    progress: Progress = lambda _: None,
) -> DemoReport:
    """Run the demo on whatever the AWS endpoint variables point at (the local stack).

    The replica workers' logs go to `log_dir`.
    """
    began = time.monotonic()
    topology = load_topology(topology_path)
    report = DemoReport(actions_target=options.actions, replicas_expected=sorted(topology.replicas))
    plans = plan_writers(options.writers, options.actions)
    report.workload = Counter(
        (op.table, action.value) for ops in plans for op in ops for action in op.actions
    )
    workers: list[ReplicaWorker] = []
    primary: PrimaryPath | None = None
    regions = RegionalDynamo(log_dir)
    try:
        if options.regional_dynamodb:
            regions.start(target.region for target in topology.replicas.values())
        create_resources(topology, regions)
        report.refused = refused_examples(topology)
        workers = [
            start_replica_worker(topology_path, name, log_dir, env=regions.environ(target.region))
            for name, target in topology.replicas.items()
        ]
        primary = PrimaryPath(topology, topology_path)
        primary.start()
        report.setup_s = time.monotonic() - began
        watch = _Watch(topology, options, plans, primary, workers, report, regions)
        while True:
            live, done = watch.poll(began)
            progress(live)
            if done or watch.failed():
                break
            time.sleep(POLL_S)
        watch.finish()
        primary.stop()
        stoppers = _stop_in_background(workers, report)
        _check(topology, plans, report, regions, stoppers)
        for stopper in stoppers:
            stopper.join()
    finally:
        if primary is not None:
            primary.stop()
        for worker in workers:
            worker.stop(timeout_s=5)
        regions.stop()
        groups = {g for w in workers for g in w.groups()}
        report.process_groups = sorted(groups)
        report.stack_groups = list(regions.groups)
        report.processes_left = sorted(g for g in groups | set(regions.groups) if group_alive(g))
    report.total_s = time.monotonic() - began
    return report


class _Watch:
    """The run from the first write to the last consumer: polled once a second."""

    def __init__(
        self,
        topology: Topology,
        options: DemoOptions,
        plans: list[list[Op]],
        primary: PrimaryPath,
        workers: list[ReplicaWorker],
        report: DemoReport,
        regions: RegionalDynamo,
    ) -> None:
        self.topology = topology
        self.options = options
        self.primary = primary
        self.workers = workers
        self.report = report
        self.state = Production()
        self.total = sum(len(op.actions) for ops in plans for op in ops)
        self.expected = self.total + len(rogue_records())
        self.clients = {
            name: regions.client("dynamodb", target.region)
            for name, target in topology.replicas.items()
        }
        self.history = {name: WcuHistory() for name in topology.replicas}
        self.replicas: dict[str, ReplicaFigures | None] = {}
        self.rogue: list[RogueResult] = []
        self.started = time.monotonic()
        self.threads = start_writers(topology, plans, options.rate_per_s, self.state)
        self.deadline: float | None = None

    def since(self) -> float:
        return time.monotonic() - self.started

    def _rogue_writer(self, writing: bool) -> None:
        """Half way through (or at the end), the rogue writer's raw PutRecords."""
        if self.rogue or (writing and self.state.produced < self.total // 2):
            return
        kinesis = kinesis_client(region=self.topology.stream.region)
        self.rogue = write_rogue_records(kinesis, self.topology.stream.name)
        self.report.rogue = [
            (r.record.what, r.record.reason, r.record.partition_key) for r in self.rogue
        ]
        for r in self.rogue:
            self.state.landed(r.shard_id, r.sequence_number)

    def poll(self, began: float) -> tuple[LiveFigures, bool]:
        """One look at everything; True when every consumer has finished."""
        report = self.report
        writing = any(t.is_alive() for t in self.threads)
        self._rogue_writer(writing)
        if not writing and self.deadline is None:
            report.produced_s = self.since()
            self.deadline = time.monotonic() + self.options.wait_s
        for name, target in self.topology.replicas.items():
            figures = replica_figures(self.clients[name], name, target.application_name)
            self.replicas[name] = figures
            if figures is None:
                continue
            self.history[name].observe(figures)
            report.peak_rates[name] = max(report.peak_rates.get(name, 0.0), figures.rate_wcu)
            if figures.lag_ms is not None:
                lag = figures.lag_ms / 1000
                report.max_lags[name] = max(report.max_lags.get(name, 0.0), lag)
            complete = _replica_complete(figures, self.state.last_sequence)
            if not writing and complete and name not in report.replica_done_s:
                report.replica_done_s[name] = self.since()
        primary = self.primary.figures()
        records = self.state.produced + len(self.rogue)
        if not writing and primary.done >= records and not report.primary_done_s:
            report.primary_done_s = self.since()
        waiting = [] if report.primary_done_s else ["primary"]
        waiting += [n for n in self.topology.replicas if n not in report.replica_done_s]
        phase = "producing" if writing else "waiting for " + ", ".join(waiting)
        live = LiveFigures(
            phase,
            time.monotonic() - began,
            self.total,
            self.expected,
            self.state.produced,
            primary,
            dict(self.replicas),
            self.topology,
        )
        return live, not writing and not waiting

    def failed(self) -> bool:
        """A worker died, a writer failed, or time ran out (the reason goes in the report)."""
        report = self.report
        exited = [w for w in self.workers if w.exited() is not None]
        report.errors += [f"replica worker {w.replica} exited:\n{w.tail()}" for w in exited]
        report.errors += self.state.errors
        if self.deadline is not None and time.monotonic() > self.deadline:
            report.errors.append(
                f"not every consumer finished within {self.options.wait_s:g} s of the last write"
            )
        return bool(report.errors)

    def finish(self) -> None:
        """Wait for the writers (stopped early if the run failed); the totals go in the report."""
        if self.report.errors:
            self.state.stop.set()
        for thread in self.threads:
            thread.join()
        report = self.report
        report.produced = self.state.produced
        report.records = self.state.produced + len(self.rogue)
        report.primary = PrimaryReport.from_figures(self.primary.figures())
        for name, target in self.topology.replicas.items():
            f = self.replicas.get(name)
            report.replicas[name] = ReplicaReport(
                name=name,
                region=target.region,
                max_wcu=target.max_wcu,
                deadline_s=target.deadline_hours * 3600,
                done=f.done if f else 0,
                applied=f.applied if f else 0,
                parked=f.parked if f else 0,
                peak_wcu=self.history[name].peak,
                peak_rate_wcu=report.peak_rates.get(name, 0.0),
                max_lag_s=report.max_lags.get(name, 0.0),
                done_s=report.replica_done_s.get(name),
                verdicts=list(f.verdicts) if f else [],
            )


def _stop_in_background(workers: list[ReplicaWorker], report: DemoReport) -> list[threading.Thread]:
    def stop(worker: ReplicaWorker) -> None:
        t0 = time.monotonic()
        code = worker.stop()
        report.worker_exits[worker.replica] = code
        report.worker_stop_s[worker.replica] = time.monotonic() - t0

    threads = [threading.Thread(target=stop, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    return threads


def _check(
    topology: Topology,
    plans: list[list[Op]],
    report: DemoReport,
    regions: RegionalDynamo,
    stoppers: list[threading.Thread],
) -> None:
    """Verify every replica, compare the primary with the model, read the dead letters.

    A replica that reached the end of every shard must equal the primary (no lag
    allowed); one that did not (the demo fails) is verified against its checkpoints,
    once its worker has stopped and written them, so the report tells lag from errors.
    """

    def verify_one(name: str) -> None:
        pair = resolve(topology, name)
        lag = LagMode.NONE
        if name not in report.replica_done_s:
            lag = LagMode.CHECKPOINTS
            for stopper in stoppers:
                stopper.join()
        config = VerifyConfig(segments=4, lag=lag, recheck_delay_s=1.0, max_findings=10)
        t0 = time.monotonic()
        config_pool = client_config(pool=8)
        clients = Clients(
            dynamodb_client(region=topology.stream.region, config=config_pool),
            regions.client("dynamodb", pair.replica.region, config=config_pool),
            kinesis_client(region=topology.stream.region),
        )
        result = Verifier(pair, clients, config).run()
        report.verify[name] = verify_summary(result, time.monotonic() - t0)

    # The replicas side by side: each is its own emulator, only the primary is shared.
    with ThreadPoolExecutor(max_workers=len(topology.replicas) or 1) as pool:
        list(pool.map(verify_one, topology.replicas))
    report.verify = {name: report.verify[name] for name in topology.replicas}
    expected = expected_tables(plans, topology.tables)
    client = dynamodb_client(region=topology.stream.region)
    for table in topology.tables:
        actual = unordered_sets(table_contents(client, table))
        wanted = unordered_sets(expected[table])
        report.primary_tables[table] = TableCheck(
            items=len(actual),
            expected=len(wanted),
            equal=actual == wanted,
            missing=len(set(wanted) - set(actual)),
            extra=len(set(actual) - set(wanted)),
            different=sum(1 for k in wanted if k in actual and actual[k] != wanted[k]),
        )
    report.dead_letters = read_dead_letters(topology)
