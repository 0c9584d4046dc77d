"""`lazyrep status`: where each replica target stands, per shard, and whether it is safe.

Thin: options in, lazyrep.status_read gathers, lazyrep.status assesses,
lazyrep.status_report prints. Exit status: 0 every verdict ok or at risk, 3 some
shard's records will expire, 1 a failure while reading, 2 usage or input errors
(docs/STATUS.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from binlog.clients import boto3_client
from binlog.topology import load_topology
from lazyrep.errors_cli import CliError, cli_errors
from lazyrep.status import DEFAULT_STALE_AFTER_S
from lazyrep.status_read import collect_status
from lazyrep.status_report import print_status


def _client(service: str, region: str) -> Any:
    return boto3_client(service, region=region)


@click.command("status")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    metavar="NAME",
    help="Only this replica target (repeatable; default: all).",
)
@click.option(
    "--stale-after",
    "stale_after_s",
    type=click.FloatRange(1, 86400),
    default=DEFAULT_STALE_AFTER_S,
    show_default=True,
    help="Seconds after which a worker's status item no longer counts as live.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout, for monitors.")
def status(
    topology_path: Path, replicas: tuple[str, ...], stale_after_s: float, as_json: bool
) -> None:
    """Per replica and shard: checkpoint, backlog age, pacer rate, drain time, margins, verdict.

    Exit status 3 if any shard's records will expire before they are applied.
    """
    with cli_errors("status"):
        topology = load_topology(topology_path)
        names = list(replicas) or sorted(topology.replicas)
        unknown = [n for n in names if n not in topology.replicas]
        if unknown:
            known = ", ".join(sorted(topology.replicas)) or "none"
            raise CliError(f"unknown replica {unknown[0]!r} (known: {known})")
        if not names:
            raise CliError(f"{topology_path} has no replica targets")
        report = collect_status(topology, names, _client, stale_after_s=stale_after_s)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_status(report, Console(soft_wrap=False))
    sys.exit(report.exit_code)
