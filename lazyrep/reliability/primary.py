"""The primary path under fire: producer -> stream -> local event source mapping -> handler.

One run: a fresh world (stream, the suite's tables, tombstones, an SQS dead-letter
queue, all named after the run), the mapping started, four writers producing the
suite's workload through the SDK while fault proxies stand in front of Kinesis (for
the producer, and separately for the mapping's reads) and of DynamoDB (for the
handler), then the stream drained, the proxies cleared, and the tables compared with
the reference model computed meanwhile in another process. The handler is the real
`lambda_consumer.handler.handle`, fed by `emulators.esm.EventSourceMapping` as Lambda
would, optionally wrapped to crash mid-batch or to report a partial failure on every
batch; reshards (SplitShard, then MergeShards) can happen between thirds of the load.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config

from binlog.applier import Applier, ApplierConfig
from binlog.clients import client_config
from binlog.codec import decode
from binlog.deadletter import DeadLetter, dead_letter_store, letter_from_document
from binlog.envelope import Action
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import Topology, load_topology
from emulators.esm import EventSourceMapping
from emulators.esm_settings import EsmSettings
from emulators.esm_stats import EsmStats
from emulators.faultproxy import FaultProxy
from lambda_consumer import handler
from lambda_consumer.consumer import BatchReport, Consumer
from lambda_consumer.lineage import ShardLineage
from lazyrep.reliability.accounting import Tally, compare
from lazyrep.reliability.framework import Progress, Result, Scale
from lazyrep.reliability.model import ModelProcess, contents
from lazyrep.reliability.workload import action_count, plan, topology_toml
from lazyrep.workload import Op
from producer import Producer, ProducerConfig
from producer.results import DeliveryError

logger = logging.getLogger(__name__)

REGION = "us-east-1"
HandlerMode = Literal["plain", "crash", "partial", "naive-partial"]
Rules = tuple[Mapping[str, Any], ...]


# -- the world of one run ---------------------------------------------------------------------


@dataclass(slots=True)
class World:
    """One run's stream, tables and dead-letter store on the local stack, and its topology."""

    run: str
    path: Path
    topology: Topology
    queue_url: str
    """The SQS dead-letter queue's URL ("" with an S3 store)."""

    @property
    def stream(self) -> str:
        return self.topology.stream.name

    @classmethod
    def create(
        cls,
        run: str,
        directory: Path,
        *,
        shards: int = 2,
        replicas: str = "",
        dead_letter: str = "sqs",
    ) -> World:
        """Write the topology and create everything it names (clients from the environment).

        `dead_letter="s3"` parks in a bucket instead of a queue: moto's SQS slows down past
        a few thousand messages (each receive scans the queue), its S3 does not.
        """
        path = directory / f"topology-{run}.toml"
        text = topology_toml(run, shards=shards, replicas=replicas, dead_letter=dead_letter)
        path.write_text(text, encoding="utf-8")
        topology = load_topology(path)
        dynamodb = direct_client("dynamodb")
        for name, schema in topology.tables.items():
            create_table(dynamodb, name, schema)
        create_tombstone_table(dynamodb, topology.applier.tombstone_table)
        kinesis = direct_client("kinesis")
        kinesis.create_stream(StreamName=topology.stream.name, ShardCount=shards)
        wait_active(kinesis, topology.stream.name)
        assert topology.dead_letter is not None
        queue_url = ""
        if topology.dead_letter.kind == "sqs":
            sqs = direct_client("sqs")
            queue_url = sqs.create_queue(QueueName=topology.dead_letter.name)["QueueUrl"]
        else:
            direct_client("s3").create_bucket(Bucket=topology.dead_letter.name)
        return cls(run, path, topology, queue_url)

    def letters(self) -> dict[str, dict[str, Any]]:
        """Every dead letter parked so far, by consumer and position (see `read_letters`)."""
        config = self.topology.dead_letter
        assert config is not None
        if config.kind == "sqs":
            return read_letters(direct_client("sqs"), self.queue_url)
        return read_bucket_letters(direct_client("s3", pool=16), config.name, config.prefix)


