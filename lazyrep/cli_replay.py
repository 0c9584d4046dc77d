"""`lazyrep replay`: apply a range of the binlog stream to tables directly, not through the KCL.

Thin: options become a `ReplayRequest`, `lazyrep.replay.prepare` checks it against
the stream and the tables, the plan is printed, the runner runs with a progress bar
on stderr, and the summary is printed. Errors are one line (lazyrep/errors_cli.py):
exit 2 for input to change, 1 for a failure, 130 when interrupted (the resume
command is printed), 1 when records could not be applied (they are listed).
See docs/REPLAY.md.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from binlog.topology import load_topology
from lazyrep.errors_cli import EXIT_FAILURE, EXIT_INTERRUPTED, cli_errors, describe
from lazyrep.replay import prepare, start_kind
from lazyrep.replay_plan import (
    ReplayInputError,
    ReplayRequest,
    parse_table_map,
    parse_tables,
    parse_time,
)
from lazyrep.replay_report import plan_lines, summary_json, summary_lines
from lazyrep.replay_run import Snapshot
from lazyrep.replay_state import ReplayState, resume_command

# Options that define the replay: a resumed replay takes them from its state file.
_PLAN_OPTIONS = (
    "topology_path",
    "shard",
    "from_sequence",
    "after",
    "from_time",
    "from_start",
    "to_sequence",
    "to_time",
    "tables",
    "maps",
    "replica",
    "region",
    "target_region",
    "profile",
    "target_profile",
    "force",
    "dry_run",
    "state_path",
)


@click.command("replay")
@click.option(
    "--topology",
    "topology_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LAZYREP_TOPOLOGY",
    help="Topology TOML: the stream, its tables and key schemas, replica targets "
    "(env LAZYREP_TOPOLOGY).",
)
@click.option("--shard", help="Start in this shard (and its descendants): shardId-000000000001.")
@click.option(
    "--from-sequence", help="Start at this sequence number of --shard (AT_SEQUENCE_NUMBER)."
)
@click.option("--after", is_flag=True, help="Start after --from-sequence (AFTER_SEQUENCE_NUMBER).")
@click.option(
    "--from-time",
    help="Start at this arrival time in every shard (AT_TIMESTAMP): ISO 8601 (no zone: UTC), "
    "or a time ago: -90m, -2h, -1d.",
)
@click.option("--from-start", is_flag=True, help="Start at the oldest record (TRIM_HORIZON).")
@click.option("--to-sequence", help="Stop after this sequence number of --shard.")
@click.option(
    "--to-time", help="Stop after records that arrived by this time. Default: the tip at start."
)
@click.option(
    "--tables",
    multiple=True,
    help="Only these primary tables: a,b (default: every table of the topology).",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="PRIMARY=TARGET",
    help="Write PRIMARY's records to table TARGET (repeat, or a=x,b=y): a restore target.",
)
@click.option(
    "--replica",
    help="Replay into this replica target of the topology: its region and table names.",
)
@click.option("--region", help="The stream's region (default: stream.region of the topology).")
@click.option(
    "--target-region",
    help="The target tables' region (default: the replica's, else the stream's region).",
)
@click.option("--profile", help="AWS profile for the stream (and the target, by default).")
@click.option("--target-profile", help="AWS profile for the target tables (another account).")
@click.option(
    "--force",
    is_flag=True,
    help="For a fresh or wiped table: ignore tombstones this replay did not write "
    "(see docs/REPLAY.md). Items newer than a record are still never overwritten.",
)
@click.option("--rate", type=float, help="Spend at most this many WCU per second.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read and decode only: counts per table and action, and a sample. Writes nothing.",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Continue the replay recorded in this state file (everything but --rate comes from it).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to keep the state file (default: $LAZYREP_STATE_DIR/replay/...).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lazyrep"),
    envvar="LAZYREP_STATE_DIR",
    show_default=True,
    help="Directory for state files when --state is not given (env LAZYREP_STATE_DIR).",
)
@click.option(
    "--shard-workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Shards read at once (a child still waits for its parents).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
@click.option("--stop-after", type=click.IntRange(1), hidden=True)
@click.pass_context
def replay(ctx: click.Context, /, **options: Any) -> None:
    """Replay a range of the binlog stream into DynamoDB tables, idempotently.

    \b
    Start: --from-start | --from-time TIME | --shard ID --from-sequence N [--after]
    Stop:  the tip at start (default) | --to-time TIME | --to-sequence N (in --shard)

    Shards are read parents before children. Records already applied are skipped as
    stale, so replaying a range twice is harmless. The plan is printed first, the
    counts per table last; Ctrl-C stops after the current chunk and prints the
    command that resumes. Examples: docs/REPLAY.md.
    """
    with cli_errors():
        code = _replay(ctx, options)
    sys.exit(code)


def _replay(ctx: click.Context, options: dict[str, Any]) -> int:
    rate = options["rate"]
    if rate is not None and not 0.001 <= rate <= 1_000_000:
        raise ReplayInputError(f"--rate {rate:g}: give a rate from 0.001 to 1000000 WCU per second")
    resume: ReplayState | None = None
    if options["resume_path"] is not None:
        given = [
            name
            for name in _PLAN_OPTIONS
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        ]
        if given:
            names = ", ".join("--" + n.replace("_path", "").replace("_", "-") for n in given)
            raise ReplayInputError(
                f"--resume takes the replay from its state file: leave out {names} "
                "(only --rate, --shard-workers, --json and --progress may change)"
            )
        resume = ReplayState.load(options["resume_path"].resolve())
        if resume.finished:
            click.echo(f"lazyrep replay: {options['resume_path']} finished already; nothing to do")
            return 0
        request = resume.request
    else:
        request = _request(options)

    out = _Output(as_json=options["as_json"], progress=options["progress"])
    prepared = prepare(
        request,
        resume=resume,
        state_path=options["state_path"],
        state_dir=options["state_dir"],
        rate_wcu=rate,
        shard_workers=options["shard_workers"],
        on_progress=out.update,
        stop_after_records=options["stop_after"],
    )
    state_path = str(prepared.state.path) if prepared.state is not None else None
    for line in plan_lines(
        prepared.plan, rate_wcu=rate, state_path=state_path, resumed=resume is not None
    ):
        out.say(line)
    try:
        with out.logging(), out.live(), _sigterm_interrupts():
            report = prepared.runner.run()
    finally:
        prepared.close()
    for line in summary_lines(prepared.plan, report):
        out.say(line)
    if options["as_json"]:
        click.echo(json.dumps(summary_json(prepared.plan, report, state_path=state_path)))
    if report.status == "finished":
        if report.not_applied_total:
            click.echo(
                f"lazyrep: error: {report.not_applied_total} records were not applied (listed "
                f"above{' and in ' + state_path if state_path else ''})",
                err=True,
            )
            return EXIT_FAILURE
        return 0
    resume_line = resume_command(Path(state_path)) if state_path else None
    if report.status == "failed" and report.error is not None:
        known = describe(report.error)
        line, code = known or (f"unexpected {report.error!r}", EXIT_FAILURE)
        click.echo(f"lazyrep: error: {' '.join(line.split())}", err=True)
    else:
        code = EXIT_INTERRUPTED
        click.echo("lazyrep: replay interrupted", err=True)
    if resume_line:
        click.echo(f"lazyrep: resume with: {resume_line}", err=True)
    return code


def _request(options: dict[str, Any]) -> ReplayRequest:
    """The request from the command line, with a replica's region and names merged in."""
    topology_path: Path | None = options["topology_path"]
    if topology_path is None:
        raise ReplayInputError("--topology FILE is required (or LAZYREP_TOPOLOGY)")
    kind = start_kind(
        options["from_start"], options["from_time"], options["from_sequence"], options["after"]
    )
    mapping = parse_table_map(options["maps"])
    target_region = options["target_region"]
    if options["replica"]:
        topology = load_topology(topology_path)
        replica = topology.replicas.get(options["replica"])
        if replica is None:
            known = ", ".join(sorted(topology.replicas)) or "none"
            raise ReplayInputError(
                f"--replica {options['replica']!r}: not in the topology ({known})"
            )
        if target_region and target_region != replica.region:
            raise ReplayInputError(
                f"--target-region {target_region} contradicts --replica {replica.name} "
                f"(region {replica.region}); give one of them"
            )
        target_region = replica.region
        mapping = {**replica.tables, **mapping}
    return ReplayRequest(
        topology_path=str(topology_path.resolve()),
        start=kind,
        shard=options["shard"],
        from_sequence=options["from_sequence"],
        from_time=_time(options["from_time"], "--from-time"),
        to_sequence=options["to_sequence"],
        to_time=_time(options["to_time"], "--to-time"),
        tables=parse_tables(options["tables"]),
        table_map=tuple(sorted(mapping.items())),
        replica=options["replica"],
        region=options["region"],
        target_region=target_region,
        profile=options["profile"],
        target_profile=options["target_profile"],
        force=options["force"],
        dry_run=options["dry_run"],
    )


