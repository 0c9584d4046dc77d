"""`lazyrep demo`: the main job on the embedded default, start to finish, one command."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import tempfile
from importlib import resources
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.live import Live

from binlog.topology import load_topology
from emulators.procs import group_alive
from lazyrep.demo import DemoOptions, LiveFigures, run_demo
from lazyrep.demo_live import render
from lazyrep.demo_report import print_report
from lazyrep.embedded import embedded_stack


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
@click.option(
    "--actions",
    type=click.IntRange(100, 1_000_000),
    default=20_000,
    show_default=True,
    help="SDK actions (stream records) to produce.",
)
@click.option(
    "--writers",
    type=click.IntRange(2, 64),
    default=8,
    show_default=True,
    help="Writers: half boto3 threads, half aiobotocore tasks (an even number).",
)
@click.option(
    "--rate",
    "rate_per_s",
    type=click.FloatRange(1, 100_000),
    default=200.0,
    show_default=True,
    help="Actions per second over all writers.",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(10, 3600),
    default=600.0,
    show_default=True,
    help="Seconds to wait for every consumer after the last write.",
)
@click.option(
    "--one-dynamodb",
    is_flag=True,
    help="Serve every region's DynamoDB from the stack's moto server "
    "(default: one more moto server per replica region).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON on stdout.")
def demo(
    topology_path: Path | None,
    actions: int,
    writers: int,
    rate_per_s: float,
    wait_s: float,
    one_dynamodb: bool,
    as_json: bool,
) -> None:
    """Run the demo on local emulators it starts and stops itself.

    Starts kinesalite (behind nghttpx) and moto server on loopback; creates the
    stream, the primary tables and each replica's tables in its region; runs the
    Lambda handler behind the local event source mapping and one real KCL worker
    (MultiLangDaemon) per replica, paced so the replicas lag; produces a mixed
    workload with the boto3 and aiobotocore SDKs plus a few invalid records from
    a rogue raw-boto3 writer; shows live progress; then verifies each replica
    against the primary and the primary against the reference model, and reads the
    dead-letter queue. Exits 0 only if everything holds and no process is left.
    """
    if writers % 2:
        raise click.BadParameter("must be even (half sync, half async)", param_hint="--writers")
    options = DemoOptions(
        actions=actions,
        writers=writers,
        rate_per_s=rate_per_s,
        wait_s=wait_s,
        regional_dynamodb=not one_dynamodb,
    )
    # With --json stdout carries the report alone; the live display goes to stderr.
    console = Console(stderr=as_json)
    path = topology_path or demo_topology_path()
    load_topology(path)  # a clear error now, before anything starts
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the workers and the
    # emulators it started are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    log_dir = Path(tempfile.mkdtemp(prefix="lazyrep-demo-"))
    # The handler's and the SDKs' own logs (a parked record is a warning) go to a file:
    # the terminal is the live display's.
    handler = logging.FileHandler(log_dir / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    stack_groups: list[int] = []
    with embedded_stack(use_aws=False) as stack:
        if stack is None:  # pragma: no cover - use_aws=False always starts one
            raise click.ClickException("the local stack did not start")
        stack_groups = [p.pid for p in stack.processes]
        console.print(
            f"[bold]local stack[/] kinesis {stack.endpoints.kinesis}, "
            f"dynamodb/sqs {stack.endpoints.dynamodb}; logs in {log_dir}"
        )
        with Live(console=console, refresh_per_second=2, transient=False) as live:

            def show(figures: LiveFigures) -> None:
                live.update(render(figures))

            report = run_demo(path, options, log_dir=log_dir, progress=show)
    report.stack_groups = stack_groups + report.stack_groups
    report.processes_left += [g for g in stack_groups if group_alive(g)]
    if report.ok:
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        report.log_dir = str(log_dir)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print_report(console, report)
    sys.exit(0 if report.ok else 1)
