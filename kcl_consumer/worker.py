"""The replica worker: the program the MultiLangDaemon runs for each shard it leases.

Named by the daemon's `executableName`:

    executableName = /venv/bin/python -m kcl_consumer.worker --topology /etc/t.toml --replica eu

(the daemon splits it on spaces: absolute paths without spaces). Arguments win over
the environment; the variables below are what an ECS task definition sets instead.

| variable | default | meaning |
| --- | --- | --- |
| `LAZYREP_TOPOLOGY` | required | the topology TOML file |
| `LAZYREP_REPLICA` | required | the replica target (a `[replicas.NAME]` of the topology) |
| `LAZYREP_WORKER_ID` | host name | names this worker in the status table (with the pid) |
| `LAZYREP_MAX_WORKERS` | `16` | items applied at once per shard (each item in order) |
| `LAZYREP_DYNAMODB_MAX_ATTEMPTS` | `3` | botocore attempts per replica write, then ours |
| `LAZYREP_APPLY_ATTEMPTS` | `8` | in-process tries of a chunk before the worker exits |
| `LAZYREP_CHUNK_RECORDS` | `500` | records paid for and applied at once |
| `LAZYREP_CHECKPOINT_INTERVAL_S` | `10` | checkpoint inside a long paced batch this often |
| `LAZYREP_STATUS_INTERVAL_S` | `10` | publish progress this often |
| `LAZYREP_STATUS_TABLE` | `true` | publish to `<application_name>-status` (created if missing) |
| `LAZYREP_CLOUDWATCH_METRICS` | `false` | also CloudWatch metrics (namespace LazyReplication) |
| `LAZYREP_LOG_LEVEL` | `INFO` | |

stdout is the daemon's protocol channel: logs are JSON lines on stderr, and anything
else that prints is sent to stderr too. Exit codes: 0 when the daemon closes the
channel, 2 when the worker refuses to start (topology, deadline), 3 when a batch
could not be applied (see processor.py), 4 on an unexpected error.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from amazon_kclpy import kcl

from binlog.applier import Applier, ApplierConfig
from binlog.awserrors import classify
from binlog.capacity import write_units
from binlog.clients import boto3_client, client_config, dynamodb_client, kinesis_client
from binlog.deadletter import dead_letter_store
from binlog.errors import PermanentError, TopologyError, TransientError
from binlog.topology import ReplicaTarget, Topology, load_topology
from binlog.version import shard_index
from kcl_consumer.pacer import DeadlineError, Pacer, PacerConfig, verified_config
from kcl_consumer.processor import ProcessorConfig, RecordProcessor, ReplicaProcessor
from kcl_consumer.status import (
    CloudWatchStatus,
    DynamoStatusTable,
    FanOutStatus,
    NullStatus,
    PeriodicReporter,
    StatusPublisher,
    status_table_name,
)

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

EXIT_CANNOT_START = 2

ENV_TOPOLOGY = "LAZYREP_TOPOLOGY"
ENV_REPLICA = "LAZYREP_REPLICA"
ENV_WORKER_ID = "LAZYREP_WORKER_ID"
ENV_MAX_WORKERS = "LAZYREP_MAX_WORKERS"
ENV_DYNAMODB_MAX_ATTEMPTS = "LAZYREP_DYNAMODB_MAX_ATTEMPTS"
ENV_APPLY_ATTEMPTS = "LAZYREP_APPLY_ATTEMPTS"
ENV_CHUNK_RECORDS = "LAZYREP_CHUNK_RECORDS"
ENV_CHECKPOINT_INTERVAL_S = "LAZYREP_CHECKPOINT_INTERVAL_S"
ENV_STATUS_INTERVAL_S = "LAZYREP_STATUS_INTERVAL_S"
ENV_STATUS_TABLE = "LAZYREP_STATUS_TABLE"
ENV_CLOUDWATCH_METRICS = "LAZYREP_CLOUDWATCH_METRICS"
ENV_LOG_LEVEL = "LAZYREP_LOG_LEVEL"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What one worker process needs beyond the topology file (see the module's table)."""

    topology_path: str
    replica: str
    worker_id: str = ""
    max_workers: int = 16
    dynamodb_max_attempts: int = 3
    apply_attempts: int = 8
    chunk_records: int = 500
    checkpoint_interval_s: float = 10.0
    status_interval_s: float = 10.0
    status_table: bool = True
    cloudwatch_metrics: bool = False

    def __post_init__(self) -> None:
        if not self.topology_path:
            raise ValueError(
                f"WorkerSettings.topology_path (--topology or {ENV_TOPOLOGY}) is required"
            )
        if not self.replica:
            raise ValueError(f"WorkerSettings.replica (--replica or {ENV_REPLICA}) is required")
        if not 1 <= self.max_workers <= 256:
            raise ValueError("WorkerSettings.max_workers must be between 1 and 256")
        if not 1 <= self.dynamodb_max_attempts <= 20:
            raise ValueError("WorkerSettings.dynamodb_max_attempts must be between 1 and 20")

    @property
    def owner(self) -> str:
        """`<worker id>/<pid>`: which process holds a shard, in the status table."""
        return f"{self.worker_id or socket.gethostname()}/{os.getpid()}"

    @classmethod
    def resolve(
        cls,
        *,
        topology_path: str | None = None,
        replica: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> WorkerSettings:
        """Arguments, else environment variables, else defaults.

        Raises:
            ValueError: a value is missing or malformed (naming the setting).
        """
        env = os.environ if environ is None else environ
        defaults = cls("-", "-")
        return cls(
            topology_path=topology_path or env.get(ENV_TOPOLOGY, ""),
            replica=replica or env.get(ENV_REPLICA, ""),
            worker_id=env.get(ENV_WORKER_ID, ""),
            max_workers=int(_number(env, ENV_MAX_WORKERS, defaults.max_workers)),
            dynamodb_max_attempts=int(
                _number(env, ENV_DYNAMODB_MAX_ATTEMPTS, defaults.dynamodb_max_attempts)
            ),
            apply_attempts=int(_number(env, ENV_APPLY_ATTEMPTS, defaults.apply_attempts)),
            chunk_records=int(_number(env, ENV_CHUNK_RECORDS, defaults.chunk_records)),
            checkpoint_interval_s=_number(
                env, ENV_CHECKPOINT_INTERVAL_S, defaults.checkpoint_interval_s
            ),
            status_interval_s=_number(env, ENV_STATUS_INTERVAL_S, defaults.status_interval_s),
            status_table=_boolean(env, ENV_STATUS_TABLE, defaults.status_table),
            cloudwatch_metrics=_boolean(env, ENV_CLOUDWATCH_METRICS, defaults.cloudwatch_metrics),
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def replica_target(topology: Topology, name: str) -> ReplicaTarget:
    """The topology's replica `name`.

    Raises:
        TopologyError: no such replica (naming the ones there are).
    """
    target = topology.replicas.get(name)
    if target is None:
        known = ", ".join(sorted(topology.replicas)) or "none"
        raise TopologyError(f"replicas.{name}", f"no such replica target (known: {known})")
    return target


def check_deadline(
    topology: Topology, replica: str, kinesis: Any, *, shards: int | None = None
) -> PacerConfig:
    """The pacer's config for one shard of `replica`, checked against the stream's retention.

    `shards` is how many shard processes share the replica's max_wcu (default: the
    topology's stream.shards).

    Raises:
        DeadlineError: the deadline does not fit the retention (the message says what to
            change).
        TransientError, PermanentError: the stream cannot be described.
    """
    config = PacerConfig.from_topology(topology, replica, shards=shards)
    return verified_config(config, kinesis, topology.stream.name)


def open_shards(kinesis: Any, stream: str) -> int:
    """How many shards of the stream are open (ListShards: no ending sequence number).

    Each has its own processor, and so its own pacer: they share the replica's max_wcu.

    Raises:
        ClientError, BotoCoreError: the look-up failed.
    """
    request: dict[str, Any] = {"StreamName": stream}
    count = 0
    while True:
        page = kinesis.list_shards(**request)
        for shard in page.get("Shards", []):
            if "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {}):
                count += 1
        token = page.get("NextToken")
        if not token:
            return count
        request = {"NextToken": token}


class ShardParents:
    """A shard's parents from ListShards (one call starting just before it, else every page)."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        self._kinesis = kinesis
        self._stream = stream

    def __call__(self, shard_id: str) -> Sequence[str | None]:
        """[ParentShardId, AdjacentParentShardId] (None where absent).

        Raises:
            LookupError: the stream does not list the shard.
            ClientError, BotoCoreError: the look-up failed.
        """
        index = shard_index(shard_id)
        first: dict[str, Any] = {"StreamName": self._stream, "MaxResults": 1}
        if index > 0:
            first["ExclusiveStartShardId"] = f"shardId-{index - 1:012d}"
        found = self._find(self._kinesis.list_shards(**first), shard_id)
        request: dict[str, Any] = {"StreamName": self._stream}
        while found is None:
            page = self._kinesis.list_shards(**request)
            found = self._find(page, shard_id)
            token = page.get("NextToken")
            if found is None and not token:
                raise LookupError(f"{self._stream} does not list {shard_id}")
            request = {"NextToken": token}
        return [found.get("ParentShardId"), found.get("AdjacentParentShardId")]

    @staticmethod
    def _find(page: Mapping[str, Any], shard_id: str) -> Mapping[str, Any] | None:
        for shard in page.get("Shards", []):
            if shard["ShardId"] == shard_id:
                found: Mapping[str, Any] = shard
                return found
        return None


def build_status(
    settings: WorkerSettings,
    target: ReplicaTarget,
    *,
    session: boto3.Session | None = None,
) -> StatusPublisher:
    """The status table (created if missing) and, if asked, CloudWatch metrics.

    Raises:
        ClientError, BotoCoreError: the status table cannot be created.
    """
    publishers: list[StatusPublisher] = []
    if settings.status_table:
        client = dynamodb_client(region=target.region, session=session)
        table = DynamoStatusTable(client, status_table_name(target.application_name))
        table.ensure()
        publishers.append(table)
    if settings.cloudwatch_metrics:
        cloudwatch = boto3_client("cloudwatch", region=target.region, session=session)
        publishers.append(CloudWatchStatus(cloudwatch, target.name))
    if not publishers:
        return NullStatus()
    return publishers[0] if len(publishers) == 1 else FanOutStatus(publishers)


def build_processor(
    settings: WorkerSettings, *, session: boto3.Session | None = None
) -> ReplicaProcessor:
    """The processor of one shard, with every AWS client it needs (endpoints from the env).

    Raises:
        TopologyError: the topology file is wrong, names no such replica, or no dead-letter
            store.
        DeadlineError: the replica's deadline does not fit the stream's retention.
        TransientError, PermanentError: the stream's retention cannot be read.
        ClientError, BotoCoreError: the status table cannot be created.
    """
    topology = load_topology(settings.topology_path)
    target = replica_target(topology, settings.replica)
    if topology.dead_letter is None:
        raise TopologyError(
            "dead_letter",
            "a replica worker needs a dead-letter store (kind = sqs or s3): without one a "
            "poison record would block its shard",
        )
    kinesis = kinesis_client(region=topology.stream.region, session=session)
    try:
        shards: int | None = open_shards(kinesis, topology.stream.name) or None
    except Exception as exc:  # the topology's count is a fair default
        logger.warning("open shards unknown (%s); using stream.shards", classify(exc).message)
        shards = None
    pacer_config = check_deadline(topology, settings.replica, kinesis, shards=shards)
    dynamodb = dynamodb_client(
        region=target.region,
        session=session,
        config=client_config(
            max_attempts=settings.dynamodb_max_attempts, pool=max(10, settings.max_workers)
        ),
    )
    applier = Applier(
        dynamodb,
        topology.tables,
        table_map=dict(target.tables),
        config=ApplierConfig.from_topology(topology, max_workers=settings.max_workers),
    )
    config = ProcessorConfig(
        replica=target.name,
        stream=topology.stream.name,
        chunk_records=settings.chunk_records,
        apply_attempts=settings.apply_attempts,
        checkpoint_interval_s=settings.checkpoint_interval_s,
    )
    return ReplicaProcessor(
        config,
        applier=applier,
        tables=topology.tables,
        dead_letters=dead_letter_store(topology.dead_letter, session=session),
        pacer=Pacer(pacer_config),
        status=PeriodicReporter(
            build_status(settings, target, session=session), settings.status_interval_s
        ),
        parents_of=ShardParents(kinesis, topology.stream.name),
        write_units=functools.partial(
            write_units,
            version_attribute=topology.applier.version_attribute,
            id_attribute=topology.applier.id_attribute,
        ),
        owner=settings.owner,
    )


def run(
    processor: RecordProcessor,
    *,
    input_file: IO[str] | None = None,
    output_file: IO[str] | None = None,
    error_file: IO[str] | None = None,
) -> int:
    """Serve the daemon's protocol until it closes the channel; the exit code.

    A hook that gives up raises SystemExit (see processor.py); its code is returned.
    """
    process = kcl.KCLProcess(
        processor,
        input_file=input_file or sys.stdin,
        output_file=output_file or sys.stdout,
        error_file=error_file or sys.stderr,
    )
    try:
        process.run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        if isinstance(processor, ReplicaProcessor):
            processor.close()
    return 0


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record on stderr: time, level, logger, message, extra fields."""

    _standard = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "asctime",
    }

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        line.update(
            {k: v for k, v in record.__dict__.items() if k not in self._standard and k[0] != "_"}
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str, stream: IO[str]) -> None:
    """JSON lines on `stream` (stderr) for every logger; boto's own chatter at WARNING."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the processor, serve the daemon; the process's exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m kcl_consumer.worker",
        description="Lazy replica record processor, run by the KCL MultiLangDaemon.",
    )
    parser.add_argument("--topology", help=f"topology TOML file (env {ENV_TOPOLOGY})")
    parser.add_argument("--replica", help=f"replica target name (env {ENV_REPLICA})")
    args = parser.parse_args(argv)
    # Only amazon_kclpy may write to the daemon's channel: anything printed goes to stderr.
    protocol_out = sys.stdout
    sys.stdout = sys.stderr
    configure_logging(os.environ.get(ENV_LOG_LEVEL, "INFO"), sys.stderr)
    try:
        settings = WorkerSettings.resolve(topology_path=args.topology, replica=args.replica)
        processor = build_processor(settings)
    except (TopologyError, DeadlineError, ValueError, PermanentError, TransientError) as exc:
        logger.error("replica worker cannot start: %s", exc, extra={"event": "refused"})  # noqa: TRY400 - the message is the whole story
        return EXIT_CANNOT_START
    return run(processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover - run by the daemon
    code = main()
    logging.shutdown()
    sys.stderr.flush()
    # Do not wait for the applier's idle worker threads: the daemon waits for this exit.
    os._exit(code)