def _time(text: str | None, option: str) -> datetime | None:
    return None if text is None else parse_time(text, option=option)


class _Output:
    """Plan and summary on stdout (stderr with --json); progress bar and logs on stderr."""

    def __init__(self, *, as_json: bool, progress: bool | None) -> None:
        self._as_json = as_json
        self._console = Console(stderr=True)
        self._show = sys.stderr.isatty() if progress is None else progress
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def say(self, line: str) -> None:
        click.echo(line, err=self._as_json)

    @contextmanager
    def logging(self) -> Iterator[None]:
        """Warnings and errors on stderr (above the progress bar) while the replay runs."""
        handler: logging.Handler
        if self._show:
            handler = RichHandler(console=self._console, show_path=False)
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("lazyrep: %(levelname)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        root = logging.getLogger()
        previous = root.level
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(previous)

    @contextmanager
    def live(self) -> Iterator[None]:
        """The progress bar, if shown."""
        if not self._show:
            yield
            return
        self._progress = Progress(
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self._console,
        )
        self._task = self._progress.add_task("replay", total=None, stats="starting")
        with self._progress:
            yield
        self._progress = None

    def update(self, snapshot: Snapshot) -> None:
        if self._progress is None or self._task is None:
            return
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = snapshot.records_read / elapsed if elapsed > 0 else 0.0
        low = snapshot.low_water
        reached = f" up to {low.astimezone(UTC):%H:%M:%S}Z" if low else ""
        stats = (
            f"{snapshot.records_read} rec {rate:.0f}/s {snapshot.applied} applied "
            f"{snapshot.skipped} stale{reached}"
        )
        total = completed = None
        if snapshot.begin is not None and snapshot.end is not None:
            total = max(0.001, (snapshot.end - snapshot.begin).total_seconds())
            if snapshot.finished:
                completed = total
            elif snapshot.low_water is not None:
                completed = min(total, (snapshot.low_water - snapshot.begin).total_seconds())
        self._progress.update(self._task, total=total, completed=completed or 0, stats=stats)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the replay like Ctrl-C: current chunk finished, state saved, resume printed."""
    if os.name != "posix":
        yield
        return
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except ValueError:  # not the main thread (e.g. under a test runner's thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["replay"]
