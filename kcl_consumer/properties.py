"""MultiLangDaemon .properties files: the local template, one file per replica for AWS.

The local stack picks its ports at run time, so properties/local.properties holds
`${name}` placeholders that are filled here (`lazyrep kcl render` on the command line).
The AWS files are generated from the topology (`render_replica`, `lazyrep properties`):
one KCL application per replica target, reading the stream in its region and keeping
its leases in the replica's. `parse_properties` reads any of them back as Java does.
"""

from __future__ import annotations

import os
import re
import string
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from binlog.topology import ReplicaTarget, Topology
from kcl_consumer.known_keys import KCL_VERSION, unknown_keys

TEMPLATE_ENV = "LAZYREP_KCL_TEMPLATE"
DEFAULT_TEMPLATE = Path(
    os.environ.get(TEMPLATE_ENV)
    or Path(__file__).resolve().parents[1] / "properties" / "local.properties"
)
"""properties/local.properties of the source tree (the project is installed editable), or
$LAZYREP_KCL_TEMPLATE where the tree is not there (the image: the Dockerfile sets it)."""

INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
MAX_RECORDS_LIMIT = 10_000  # GetRecords returns at most 10,000 records per call.


@dataclass(frozen=True)
class KclSettings:
    """The values a properties template needs; field names are its placeholders."""

    executable: str
    application_name: str
    stream_name: str
    region: str
    kinesis_endpoint: str
    dynamodb_endpoint: str
    cloudwatch_endpoint: str
    initial_position: str = "TRIM_HORIZON"
    max_records: int = MAX_RECORDS_LIMIT
    idle_time_between_reads_ms: int = 250
    lease_region: str = ""
    """Where the lease tables and metrics live: the replica's region (default: `region`)."""

    def __post_init__(self) -> None:
        if not self.lease_region:
            object.__setattr__(self, "lease_region", self.region)
        for name, value in asdict(self).items():
            if isinstance(value, str) and (not value.strip() or "\n" in value or "\r" in value):
                raise ValueError(f"{name} must be a non-empty single line, got {value!r}")
        if self.initial_position not in INITIAL_POSITIONS:
            raise ValueError(f"initial_position must be one of {INITIAL_POSITIONS}")
        if not 1 <= self.max_records <= MAX_RECORDS_LIMIT:
            raise ValueError(f"max_records must be in 1..{MAX_RECORDS_LIMIT}")
        if self.idle_time_between_reads_ms < 0:
            raise ValueError("idle_time_between_reads_ms must be >= 0")


def _escape(value: str) -> str:
    # java.util.Properties treats a backslash as an escape in values.
    return value.replace("\\", "\\\\")


def render(
    settings: KclSettings,
    *,
    template: Path = DEFAULT_TEMPLATE,
    extra: Mapping[str, str] | None = None,
) -> str:
    """Return the template filled from `settings`, then `extra` keys appended (they win:
    java.util.Properties keeps the last value of a repeated key).

    Raises:
        KeyError: the template has a placeholder `settings` does not provide.
    """
    values = {k: _escape(str(v)) for k, v in asdict(settings).items()}
    text = string.Template(template.read_text()).substitute(values)
    if extra:
        lines = [f"{key} = {_escape(value)}" for key, value in extra.items()]
        text = text.rstrip("\n") + "\n\n# Overrides\n" + "\n".join(lines) + "\n"
    return text


def write_properties(
    path: Path,
    settings: KclSettings,
    *,
    template: Path = DEFAULT_TEMPLATE,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Render to `path` (parents created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(settings, template=template, extra=extra))
    return path


# --- Reading properties files ------------------------------------------------------------

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|u|.)", re.DOTALL)
_ESCAPED_CHARS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_WHITESPACE = " \t\f"


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped.startswith("u") and len(escaped) == 5:
            return chr(int(escaped[1:], 16))
        if escaped == "u":
            raise ValueError(f"malformed \\uxxxx escape in {text!r}")
        return _ESCAPED_CHARS.get(escaped, escaped)

    return _ESCAPE.sub(replace, text)


