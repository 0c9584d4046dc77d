"""`lazyrep backfill`: copy a primary's tables to a new replica, print where its KCL starts.

Thin: options in, lazyrep.backfill does the work. stdout carries only the result
(the two properties lines, or `--json`), so it can be piped; progress and notes go
to stderr. Exit status: 0 done, 1 failed while copying, 2 usage or input errors
(docs/BACKFILL.md).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from binlog.topology import load_topology
from lazyrep.backfill import BackfillConfig, Backfiller, BackfillReport, StartPosition
from lazyrep.backfill import Progress as ProgressCallback
from lazyrep.backfill_properties import set_keys, write_keys
from lazyrep.errors_cli import CliError, cli_errors
from lazyrep.verify_target import MAX_SEGMENTS, make_clients, parse_table_list, resolve

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)", re.ASCII)
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """`900`, `900s`, `15m`, `1.5h` -> seconds.

    Raises:
        click.BadParameter: anything else.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 900s, 15m or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_json(report: BackfillReport, properties_file: Path | None) -> dict[str, Any]:
    """The backfill's result for automation (documented in docs/BACKFILL.md)."""
    return {
        "replica": report.replica,
        "application_name": report.application_name,
        "properties": report.position.properties(),
        "unset_properties": sorted(report.position.unset()),
        "start": _iso(report.position.start),
        "noted_at": report.position.noted_at.isoformat(),
        "copy_started_at": report.copy_started_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "start_expires_at": _iso(report.expires_at),
        "retention_hours": report.retention_hours,
        "rate_wcu": report.rate_wcu,
        "wcu": report.wcu,
        "copy_seconds": round(report.copy_seconds, 3),
        "tables": [
            {
                "table": t.table,
                "replica_table": t.replica_table,
                "scanned": t.scanned,
                "wcu": t.wcu,
                "outcomes": {k.value: n for k, n in sorted(t.outcomes.items())},
            }
            for t in report.tables
        ],
        "properties_file": str(properties_file) if properties_file else None,
        "notes": report.notes,
    }


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr, one line per table (approximate totals)."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    lock = threading.Lock()
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(table: str, n: int, approximate_total: int) -> None:
            with lock:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=approximate_total or None)
                task = tasks[table]
            bar.advance(task, n)

        yield advance


