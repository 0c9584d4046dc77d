"""`lazyrep bench`: benchmarks that print figures (never timed tests)."""

from __future__ import annotations

import json
import uuid

import click
from rich.console import Console
from rich.table import Table

from lazyrep import bench_apply, bench_pacer, bench_producer
from lazyrep.embedded import embedded_stack


@click.group()
def bench() -> None:
    """Benchmarks: run side by side against a baseline, print figures and ratios."""


@bench.command("producer")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--quick", is_flag=True, help="Fewer records: finishes in under a minute.")
@click.option(
    "--aws",
    is_flag=True,
    help="Use your own AWS configuration instead of the local emulators (creates a stream).",
)
def producer(as_json: bool, quick: bool, aws: bool) -> None:
    """The producer SDK (sync and async) against raw boto3 PutRecords and naive PutRecord.

    naive: one PutRecord per action. raw: PutRecords of 500 pre-encoded records, one
    call at a time (the ceiling). sync/async: the SDK, encoding included. CPU is this
    process's CPU time per record; the emulators run in their own processes.
    """
    err = Console(stderr=True)
    plan = bench_producer.BenchPlan.quick() if quick else bench_producer.BenchPlan.full()
    with embedded_stack(use_aws=aws) as stack:
        emulator = "kinesalite (local stack)" if stack is not None else "AWS"
        with err.status("benchmarking the producer") as status:
            figures = bench_producer.run(
                plan,
                stream=f"lazyrep-bench-{uuid.uuid4().hex[:8]}",
                progress=lambda message: status.update(f"producer bench: {message}"),
            )
    figures["kinesis"] = emulator
    _show(figures, as_json, "producer benchmark (medians)")


def _show(figures: dict[str, object], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(figures))
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, str(value))
    Console().print(table)


@bench.command("apply")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--quick", is_flag=True, help="4,000 records, two concurrencies: under a minute.")
@click.option(
    "--latency-ms",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Delay every DynamoDB request by this much (through the fault proxy), as a real "
    "network would: loopback has none, so concurrency cannot pay off against it.",
)
def apply(as_json: bool, quick: bool, latency_ms: int) -> None:
    """The Lambda handler against plain DynamoDB writes on the local stack.

    naive: one unconditional PutItem per record, in sequence. raw: the same number
    of conditional single-item writes at the best concurrency tried (the emulator's
    ceiling). handler: lambda_consumer.handler.handle on AWS-shaped events, decoding,
    version guards and dead-letter checks included.
    """
    err = Console(stderr=True)
    plan = bench_apply.ApplyPlan.quick() if quick else bench_apply.ApplyPlan.full()
    with (
        embedded_stack(use_aws=False) as stack,
        bench_apply.latency(stack, latency_ms),
        err.status("benchmarking the applier") as status,
    ):
        figures = bench_apply.run(plan, lambda message: status.update(f"apply bench: {message}"))
    figures["dynamodb"] = "moto server (local stack)"
    figures["latency_ms"] = latency_ms
    _show(figures, as_json, "apply benchmark")


@bench.command("pacer")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--quick", is_flag=True, help="Shorter real-time section: under a minute.")
def pacer(as_json: bool, quick: bool) -> None:
    """The lazy pacer: a simulated day of diurnal load on a virtual clock, then real time.

    Simulation (no sleeping): a load with a peak-to-average ratio of 3 on a stream
    with 24 h retention; replica peak WCU over its average, the worst lag against the
    deadline. Real time: records applied to a table on the local stack through the
    pacer; achieved over target WCU.
    """
    err = Console(stderr=True)
    with embedded_stack(use_aws=False), err.status("benchmarking the pacer") as status:
        figures = bench_pacer.run(quick, lambda message: status.update(f"pacer bench: {message}"))
    _show(figures, as_json, "pacer benchmark")


@bench.command("reliability")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines: one per scenario, then a summary."
)
@click.option(
    "--scenario",
    "names",
    multiple=True,
    metavar="NAME",
    help="Run only this scenario (repeatable); default: all of them. --list shows the names.",
)
@click.option(
    "--scale",
    type=click.FloatRange(0.001, 10.0),
    default=None,
    help="Multiply every scenario's size by this (1.0: the published figures).",
)
@click.option("--quick", is_flag=True, help="The same as --scale 0.1: a few minutes in all.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
def reliability_command(
    as_json: bool, names: tuple[str, ...], scale: float | None, quick: bool, list_only: bool
) -> None:
    """Hurt every path on the local stack and count what was lost, applied twice or diverged.

    Each scenario prints produced, applied, parked, lost, duplicated, diverged and seconds
    (plus its own figures); lost, duplicated and diverged must be 0. Exit status 1 if any
    is not, or a scenario's own expectation failed. docs/RELIABILITY.md lists the scenarios.
    """
    from lazyrep.reliability import cli as reliability_cli  # noqa: PLC0415 - heavy, on use

    reliability_cli.run(
        as_json=as_json,
        names=list(names),
        factor=scale if scale is not None else (0.1 if quick else 1.0),
        list_only=list_only,
    )
