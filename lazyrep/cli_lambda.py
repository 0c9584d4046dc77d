"""`lazyrep lambda`: run the Lambda consumer locally behind an emulated event source mapping.

Endpoints come from the standard AWS_ENDPOINT_URL_<SERVICE> variables (for the local
stack: `eval "$(lazyrep local env)"`); nothing here names one. Logs are JSON lines on
stderr; `--until-idle` prints the mapping's statistics as one JSON line on stdout.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, cast

import click

from binlog.errors import TopologyError
from binlog.topology import load_topology
from emulators.esm import EsmError, EsmSettings, EventSourceMapping, StartingPosition
from emulators.esm_events import Handler
from emulators.esm_settings import REPORT_BATCH_ITEM_FAILURES

DEFAULT_HANDLER = "lambda_consumer.handler.handle"
ENV_TOPOLOGY = "LAZYREP_TOPOLOGY"
"""What lambda_consumer's settings read the topology path from (the function's env)."""

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2, the code for 'cannot run as asked'."""
    click.echo(f"lazyrep: error: {message}", err=True)
    sys.exit(2)


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and k[0] != "_"}
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for every logger (stdout stays free for results and EMF)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def load_handler(spec: str) -> Handler:
    """Import `package.module.function` (or `package.module:function`).

    Raises:
        click.BadParameter: not importable, or not callable.
    """
    module_name, sep, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not module.function", param_hint="--handler")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}", param_hint="--handler"
        ) from exc
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise click.BadParameter(f"{spec!r} is not a callable", param_hint="--handler")
    return cast(Handler, handler)


@click.group("lambda")
def lambda_() -> None:
    """Run the Lambda consumer in-process behind a local Kinesis event source mapping."""


@lambda_.command("run")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Topology TOML: the stream to poll and its region. Also given to the handler as "
    f"{ENV_TOPOLOGY} (this option wins over the variable).",
)
@click.option(
    "--handler",
    "handler_spec",
    default=DEFAULT_HANDLER,
    show_default=True,
    help="The function to invoke, as module.function or module:function.",
)
@click.option(
    "--function-name",
    default="lazyrep-applier",
    show_default=True,
    help="Function name in the context, ARNs and on-failure records.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="BatchSize: most records per invocation.",
)
@click.option(
    "--batching-window",
    type=click.FloatRange(0, 300),
    default=0.0,
    show_default=True,
    help="MaximumBatchingWindowInSeconds: how long to gather records before invoking.",
)
@click.option(
    "--starting-position",
    type=click.Choice([p.value for p in StartingPosition]),
    default=StartingPosition.TRIM_HORIZON.value,
    show_default=True,
    help="StartingPosition for shards without a checkpoint.",
)
@click.option(
    "--starting-timestamp",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="StartingPositionTimestamp for AT_TIMESTAMP (ISO 8601; no zone means UTC).",
)
@click.option(
    "--max-retries",
    type=click.IntRange(-1, 10_000),
    default=10,
    show_default=True,
    help="MaximumRetryAttempts (-1: until the records expire).",
)
@click.option(
    "--max-record-age",
    type=int,
    default=-1,
    show_default=True,
    help="MaximumRecordAgeInSeconds (-1: no limit, else 60 to 604800).",
)
@click.option(
    "--bisect/--no-bisect",
    default=True,
    show_default=True,
    help="BisectBatchOnFunctionError: split a failed batch in halves and retry each.",
)
@click.option(
    "--report-batch-item-failures/--no-report-batch-item-failures",
    default=True,
    show_default=True,
    help="FunctionResponseTypes ReportBatchItemFailures: honour the handler's partial "
    "batch response (the project's handler needs it).",
)
@click.option(
    "--on-failure-queue",
    help="DestinationConfig.OnFailure: SQS queue name, URL or ARN (must exist). "
    "Without it, records that exhaust their retries are discarded, as on AWS.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep checkpoints in this JSON file, so a restarted run resumes where it stopped.",
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Stop once every shard is at its tip and nothing is in flight; print stats.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1),
    default=300.0,
    show_default=True,
    help="With --until-idle: give up (exit 1) if not idle after this many seconds.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.001, 60),
    default=1.0,
    show_default=True,
    help="Seconds between polls of an idle shard (Lambda: 1).",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Log the statistics every this many seconds (0: never).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of the JSON log lines on stderr.",
)
def run(
    topology_path: Path,
    handler_spec: str,
    function_name: str,
    batch_size: int,
    batching_window: float,
    starting_position: str,
    starting_timestamp: datetime | None,
    max_retries: int,
    max_record_age: int,
    bisect: bool,
    report_batch_item_failures: bool,
    on_failure_queue: str | None,
    state_file: Path | None,
    until_idle: bool,
    idle_timeout: float,
    poll_interval: float,
    stats_interval: float,
    log_level: str,
) -> None:
    """Poll the topology's stream as Lambda's Kinesis event source mapping does and
    invoke the handler in this process (one batch per shard at a time)."""
    configure_logging(log_level)
    try:
        topology = load_topology(topology_path)
    except TopologyError as exc:
        fail(str(exc))
    if starting_timestamp is not None and starting_timestamp.tzinfo is None:
        starting_timestamp = starting_timestamp.replace(tzinfo=UTC)
    try:
        settings = EsmSettings(
            batch_size=batch_size,
            maximum_batching_window_in_seconds=batching_window,
            starting_position=StartingPosition(starting_position),
            starting_position_timestamp=starting_timestamp,
            function_response_types=(
                (REPORT_BATCH_ITEM_FAILURES,) if report_batch_item_failures else ()
            ),
            bisect_batch_on_function_error=bisect,
            maximum_retry_attempts=max_retries,
            maximum_record_age_in_seconds=max_record_age,
            on_failure_destination=on_failure_queue,
            function_name=function_name,
            poll_interval_s=poll_interval,
        )
    except ValueError as exc:
        fail(str(exc))
    os.environ[ENV_TOPOLOGY] = str(topology_path.resolve())
    try:
        handler = load_handler(handler_spec)
    except click.BadParameter as exc:
        fail(exc.format_message())
    mapping = EventSourceMapping(
        topology.stream.name,
        handler,
        settings,
        region=topology.stream.region,
        state_file=state_file,
    )
    try:
        mapping.start()
    except EsmError as exc:
        fail(str(exc))
    if until_idle:
        try:
            mapping.drain(idle_timeout)
        except TimeoutError as exc:
            mapping.stop()
            click.echo(f"lazyrep: {exc}", err=True)
            sys.exit(1)
        mapping.stop()
        click.echo(json.dumps(mapping.stats().to_json()))
        return
    _serve(mapping, stats_interval)


def _serve(mapping: EventSourceMapping, stats_interval: float) -> None:
    """Run until SIGINT or SIGTERM, logging statistics now and then."""
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log = logging.getLogger(__name__)
    while not done.wait(stats_interval or None):
        log.info("statistics", extra={"stats": mapping.stats().to_json()})
    mapping.stop()
    log.info("stopped", extra={"stats": mapping.stats().to_json()})