@click.command("backfill")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option("--replica", required=True, metavar="NAME", help="The replica target to fill.")
@click.option("--tables", metavar="A,B", help="Only these primary tables (default: all).")
@click.option(
    "--rate",
    "rate_wcu",
    type=click.FloatRange(0, 1_000_000, min_open=True),
    help="WCU per second the copy may spend on the replica (default: the replica's max_wcu).",
)
@click.option(
    "--segments",
    type=click.IntRange(1, MAX_SEGMENTS),
    default=8,
    show_default=True,
    help="Parallel scan segments of the primary (one writer thread each).",
)
@click.option(
    "--start-margin",
    "start_margin_s",
    default="15m",
    callback=lambda _ctx, _param, value: parse_duration(value),
    show_default=True,
    metavar="DURATION",
    help="How long before the copy the KCL starts: more than the primary Lambda's lag "
    "(its IteratorAge) plus clock skew. 900s, 15m, 1h.",
)
@click.option(
    "--write-properties",
    "properties_file",
    type=click.Path(dir_okay=False, exists=True, writable=True, path_type=Path),
    help="Set initialPositionInStreamExtended (AT_TIMESTAMP) in this KCL properties file "
    "and comment out initialPositionInStream, which must not be set beside it (every "
    "other line kept).",
)
@click.option(
    "--create-tables",
    is_flag=True,
    help="Create the replica's tables and tombstone table (on demand) if they are missing.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save progress in this file after every page; the same command resumes an "
    "interrupted copy from it (keeping the first run's start position).",
)
@click.option(
    "--page-items",
    type=click.IntRange(0, 100_000),
    default=0,
    help="Items per scan page, the unit --state saves (default: DynamoDB's 1 MB pages).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def backfill(
    topology_path: Path,
    replica: str,
    tables: str | None,
    rate_wcu: float | None,
    segments: int,
    start_margin_s: float,
    properties_file: Path | None,
    create_tables: bool,
    state_path: Path | None,
    page_items: int,
    as_json: bool,
    show_progress: bool | None,
) -> None:
    """Copy every primary item to REPLICA with its version, then print the KCL start.

    Example: lazyrep backfill --topology topology.toml --replica eu --rate 200
    --write-properties properties/eu.properties
    """
    hint = (
        f"run the same command to resume from {state_path}"
        if state_path
        else "running it again is safe (writes are guarded); add --state FILE to resume "
        "where a copy stops"
    )
    with cli_errors("backfill", resume_hint=hint):
        topology = load_topology(topology_path)
        pair = resolve(topology, replica, parse_table_list(tables))
        if properties_file is not None:
            _check_properties(properties_file)
        config = BackfillConfig(
            rate_wcu=rate_wcu or pair.replica.max_wcu,
            segments=segments,
            start_margin_s=start_margin_s,
            create_tables=create_tables,
            page_items=page_items,
        )
        clients = make_clients(pair, pool=segments + 4)
        enabled = sys.stderr.isatty() if show_progress is None else show_progress
        with _progress_bar(enabled) as progress:
            report = Backfiller(pair, clients, config, progress=progress).run(state_path)
        if properties_file is not None:
            when = _iso(report.finished_at or report.copy_started_at)
            write_keys(
                properties_file,
                report.position.properties(),
                header=f"Start position (AT_TIMESTAMP) set by `lazyrep backfill` on {when}",
                remove=report.position.unset(),
            )
    if as_json:
        click.echo(json.dumps(report_json(report, properties_file), indent=2))
    else:
        for key, value in report.position.properties().items():
            click.echo(f"{key} = {value}")
    _summary(report, properties_file)


def _check_properties(path: Path) -> None:
    """Refuse an unreadable or unparseable properties file before hours of copying."""
    try:
        set_keys(
            path.read_bytes().decode("latin-1"),
            StartPosition(datetime.now(UTC), 0).properties(),
            remove=StartPosition.unset(),
        )
    except (OSError, ValueError) as exc:
        raise CliError(f"--write-properties {path}: {exc}") from exc
    if not os.access(path.parent, os.W_OK):
        raise CliError(f"--write-properties {path}: its directory is not writable")


def _summary(report: BackfillReport, properties_file: Path | None) -> None:
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    for t in report.tables:
        outcomes = ", ".join(f"{n} {k.value}" for k, n in sorted(t.outcomes.items())) or "empty"
        name = t.table if t.table == t.replica_table else f"{t.table} -> {t.replica_table}"
        err.print(f"{name}: {t.scanned} items ({outcomes}), {t.wcu} WCU")
    rate = report.wcu / report.copy_seconds if report.copy_seconds > 0 else 0.0
    err.print(
        f"copied in {report.copy_seconds:.1f} s, {rate:.1f} WCU/s (limit {report.rate_wcu:g})"
    )
    for note in report.notes:
        err.print(f"[yellow]note[/yellow]: {note}")
    margin = (report.copy_started_at - report.position.start).total_seconds()
    err.print(
        f"start the KCL application {report.application_name} at AT_TIMESTAMP "
        f"{_iso(report.position.start)} ({margin:.0f} s before the copy began), and before "
        f"{_iso(report.expires_at)}, when the records after that start leave the stream"
    )
    unset = ", ".join(sorted(report.position.unset()))
    if properties_file is not None:
        err.print(f"wrote the start position into {properties_file} (and commented out {unset})")
    else:
        err.print(
            f"in the application's properties, set the line above and remove {unset}: the "
            "MultiLangDaemon refuses AT_TIMESTAMP there, and any other value could override "
            "the timestamp"
        )
