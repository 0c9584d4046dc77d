"""`lazyrep properties`: one KCL MultiLangDaemon properties file per replica target.

For AWS (the default) the files go to properties/ and are committed: the worker image
runs them (`lazyrep kcl run --properties /etc/lazyrep/properties/NAME.properties`), and
`--check` fails when one is out of date with the topology. With `--local` they point at
the running local stack instead (endpoints from `lazyrep local env`) and go to
.lazyrep/properties/, since they hold this machine's ports and paths.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from binlog.errors import TopologyError
from binlog.topology import Topology, load_topology
from kcl_consumer.properties import (
    DEFAULT_TEMPLATE,
    ECS_MAX_STOP_TIMEOUT_S,
    GENERATED_MARK,
    IMAGE_PYTHON,
    IMAGE_TOPOLOGY,
    RETRIEVAL_MODES,
    ReplicaKclOptions,
    local_replica_settings,
    render,
    render_replica,
    worker_command,
)

AWS_OUT = Path("properties")
LOCAL_OUT = Path(".lazyrep") / "properties"
LOCAL_SUFFIX = ".local.properties"


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2, the code for 'cannot run as asked'."""
    click.echo(f"lazyrep: error: {message}", err=True)
    sys.exit(2)


def _parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set takes KEY=VALUE, got {item!r}")
        extra[key.strip()] = value.strip()
    return extra


def _replica_names(topology: Topology, wanted: tuple[str, ...]) -> list[str]:
    if not topology.replicas:
        fail("the topology has no [replicas.NAME] section: nothing to generate")
    for name in wanted:
        if name not in topology.replicas:
            fail(f"no replica {name!r} in the topology (known: {', '.join(topology.replicas)})")
    names = list(wanted) or list(topology.replicas)
    if "local" in names:
        fail("a replica named 'local' would overwrite local.properties: rename it")
    return names


def _aws_files(
    topology: Topology,
    names: list[str],
    options: ReplicaKclOptions,
    source: str,
    extra: dict[str, str],
    out: Path,
) -> dict[Path, str]:
    return {
        out / f"{name}.properties": render_replica(
            topology, name, options, source=source, extra=extra
        )
        for name in names
    }


def _local_files(
    topology: Topology,
    names: list[str],
    topology_path: Path,
    endpoints: tuple[str | None, str | None, str | None],
    extra: dict[str, str],
    out: Path,
) -> dict[Path, str]:
    kinesis, dynamodb, cloudwatch = endpoints
    if not kinesis or not dynamodb:
        fail(
            '--local needs the local stack\'s endpoints: run `eval "$(lazyrep local env)"` '
            "first, or pass --kinesis-endpoint and --dynamodb-endpoint"
        )
    files = {}
    for name in names:
        settings = local_replica_settings(
            topology,
            name,
            executable=worker_command(sys.executable, str(topology_path.resolve()), name),
            kinesis_endpoint=kinesis,
            dynamodb_endpoint=dynamodb,
            cloudwatch_endpoint=cloudwatch or dynamodb,
        )
        files[out / f"{name}{LOCAL_SUFFIX}"] = render(
            settings, template=DEFAULT_TEMPLATE, extra=extra
        )
    return files


def _stale(out: Path, expected: dict[Path, str]) -> list[Path]:
    """Generated AWS files in `out` that no replica of the topology produces any more."""
    stale = []
    for path in sorted(out.glob("*.properties")):
        if path in expected or path.name.endswith(LOCAL_SUFFIX):
            continue
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith(GENERATED_MARK):
            stale.append(path)
    return stale


