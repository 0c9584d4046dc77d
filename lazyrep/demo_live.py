"""The demo's live display: one table, redrawn once a second while the demo runs."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lazyrep.demo import LiveFigures


def _lag(ms: int | None) -> str:
    if ms is None:
        return "-"
    return "at the tip" if ms == 0 else f"{ms / 1000:,.1f} s"


def render(figures: LiveFigures) -> RenderableType:
    """Produced, the primary's progress and lag, each replica's progress, lag and pacer."""
    total = figures.expected_records
    table = Table(title=f"lazyrep demo: {figures.phase} ({figures.elapsed_s:,.0f} s)")
    for column, justify in (
        ("", "left"),
        ("records", "right"),
        ("progress", "left"),
        ("lag", "right"),
        ("WCU/s (pacer)", "right"),
        ("state", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_row(
        "produced (SDKs)",
        f"{figures.produced:,} / {figures.target:,}",
        ProgressBar(total=figures.target, completed=figures.produced, width=24),
        "",
        "",
        "",
    )
    primary = figures.primary
    table.add_row(
        f"primary {figures.topology.stream.region}",
        f"{primary.done:,}",
        ProgressBar(total=total, completed=primary.done, width=24),
        _lag(primary.lag_ms),
        "",
        f"parked {primary.parked}",
    )
    for name, target in figures.topology.replicas.items():
        replica = figures.replicas.get(name)
        if replica is None:
            table.add_row(f"{name} {target.region}", "-", "", "", "", "KCL starting")
            continue
        table.add_row(
            f"{name} {target.region}",
            f"{replica.done:,}",
            ProgressBar(total=total, completed=replica.done, width=24),
            _lag(replica.lag_ms),
            f"{replica.rate_wcu:,.0f} of {target.max_wcu:g}",
            f"{replica.shards} shards, parked {replica.parked}, {'/'.join(replica.verdicts)}",
        )
    note = Text(
        "replicas are paced: they spend write capacity to meet their deadline, not to keep up",
        style="dim",
    )
    return Group(table, note)
