"""`lazyrep demo`: the main job on the embedded default, start to finish, one command."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from binlog.topology import load_topology
from lazyrep.demo import DemoReport, run_demo
from lazyrep.embedded import embedded_stack


def demo_topology_path() -> Path:
    """The topology packaged for the demo (installed editable or as files: a real path)."""
    return Path(str(resources.files("lazyrep") / "demo_topology.toml"))


@click.command()
@click.option(
    "--topology",
    "topology_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Topology file (default: the packaged demo topology).",
)
@click.option("--writers", default=4, show_default=True, help="Writers per SDK (sync and async).")
@click.option("--ops", default=500, show_default=True, help="SDK calls per writer.")
def demo(topology_path: Path | None, writers: int, ops: int) -> None:
    """Run the demo on local emulators it starts and stops itself.

    Starts kinesalite (behind nghttpx) and moto server on free loopback ports,
    creates the binlog stream, drives the producer SDK (boto3 threads and
    aiobotocore tasks) with a mixed workload, shows invalid actions being refused,
    then reads the stream back and checks every action is there once, in order.
    Exits 1 if anything is missing, duplicated or out of order.
    """
    console = Console()
    path = topology_path or demo_topology_path()
    load_topology(path)  # a clear error now, before anything starts
    with embedded_stack(use_aws=False) as stack:
        if stack is None:  # pragma: no cover - use_aws=False always starts one
            raise click.ClickException("the local stack did not start")
        console.print(
            f"[bold]local stack[/] kinesis {stack.endpoints.kinesis}, "
            f"dynamodb/sqs/s3 {stack.endpoints.dynamodb}"
        )
        with Progress(
            TextColumn("producing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("produce", total=None)
            report = run_demo(
                path,
                sync_writers=writers,
                async_writers=writers,
                ops_per_writer=ops,
                progress=lambda n: bar.advance(task, n),
            )
    _print(console, report)
    sys.exit(0 if report.ok else 1)


def _print(console: Console, report: DemoReport) -> None:
    refused = Table(title="refused before sending (nothing reached the stream)")
    for column in ("invalid action", "reason", "message"):
        refused.add_column(column)
    for what, reason, message in report.refused:
        refused.add_row(what, reason, message[:90])
    console.print(refused)

    produced = Table(title="actions in the stream")
    for column in ("table", "action", "records"):
        produced.add_column(column)
    for (table, action), count in sorted(report.produced.items()):
        produced.add_row(table, action, str(count))
    console.print(produced)

    summary = Table(title="summary", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for name, seconds in report.sdk_seconds.items():
        actions = report.sdk_actions[name]
        summary.add_row(
            f"{name} actions", f"{actions} in {seconds:.2f} s ({actions / seconds:,.0f}/s)"
        )
    summary.add_row("records read back", f"{report.read} in {report.read_seconds:.2f} s")
    summary.add_row(
        "per shard", ", ".join(f"{s[-3:]}: {n}" for s, n in sorted(report.shards.items()))
    )
    summary.add_row("missing", str(report.missing))
    summary.add_row("duplicated", str(report.duplicates))
    summary.add_row("out of order (per item)", str(report.out_of_order))
    summary.add_row("undecodable", str(report.undecodable))
    console.print(summary)

    primary = Table(title="primary tables (local event source mapping + Lambda handler)")
    for column in ("table", "items", "equals the reference model"):
        primary.add_column(column)
    for table, (items, equal) in report.primary_tables.items():
        primary.add_row(table, str(items), "[green]yes[/]" if equal else "[red]NO[/]")
    console.print(primary)
    console.print(
        f"primary path: {report.primary_records} records in {report.primary_invocations} "
        f"invocations, {report.primary_seconds:.1f} s"
    )
    verdict = (
        "[green]OK[/]: every action once, in its item's order; primary tables match"
        if report.ok
        else "[red]FAILED[/]"
    )
    console.print(verdict)