@click.command("properties")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    metavar="NAME",
    help="Only this replica target (repeatable; default: every one).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Directory of the files (default: {AWS_OUT}/, or {LOCAL_OUT}/ with --local).",
)
@click.option(
    "--local",
    is_flag=True,
    help="For the running local stack (properties/local.properties with its endpoints).",
)
@click.option(
    "--retrieval-mode",
    type=click.Choice(RETRIEVAL_MODES),
    default="POLLING",
    show_default=True,
    help="POLLING shares the shards' read limits; FANOUT (enhanced fan-out) has its own.",
)
@click.option(
    "--stop-timeout",
    "stop_timeout_s",
    type=click.IntRange(15, ECS_MAX_STOP_TIMEOUT_S),
    default=60,
    show_default=True,
    help="The ECS task definition's stopTimeout in seconds; shutdownGraceMillis is 10 s less.",
)
@click.option(
    "--worker-metrics/--no-worker-metrics",
    default=False,
    show_default=True,
    help="Let KCL 3 balance leases by CPU (ECS metadata) instead of by shard throughput.",
)
@click.option("--max-records", type=click.IntRange(1, 10_000), help="Override maxRecords.")
@click.option(
    "--python",
    default=IMAGE_PYTHON,
    show_default=True,
    help="The worker's Python interpreter, as seen by the worker (AWS files).",
)
@click.option(
    "--worker-topology",
    default=IMAGE_TOPOLOGY,
    show_default=True,
    help="The topology file's path as seen by the worker (AWS files).",
)
@click.option(
    "--kinesis-endpoint",
    envvar="LAZYREP_KCL_KINESIS_ENDPOINT",
    help="--local: the h2c Kinesis endpoint (env LAZYREP_KCL_KINESIS_ENDPOINT).",
)
@click.option(
    "--dynamodb-endpoint",
    envvar="AWS_ENDPOINT_URL_DYNAMODB",
    help="--local: DynamoDB for the lease tables (env AWS_ENDPOINT_URL_DYNAMODB).",
)
@click.option(
    "--cloudwatch-endpoint",
    envvar="AWS_ENDPOINT_URL_CLOUDWATCH",
    help="--local: CloudWatch (env AWS_ENDPOINT_URL_CLOUDWATCH; default: the DynamoDB one).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra or overriding property (repeatable); keys the daemon ignores are refused.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if a file is missing, differs, or is stale (for CI).",
)
def properties(
    topology_path: Path,
    replicas: tuple[str, ...],
    out: Path | None,
    local: bool,
    retrieval_mode: str,
    stop_timeout_s: int,
    worker_metrics: bool,
    max_records: int | None,
    python: str,
    worker_topology: str,
    kinesis_endpoint: str | None,
    dynamodb_endpoint: str | None,
    cloudwatch_endpoint: str | None,
    overrides: tuple[str, ...],
    check: bool,
) -> None:
    """Write one KCL properties file per replica target of the topology.

    Example: lazyrep properties --topology examples/topology.toml (writes
    properties/eu.properties and properties/apac.properties).
    """
    try:
        topology = load_topology(topology_path)
    except TopologyError as exc:
        fail(f"{topology_path}: {exc}")
    names = _replica_names(topology, replicas)
    extra = _parse_overrides(overrides)
    out_dir = out or (LOCAL_OUT if local else AWS_OUT)
    try:
        if local:
            endpoints = (kinesis_endpoint, dynamodb_endpoint, cloudwatch_endpoint)
            files = _local_files(topology, names, topology_path, endpoints, extra, out_dir)
        else:
            options = ReplicaKclOptions(
                python=python,
                worker_topology=worker_topology,
                retrieval_mode=retrieval_mode,
                stop_timeout_s=stop_timeout_s,
                worker_metrics=worker_metrics,
                max_records=max_records,
            )
            files = _aws_files(topology, names, options, topology_path.name, extra, out_dir)
    except ValueError as exc:
        fail(str(exc))
    if check:
        _check(files, [] if (local or replicas) else _stale(out_dir, files))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}", err=True)


def _check(files: dict[Path, str], stale: list[Path]) -> None:
    problems = []
    for path, text in files.items():
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what the topology generates")
    problems += [f"{path}: no replica of the topology generates it (stale)" for path in stale]
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        click.echo(
            "regenerate with the same `lazyrep properties` options, without --check", err=True
        )
        sys.exit(1)
    click.echo(f"{len(files)} properties files up to date", err=True)