def _logical_lines(text: str) -> Iterator[str]:
    pending: str | None = None
    for natural in re.split(r"\r\n|\r|\n", text):
        line = natural.lstrip(_WHITESPACE)
        if pending is None and (not line or line[0] in "#!"):
            continue
        # An odd number of trailing backslashes continues the line on the next one.
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            pending = (pending or "") + line[:-1]
            continue
        yield (pending or "") + line
        pending = None
    if pending is not None:
        yield pending


def parse_properties(text: str) -> dict[str, str]:
    """Parse `text` as java.util.Properties.load does (comments, `=`/`:`/space separators,
    continuation lines, escapes); a repeated key keeps its last value, as in Java.

    Raises:
        ValueError: a malformed \\uxxxx escape (Java throws too).
    """
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        i = 0
        while i < len(line) and line[i] not in "=:" + _WHITESPACE:
            i += 2 if line[i] == "\\" else 1
        key_end = min(i, len(line))
        while i < len(line) and line[i] in _WHITESPACE:
            i += 1
        if i < len(line) and line[i] in "=:":
            i += 1
        while i < len(line) and line[i] in _WHITESPACE:
            i += 1
        result[_unescape(line[:key_end])] = _unescape(line[i:])
    return result


# --- Per replica target, for AWS ---------------------------------------------------------

RETRIEVAL_MODES = ("POLLING", "FANOUT")
METRICS_LEVELS = ("NONE", "SUMMARY", "DETAILED")
ECS_MAX_STOP_TIMEOUT_S = 120
"""ECS's ceiling for a container's stopTimeout (the SIGTERM-to-SIGKILL wait)."""
SHUTDOWN_MARGIN_MS = 10_000
"""Kept between shutdownGraceMillis and the stop timeout: after the grace the JVM still
releases its leases, flushes metrics and exits before ECS's SIGKILL."""
MIN_BATCH_RECORDS = 100
GRACEFUL_HANDOFF_OFF = (
    "Off: a rebalanced lease goes straight to its new owner, which starts at the last "
    "checkpoint and applies again, as no-ops, what the old owner applied after it. On (the "
    "KCL 3.1.3 default), a lease handed over while its processor waits on a parent shard "
    "(a child just after a split or merge) is never released: its owner keeps renewing it, "
    "nobody reads the shard, and its records expire (docs/REPLICA.md)."
)
"""Why isGracefulLeaseHandoffEnabled is false, in the AWS and the local properties."""
IMAGE_PYTHON = "/opt/lazyrep/venv/bin/python"
"""The interpreter in the worker image (Dockerfile)."""
IMAGE_TOPOLOGY = "/etc/lazyrep/topology.toml"
"""Where the worker image keeps its topology file (Dockerfile)."""
WORKER_MODULE = "kcl_consumer.worker"
GENERATED_MARK = "# Generated by `lazyrep properties`"
"""First line of every generated AWS file: `--check` uses it to find stale ones."""


def worker_command(python: str, topology: str, replica: str) -> str:
    """Return the `executableName` that runs the record processor of `replica`.

    Raises:
        ValueError: a path holds whitespace (the daemon splits executableName on spaces).
    """
    for name, value in (("python", python), ("topology", topology), ("replica", replica)):
        if not value or any(c.isspace() for c in value):
            raise ValueError(
                f"{name} must be non-empty without whitespace (the daemon splits "
                f"executableName on spaces), got {value!r}"
            )
    return f"{python} -m {WORKER_MODULE} --topology {topology} --replica {replica}"


