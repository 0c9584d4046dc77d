"""`lazyrep deploy templates`: CloudFormation templates generated from the topology.

One template for the stream's region and one per replica target, written as JSON into
`--out`; `--check` compares instead of writing, for CI. docs/DEPLOY.md has the rest:
linting, the deploy commands, the parameters, the IAM policies.
"""

from __future__ import annotations

from pathlib import Path

import click

from binlog.topology import load_topology
from lazyrep.errors_cli import fail, handle_errors
from lazyrep.infra import InfraError, InfraSettings, render_templates, write_templates


@click.group("deploy")
def deploy() -> None:
    """Infrastructure as code for AWS: CloudFormation templates from the topology."""


@deploy.command(
    "templates",
    short_help="CloudFormation templates: the primary region's, one per replica.",
)
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for primary.json and replica-NAME.json (created if missing).",
)
@click.option(
    "--stream-kms-key",
    default=None,
    metavar="ARN",
    help="Customer managed KMS key ARN for the stream (default: alias/aws/kinesis); "
    "readers get kms:Decrypt on it through Kinesis only.",
)
@click.option(
    "--stop-timeout",
    type=int,
    default=60,
    show_default=True,
    help="Worker container stopTimeout (s): the image's STOP_TIMEOUT build arg.",
)
@click.option("--batch-size", type=int, default=500, show_default=True, help="Mapping BatchSize.")
@click.option(
    "--parallelization-factor",
    type=int,
    default=1,
    show_default=True,
    help="Mapping ParallelizationFactor (1-10).",
)
@click.option(
    "--max-retry-attempts",
    type=int,
    default=-1,
    show_default=True,
    help="Mapping MaximumRetryAttempts (-1: until the record expires).",
)
@click.option(
    "--max-record-age",
    type=int,
    default=-1,
    show_default=True,
    help="Mapping MaximumRecordAgeInSeconds (-1: infinite; else 60 to retention - margin).",
)
@click.option(
    "--primary-lag-alarm",
    type=int,
    default=900,
    show_default=True,
    help="Alarm when the applier's iterator age exceeds this many seconds.",
)
@click.option(
    "--desired-tasks",
    type=int,
    default=2,
    show_default=True,
    help="Worker tasks per replica (at most the open shards do work).",
)
@click.option("--task-cpu", type=int, default=512, show_default=True, help="Fargate CPU units.")
@click.option("--task-memory", type=int, default=1024, show_default=True, help="Fargate MiB.")
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if a file in --out differs from what would be written.",
)
@handle_errors
def templates(
    topology_path: Path,
    out: Path,
    stream_kms_key: str | None,
    stop_timeout: int,
    batch_size: int,
    parallelization_factor: int,
    max_retry_attempts: int,
    max_record_age: int,
    primary_lag_alarm: int,
    desired_tasks: int,
    task_cpu: int,
    task_memory: int,
    check: bool,
) -> None:
    """Write the CloudFormation templates of the topology's deployment.

    Deploy primary.json in the stream's region first, then each replica-NAME.json in
    its replica's region (docs/DEPLOY.md).
    """
    topology = load_topology(topology_path)
    try:
        settings = InfraSettings(
            stream_kms_key_arn=stream_kms_key,
            stop_timeout_s=stop_timeout,
            batch_size=batch_size,
            parallelization_factor=parallelization_factor,
            maximum_retry_attempts=max_retry_attempts,
            maximum_record_age_s=max_record_age,
            primary_iterator_age_alarm_s=primary_lag_alarm,
            desired_tasks=desired_tasks,
            task_cpu=task_cpu,
            task_memory_mb=task_memory,
        )
        files = render_templates(topology, settings)
    except (InfraError, ValueError) as exc:
        fail(str(exc))
    if check:
        stale = [
            f.file_name
            for f in files
            if not (out / f.file_name).is_file()
            or (out / f.file_name).read_text(encoding="utf-8") != f.text
        ]
        if stale:
            fail(f"out of date in {out}: {', '.join(stale)} (run without --check)", 1)
        click.echo(f"{len(files)} templates in {out} match {topology_path}")
        return
    for stack_file, path in zip(files, write_templates(files, out), strict=True):
        click.echo(f"{path}\t{stack_file.region}")
