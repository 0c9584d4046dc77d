"""`lazyrep verify`: compare a replica with its primary; exit 1 only for what lag cannot explain.

Thin: options in, lazyrep.verify does the work, lazyrep.verify_report prints it.
Exit status: 0 in sync (or only lagging), 1 differences lag cannot explain remain
(after --repair, those it could not fix), 2 usage or input errors (docs/VERIFY.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from binlog.topology import load_topology
from lazyrep.errors_cli import cli_errors
from lazyrep.verify import Verifier, VerifyConfig
from lazyrep.verify_progress import LagMode
from lazyrep.verify_report import print_report, report_json
from lazyrep.verify_target import MAX_SEGMENTS, make_clients, parse_table_list, resolve


@click.command("verify")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option("--replica", required=True, metavar="NAME", help="The replica target to verify.")
@click.option("--tables", metavar="A,B", help="Only these primary tables (default: all).")
@click.option(
    "--segments",
    type=click.IntRange(1, MAX_SEGMENTS),
    default=4,
    show_default=True,
    help="Parallel scan segments (threads) per table and side.",
)
@click.option(
    "--sample",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="Verify this random fraction of each table (segments sampled on both sides).",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Rewrite what lag cannot explain from the primary, never over a newer replica version.",
)
@click.option(
    "--lag",
    "lag",
    type=click.Choice([m.value for m in LagMode]),
    default=LagMode.CHECKPOINTS.value,
    show_default=True,
    help="What counts as lag: what the replica's KCL checkpoints have not reached; none "
    "(the replica should equal the primary now); any (every older or missing item, and "
    "every extra item the primary deleted).",
)
@click.option(
    "--recheck-delay",
    "recheck_delay_s",
    type=click.FloatRange(0, 300),
    default=2.0,
    show_default=True,
    help="Seconds to wait before reading suspect items again.",
)
@click.option(
    "--max-findings",
    type=click.IntRange(0, 100_000),
    default=100,
    show_default=True,
    help="Differences listed (all are counted).",
)
@click.option("--seed", type=int, help="Seed of --sample's random choice (to repeat a run).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout, for monitors.")
def verify(
    topology_path: Path,
    replica: str,
    tables: str | None,
    segments: int,
    sample: float,
    repair: bool,
    lag: str,
    recheck_delay_s: float,
    max_findings: int,
    seed: int | None,
    as_json: bool,
) -> None:
    """Compare REPLICA's tables with the primary's, telling lag from errors.

    Example: lazyrep verify --topology topology.toml --replica eu --segments 8
    """
    with cli_errors("verify"):
        topology = load_topology(topology_path)
        pair = resolve(topology, replica, parse_table_list(tables))
        config = VerifyConfig(
            segments=segments,
            sample=sample,
            repair=repair,
            lag=LagMode(lag),
            recheck_delay_s=recheck_delay_s,
            max_findings=max_findings,
            seed=seed,
        )
        clients = make_clients(pair, pool=segments + 4)
        report = Verifier(pair, clients, config).run()
    if as_json:
        click.echo(json.dumps(report_json(report), indent=2))
    else:
        print_report(report, Console(soft_wrap=False))
    sys.exit(report.exit_status)