@dataclass(frozen=True)
class ReplicaKclOptions:
    """What a replica's AWS properties need beyond the topology (defaults suit the image)."""

    python: str = IMAGE_PYTHON
    worker_topology: str = IMAGE_TOPOLOGY
    retrieval_mode: str = "POLLING"
    stop_timeout_s: int = 60
    worker_metrics: bool = False
    metrics_level: str = "SUMMARY"
    max_records: int | None = None
    idle_time_between_reads_ms: int = 2_000

    def __post_init__(self) -> None:
        if self.retrieval_mode not in RETRIEVAL_MODES:
            raise ValueError(f"retrieval_mode must be one of {RETRIEVAL_MODES}")
        if self.metrics_level not in METRICS_LEVELS:
            raise ValueError(f"metrics_level must be one of {METRICS_LEVELS}")
        low = SHUTDOWN_MARGIN_MS // 1000 + 5
        if not low <= self.stop_timeout_s <= ECS_MAX_STOP_TIMEOUT_S:
            raise ValueError(
                f"stop_timeout_s must be in {low}..{ECS_MAX_STOP_TIMEOUT_S} (ECS's maximum), "
                f"got {self.stop_timeout_s}"
            )
        if self.max_records is not None and not 1 <= self.max_records <= MAX_RECORDS_LIMIT:
            raise ValueError(f"max_records must be in 1..{MAX_RECORDS_LIMIT}")
        if not 200 <= self.idle_time_between_reads_ms <= 60_000:
            raise ValueError("idle_time_between_reads_ms must be in 200..60000")

    @property
    def shutdown_grace_ms(self) -> int:
        """shutdownGraceMillis: the stop timeout less SHUTDOWN_MARGIN_MS."""
        return self.stop_timeout_s * 1000 - SHUTDOWN_MARGIN_MS


def batch_records(topology: Topology, replica: ReplicaTarget, shutdown_grace_ms: int) -> int:
    """maxRecords for `replica`: a batch its pacer can apply in half the shutdown grace.

    The daemon delivers shutdownRequested (SIGTERM) only between two processRecords
    calls, so a batch paced at a few WCU per second must end well inside the grace. At
    the target's full rate spread over the stream's shards (`max_wcu / shards`, one WCU
    per record of up to 1 KB), half the grace gives the count, clamped to 100..10,000
    (GetRecords' own limit).
    """
    per_shard_wcu = replica.max_wcu / topology.stream.shards
    records = int(per_shard_wcu * shutdown_grace_ms / 1000 / 2)
    return max(MIN_BATCH_RECORDS, min(MAX_RECORDS_LIMIT, records))


@dataclass(frozen=True)
class Entry:
    """One property with the comment that explains its value (empty: none)."""

    key: str
    value: str
    comment: str = ""


def replica_entries(
    topology: Topology, replica_name: str, options: ReplicaKclOptions
) -> list[Entry]:
    """The properties of `replica_name`'s KCL application on AWS, in file order.

    Regions: the daemon's Kinesis client reads the stream in its own region; its DynamoDB
    client (lease, coordinator-state and worker-metrics tables) and CloudWatch client use
    the replica's region, where the worker runs. Set per client (`kinesisClient.region`,
    ...), never with `regionName`, which sets all three and whose order against the
    per-client keys depends on hashing (java.util.Properties is a hash table).

    Raises:
        KeyError: no such replica in the topology.
        ValueError: a path is unusable in executableName (see `worker_command`).
    """
    replica = topology.replicas[replica_name]
    stream = topology.stream
    grace = options.shutdown_grace_ms
    records = options.max_records or batch_records(topology, replica, grace)
    fanout = options.retrieval_mode == "FANOUT"
    entries = [
        Entry(
            "executableName",
            worker_command(options.python, options.worker_topology, replica_name),
            "The record processor (split on spaces): applies the stream to this replica.",
        ),
        Entry(
            "applicationName",
            replica.application_name,
            "One KCL application per replica target: its own lease table (this name), "
            "checkpoints and CloudWatch namespace.",
        ),
        Entry("streamName", stream.name),
        Entry(
            "AwsCredentialsProvider",
            "DefaultCredentialsProvider",
            "The ECS task role (container credentials), or the environment's.",
        ),
        Entry(
            "kinesisClient.region",
            stream.region,
            "The stream is read in its own region; the lease tables and metrics live next "
            "to the worker, in the replica's region. Per client: never combine with "
            "regionName (which one wins would depend on key hashing).",
        ),
        Entry("dynamoDbClient.region", replica.region),
        Entry("cloudWatchClient.region", replica.region),
        Entry(
            "retrievalMode",
            options.retrieval_mode,
            "Enhanced fan-out: a dedicated 2 MiB/s per shard for this application (consumer "
            "name = applicationName), billed per consumer-shard hour."
            if fanout
            else "Polling shares each shard's 5 reads/s and 2 MiB/s with the Lambda and the "
            "other replicas; a paced replica reads little, so that is cheap and enough.",
        ),
        Entry(
            "initialPositionInStream",
            "TRIM_HORIZON",
            "A new lease starts at the oldest record still in the stream (replays are "
            "idempotent), never at LATEST, which would skip what is not yet applied.",
        ),
        Entry(
            "shutdownGraceMillis",
            str(grace),
            f"SIGTERM: the processors get shutdownRequested and checkpoint what they applied. "
            f"{SHUTDOWN_MARGIN_MS // 1000} s under the ECS stopTimeout "
            f"({options.stop_timeout_s} s) for the JVM to release its leases and exit.",
        ),
        Entry(
            "isGracefulLeaseHandoffEnabled",
            "false",
            GRACEFUL_HANDOFF_OFF,
        ),
        Entry(
            "failoverTimeMillis",
            "10000",
            "A lease not renewed for this long is taken over by another worker.",
        ),
        Entry(
            "leaseTableDeletionProtectionEnabled",
            "true",
            "The lease table holds the checkpoints; losing it replays the whole retention.",
        ),
        Entry(
            "disableWorkerMetrics",
            "false" if options.worker_metrics else "true",
            "Balance leases by CPU (from the ECS task metadata endpoint)."
            if options.worker_metrics
            else "Balance leases by shard throughput: a paced worker's CPU is mostly idle "
            "noise, while the bytes it applies are its real load (WCU follow item sizes).",
        ),
        Entry(
            "metricsLevel",
            options.metrics_level,
            "KCL metrics in CloudWatch, namespace = applicationName.",
        ),
    ]
    if not fanout:
        entries += [
            Entry(
                "maxRecords",
                str(records),
                "Per GetRecords: a batch the pacer applies well inside the shutdown grace "
                f"at max_wcu ({replica.max_wcu:g} WCU over {stream.shards} shards).",
            ),
            Entry(
                "idleTimeBetweenReadsInMillis",
                str(options.idle_time_between_reads_ms),
                "Between polls of a shard: lazy replicas can wait.",
            ),
        ]
    return entries


