"""What `lazyrep bench reliability` does, kept out of the click module (cli_bench.py)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from types import FrameType

import click
from rich.console import Console
from rich.table import Table

from lazyrep.embedded import embedded_stack
from lazyrep.reliability.catalog import scenarios
from lazyrep.reliability.framework import Result, Scale, run_scenarios

COLUMNS = ("produced", "applied", "parked", "lost", "duplicated", "diverged", "seconds")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(*, as_json: bool, names: list[str], factor: float, list_only: bool) -> None:
    """Run the scenarios (all by default) and print their figures; exit 1 if any failed.

    Raises:
        click.UsageError: an unknown scenario name.
    """
    catalog = scenarios()
    if list_only:
        for name, scenario in catalog.items():
            click.echo(f"{name}\t{scenario.family}\t{scenario.description}")
        return
    chosen = names or list(catalog)
    unknown = [n for n in chosen if n not in catalog]
    if unknown:
        raise click.UsageError(
            f"unknown scenario {unknown[0]!r} (known: {', '.join(catalog)})", None
        )
    # Library warnings (parked records, retried batches) are the point of the run, not news.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    err = Console(stderr=True)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the workers, proxies and
    # emulators a scenario started are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, _interrupt)

    def each(result: Result) -> None:
        if as_json:
            click.echo(json.dumps(result.to_json(), default=str))
        else:
            verdict = "ok" if result.ok else "FAILED: " + "; ".join(result.failures)
            err.print(f"{result.scenario}: {verdict}")

    with embedded_stack(use_aws=False), err.status("reliability suite") as status:
        summary = run_scenarios(
            catalog,
            chosen,
            Scale(factor),
            progress=lambda message: status.update(f"reliability: {message}"),
            each=each,
        )
    if as_json:
        click.echo(json.dumps(summary.to_json(), default=str))
    else:
        table = Table(title=f"reliability suite (scale {factor:g})")
        table.add_column("scenario")
        for column in (*COLUMNS, "ok"):
            table.add_column(column, justify="right")
        for result in summary.results:
            doc = result.to_json()
            table.add_row(result.scenario, *(str(doc[c]) for c in COLUMNS), str(result.ok))
        Console().print(table)
    if not summary.ok:
        raise SystemExit(1)