def direct_client(service: str, *, endpoint_url: str | None = None, pool: int = 20) -> Any:
    """A boto3 client in the suite's region: the environment's endpoint unless one is given."""
    factory: Any = boto3.session.Session().client
    return factory(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        config=client_config(max_attempts=3, pool=pool),
    )


def wait_active(kinesis: Any, stream: str) -> None:
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )


def _entry(letter: DeadLetter) -> tuple[str, dict[str, Any]]:
    return f"{letter.consumer}/{letter.letter_id}", {
        "reason": letter.reason,
        "detail": letter.detail,
        "data": letter.data,
    }


def read_letters(sqs: Any, queue_url: str) -> dict[str, dict[str, Any]]:
    """Every dead letter in the queue, by consumer and letter id (redelivered parks count once).

    Read messages are deleted, so each receive scans less of the queue.
    """
    letters: dict[str, dict[str, Any]] = {}
    empty = 0
    while empty < 2:
        page = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=3600, WaitTimeSeconds=0
        )
        messages = page.get("Messages", [])
        if not messages:
            empty += 1
            continue
        empty = 0
        for message in messages:
            key, entry = _entry(letter_from_document(message["Body"]))
            letters[key] = entry
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
            ],
        )
    return letters


def read_bucket_letters(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every dead letter in an S3 store (one object per letter; redelivery overwrites)."""
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]

    def fetch(key: str) -> tuple[str, dict[str, Any]]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return _entry(letter_from_document(body))

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(fetch, keys))


# -- the handler, counted and optionally hurt ------------------------------------------------


class TallyingConsumer(Consumer):
    """The real consumer, adding up every batch's report (the handler publishes, never returns
    them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.total = BatchReport()
        self._tally_lock = threading.Lock()

    def process(self, records: Sequence[Any]) -> BatchReport:
        report = super().process(records)
        with self._tally_lock:
            for name in ("records", "applied", "stale", "condition_failed", "parked", "retried"):
                setattr(self.total, name, getattr(self.total, name) + getattr(report, name))
            self.total.dead_letter_failures += report.dead_letter_failures
        return report


def build_consumer(world: World, dynamodb: Any, kinesis: Any) -> TallyingConsumer:
    """What `lambda_consumer.consumer.build_consumer` wires, with the suite's clients."""
    topology = world.topology
    assert topology.dead_letter is not None
    applier = Applier(
        dynamodb, topology.tables, config=ApplierConfig.from_topology(topology, max_workers=16)
    )
    return TallyingConsumer(
        topology,
        applier,
        dead_letter_store(topology.dead_letter),
        lineage=ShardLineage(kinesis),
        consumer_name="lambda:primary",
    )


class Function:
    """Lambda's function as the mapping calls it: the real handler, maybe hurt on purpose.

    crash: now and then, apply the first half of a batch and raise (Lambda retries the
    whole batch, bisecting). partial: apply the whole batch, then report its middle record
    failed although it was applied (Lambda delivers it and the rest again).
    naive-partial: the negative control that proves the suite can fail: instead of the
    handler, each record is written plainly (no version guard), with partial failures
    as above, so redelivered ADD and list_append actions are applied twice.
    """

    def __init__(
        self,
        mode: HandlerMode,
        seed: int,
        crash_probability: float = 0.25,
        *,
        dynamodb: Any = None,
    ) -> None:
        self.mode = mode
        self.dynamodb = dynamodb
        self.rng = random.Random(seed)
        self.crash_probability = crash_probability
        self.crashes = 0
        self.forced_partials = 0
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Mapping[str, Any] | None:
        records = event["Records"]
        if self.mode == "crash":
            with self.lock:
                crash = len(records) > 1 and self.rng.random() < self.crash_probability
            if crash:
                handler.handle({"Records": records[: len(records) // 2]}, context)
                with self.lock:
                    self.crashes += 1
                raise RuntimeError("the function crashed mid-batch (on purpose)")
        if self.mode == "naive-partial":
            for record in records:
                _apply_naively(self.dynamodb, base64.b64decode(record["kinesis"]["data"]))
            response: Mapping[str, Any] = {"batchItemFailures": []}
        else:
            response = handler.handle(event, context)
        if self.mode.endswith("partial") and len(records) > 1 and not response["batchItemFailures"]:
            with self.lock:
                self.forced_partials += 1
            middle = records[len(records) // 2]["kinesis"]["sequenceNumber"]
            return {"batchItemFailures": [{"itemIdentifier": middle}]}
        return response


def _apply_naively(dynamodb: Any, data: bytes) -> None:
    """Write a record's action with no version guard (the negative control only)."""
    envelope = decode(data)
    names = {"ExpressionAttributeNames": envelope.names} if envelope.names else {}
    values = {"ExpressionAttributeValues": envelope.values} if envelope.values else {}
    condition = {"ConditionExpression": envelope.condition} if envelope.condition else {}
    try:
        if envelope.action is Action.PUT:
            dynamodb.put_item(
                TableName=envelope.table, Item=envelope.item, **condition, **names, **values
            )
        elif envelope.action is Action.UPDATE:
            dynamodb.update_item(
                TableName=envelope.table,
                Key=envelope.key,
                UpdateExpression=envelope.update,
                **condition,
                **names,
                **values,
            )
        else:
            dynamodb.delete_item(
                TableName=envelope.table, Key=envelope.key, **condition, **names, **values
            )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass


@contextlib.contextmanager
def serving(consumer: Consumer) -> Iterator[None]:
    """Serve the handler with this consumer, its logs and EMF metrics kept off stdout."""
    saved = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    level = handler.logger.log_level
    handler.logger.setLevel(logging.CRITICAL)
    handler.use(consumer)
    try:
        yield
    finally:
        handler.use(None)
        handler.logger.setLevel(level)
        if saved is None:
            os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
        else:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = saved


# -- producing ---------------------------------------------------------------------------------


def produce(
    producer: Producer, plans: list[list[Op]], begin: float, end: float, *, seconds: float = 0.0
) -> None:
    """The writers' calls from fraction `begin` to `end` of each plan, one thread per writer,
    spread evenly over `seconds` (0: as fast as they go)."""
    errors: list[BaseException] = []

    def write(ops: list[Op]) -> None:
        mine = ops[int(len(ops) * begin) : int(len(ops) * end)]
        gap = seconds / len(mine) if mine and seconds > 0 else 0.0
        start = time.monotonic()
        try:
            for n, op in enumerate(mine):
                if gap:
                    time.sleep(max(0.0, start + n * gap - time.monotonic()))
                getattr(producer, op.method)(op.table, **op.kwargs)
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(ops,)) for ops in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def split_then_merge(kinesis: Any, stream: str, step: int) -> str:
    """Step 0: split the first open shard in two. Step 1: merge the last two adjacent open
    shards. Returns what was done."""
    shards = [
        s
        for s in kinesis.list_shards(StreamName=stream)["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]
    shards.sort(key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    if step == 0:
        shard = shards[0]
        low = int(shard["HashKeyRange"]["StartingHashKey"])
        high = int(shard["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(
            StreamName=stream,
            ShardToSplit=shard["ShardId"],
            NewStartingHashKey=str((low + high) // 2),
        )
        done = f"split {shard['ShardId']}"
    else:
        first, second = shards[-2], shards[-1]
        kinesis.merge_shards(
            StreamName=stream,
            ShardToMerge=first["ShardId"],
            AdjacentShardToMerge=second["ShardId"],
        )
        done = f"merged {first['ShardId']} and {second['ShardId']}"
    wait_active(kinesis, stream)
    return done


# -- the scenario ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault-proxy rules (docs/FAULTPROXY.md) per hop; an empty tuple means no proxy there."""

    producer_kinesis: Rules = ()
    reader_kinesis: Rules = ()
    dynamodb: Rules = ()


@dataclass(frozen=True, slots=True)
class PrimaryScenario:
    """A run of the primary path with the given faults, function behaviour and reshards."""

    name: str
    family: str
    description: str
    faults: Faults = field(default_factory=Faults)
    mode: HandlerMode = "plain"
    reshard: bool = False
    actions: int = 4000
    writers: int = 4
    seed: int = 1
    must_fire: tuple[str, ...] = ()
    """Fault kinds that must have been injected at least once, else the run proves nothing."""
    drain_timeout_s: float = 600.0

    def run(self, scale: Scale, progress: Progress) -> Result:
        return run_primary(self, scale, progress)


def _proxies(stack: contextlib.ExitStack, spec: PrimaryScenario) -> dict[str, FaultProxy]:
    """A started fault proxy per hop that has rules (rules are set later, once all is up)."""
    upstreams = {
        "producer_kinesis": os.environ["AWS_ENDPOINT_URL_KINESIS"],
        "reader_kinesis": os.environ["AWS_ENDPOINT_URL_KINESIS"],
        "dynamodb": os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
    }
    proxies: dict[str, FaultProxy] = {}
    for n, (hop, upstream) in enumerate(upstreams.items()):
        if getattr(spec.faults, hop):
            proxies[hop] = stack.enter_context(FaultProxy(upstream=upstream, seed=spec.seed + n))
    return proxies


def _producer(world: World, endpoint_url: str | None) -> Producer:
    """The SDK with a generous retry budget: a storm must delay actions, never drop them."""
    client = boto3.session.Session().client(
        "kinesis",
        region_name=REGION,
        endpoint_url=endpoint_url,
        config=client_config(Config(), max_attempts=3, pool=8, parameter_validation=False),
    )
    return Producer(
        world.path,
        client=client,
        config=ProducerConfig(max_attempts=60, backoff_base_ms=20, backoff_max_ms=500),
    )


ESM_SETTINGS = EsmSettings(
    batch_size=100,
    function_response_types=("ReportBatchItemFailures",),
    bisect_batch_on_function_error=True,
    maximum_retry_attempts=-1,
    poll_interval_s=0.05,
    shard_discovery_interval_s=0.2,
    retry_backoff_s=0.01,
    retry_backoff_max_s=0.2,
)
"""As docs/LAMBDA.md recommends: partial responses, bisect on error, retry until applied."""


def _load(
    spec: PrimaryScenario, world: World, producer: Producer, plans: list[list[Op]], result: Result
) -> list[str]:
    """Produce the plans in thirds, resharding between them if asked; the reshards done."""
    reshards: list[str] = []
    admin = direct_client("kinesis")
    try:
        for third in range(3):
            produce(producer, plans, third / 3, (third + 1) / 3)
            producer.flush()
            if spec.reshard and third < 2:
                reshards.append(split_then_merge(admin, world.stream, third))
        producer.close()
    except DeliveryError as exc:
        result.extra["undelivered"] = len(exc.failures)
        result.failures.append(f"the producer gave up on actions: {exc}")
    return reshards


def run_primary(spec: PrimaryScenario, scale: Scale, progress: Progress) -> Result:
    """Run one primary-path scenario and count what it lost, doubled and diverged."""
    result = Result(spec.name)
    run = f"r{uuid.uuid4().hex[:6]}"
    plans = plan(spec.writers, scale.count(spec.actions, 40), prefix=run)
    result.produced = action_count(plans)
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lazyrep-rel-")))
        expected = stack.enter_context(ModelProcess()).submit(run, plans)
        progress(f"{spec.name}: creating the world of run {run}")
        world = World.create(run, directory)
        proxies = _proxies(stack, spec)

        def url(hop: str) -> str | None:
            return proxies[hop].url if hop in proxies else None

        consumer = build_consumer(
            world,
            direct_client("dynamodb", endpoint_url=url("dynamodb"), pool=20),
            direct_client("kinesis"),
        )
        function = Function(spec.mode, spec.seed, dynamodb=direct_client("dynamodb"))
        producer = _producer(world, url("producer_kinesis"))
        stack.enter_context(serving(consumer))
        reader = direct_client("kinesis", endpoint_url=url("reader_kinesis"), pool=64)
        mapping = EventSourceMapping(
            world.stream, function, ESM_SETTINGS, region=REGION, kinesis=reader
        )
        mapping.start()
        stack.callback(mapping.stop)
        for hop, proxy in proxies.items():
            proxy.set_rules(list(getattr(spec.faults, hop)), seed=spec.seed)
        progress(f"{spec.name}: producing {result.produced} actions")
        reshards = _load(spec, world, producer, plans, result)
        progress(f"{spec.name}: draining the stream")
        stats: EsmStats | None = None
        try:
            stats = mapping.drain(spec.drain_timeout_s)
        except TimeoutError as exc:
            result.failures.append(f"the mapping did not drain: {exc}")
        mapping.stop()
        faults = {hop: proxy.stats for hop, proxy in proxies.items()}
        for proxy in proxies.values():
            proxy.clear()
        progress(f"{spec.name}: comparing with the reference model")
        letters = world.letters()
        tally = compare(expected.result(timeout=600), contents(direct_client("dynamodb"), run))
    _fill(
        result,
        spec,
        reference_tally=tally,
        consumer=consumer,
        function=function,
        stats=stats,
        faults=faults,
        letters=letters,
        reshards=reshards,
    )
    return result


def _fill(
    result: Result,
    spec: PrimaryScenario,
    *,
    reference_tally: Tally,
    consumer: TallyingConsumer,
    function: Function,
    stats: EsmStats | None,
    faults: Mapping[str, Any],
    letters: Mapping[str, Mapping[str, Any]],
    reshards: list[str],
) -> None:
    total = consumer.total
    result.parked = len(letters)
    result.lost = max(0, reference_tally.lost - result.parked)
    result.duplicated = reference_tally.duplicated
    result.diverged = reference_tally.diverged
    result.applied = result.produced - result.parked - result.lost
    injected = {
        hop: {
            kind: n
            for kind in ("throttle", "server_error", "partial_failure", "cut_before", "cut_after")
            if (n := stats_.faults(kind))
        }
        for hop, stats_ in faults.items()
    }
    result.extra.update(
        {
            "items_compared": reference_tally.items,
            "handler_applied": total.applied,
            "handler_condition_failed": total.condition_failed,
            "skipped_stale": total.stale,
            "redelivered": total.retried,
            "faults": injected,
            "function_crashes": function.crashes,
            "forced_partial_failures": function.forced_partials,
            "parked_by_reason": dict(Counter(str(v["reason"]) for v in letters.values())),
        }
    )
    if stats is not None:
        result.extra["esm"] = {
            "invocations": stats.invocations,
            "records_delivered": stats.records_delivered,
            "function_errors": stats.function_errors,
            "partial_failures": stats.partial_failures,
            "bisections": stats.bisections,
            "poller_errors": stats.poller_errors,
            "discarded_records": stats.discarded_records,
        }
        result.expect(stats.discarded_records == 0, "the mapping discarded records")
    if reshards:
        result.extra["reshards"] = reshards
    if reference_tally.examples:
        result.extra["differences"] = reference_tally.examples
    fired = {kind for per_hop in injected.values() for kind in per_hop}
    for kind in spec.must_fire:
        result.expect(kind in fired, f"no {kind} fault was injected: the run proved nothing")
    if spec.mode == "crash":
        result.expect(function.crashes > 0, "the function never crashed")
    if spec.mode.endswith("partial"):
        result.expect(function.forced_partials > 0, "no batch reported a partial failure")
    parked = result.extra["parked_by_reason"]
    result.expect(result.parked == 0, f"valid actions were parked: {parked}")