def _comment(text: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width=88)]


def render_replica(
    topology: Topology,
    replica_name: str,
    options: ReplicaKclOptions,
    *,
    source: str = "the topology file",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Return the AWS properties file of `replica_name` (see `replica_entries`), with
    `extra` keys after the generated ones (they win: the last value of a key counts).

    Raises:
        KeyError: no such replica.
        ValueError: an `extra` key the daemon would ignore, or an unusable path.
    """
    replica = topology.replicas[replica_name]
    unknown = unknown_keys(extra or {})
    if unknown:
        raise ValueError(f"the KCL {KCL_VERSION} daemon ignores {', '.join(unknown)}")
    lines = [
        f"{GENERATED_MARK} from {source}: edit the topology, not this file.",
        f'# KCL MultiLangDaemon properties for replica "{replica_name}" ({replica.region}) '
        f"of stream {topology.stream.name} ({topology.stream.region}).",
        "# Keys are checked against those the daemon knows (kcl_consumer/known_keys.py):",
        "# it ignores any other silently.",
    ]
    for entry in replica_entries(topology, replica_name, options):
        # A commented entry starts a paragraph; one without a comment joins the previous.
        if entry.comment:
            lines += ["", *_comment(entry.comment)]
        lines.append(f"{entry.key} = {_escape(entry.value)}")
    if extra:
        lines += ["", "# Overrides"]
        lines += [f"{key} = {_escape(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def local_replica_settings(
    topology: Topology,
    replica_name: str,
    *,
    executable: str,
    kinesis_endpoint: str,
    dynamodb_endpoint: str,
    cloudwatch_endpoint: str,
) -> KclSettings:
    """Settings for local.properties running `replica_name` against the local stack.

    Raises:
        KeyError: no such replica.
    """
    replica = topology.replicas[replica_name]
    return KclSettings(
        executable=executable,
        application_name=replica.application_name,
        stream_name=topology.stream.name,
        region=topology.stream.region,
        lease_region=replica.region,
        kinesis_endpoint=kinesis_endpoint,
        dynamodb_endpoint=dynamodb_endpoint,
        cloudwatch_endpoint=cloudwatch_endpoint,
    )
