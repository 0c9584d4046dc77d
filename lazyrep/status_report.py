"""`lazyrep status` for people: one rich table per replica target."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lazyrep.status import ShardStatus, StatusReport, Verdict

_STYLE: dict[Verdict, str] = {"ok": "green", "at risk": "yellow", "records will expire": "bold red"}


def duration(seconds: float | None) -> str:
    """`1h02m`, `3m05s`, `12.0s`, `-5m00s`; `-` for unknown."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m{int(s % 60):02d}s"
    return f"{sign}{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _checkpoint(row: ShardStatus) -> str:
    if row.checkpoint is None:
        return "none"
    if row.checkpoint.isdigit():
        short = row.checkpoint if len(row.checkpoint) <= 14 else "…" + row.checkpoint[-12:]
        return short
    return row.checkpoint


def _behind(row: ShardStatus) -> str:
    if row.caught_up:
        return "caught up"
    parts = []
    if row.millis_behind_latest is not None:
        parts.append(f"{duration(row.millis_behind_latest / 1000)} to tip")
    if row.latest_sequence:
        parts.append(f"end …{row.latest_sequence[-12:]}")
    return ", ".join(parts) or "behind"


def print_status(report: StatusReport, console: Console) -> None:
    """The header line, the primary's lag, then a table per replica."""
    lag = report.primary.iterator_age_ms
    console.print(
        f"stream [bold]{report.stream}[/] ({report.stream_region}), retention "
        f"{report.retention_hours:g} h, safety margin {report.safety_margin_hours:g} h, "
        f"at {report.generated_at}"
    )
    primary = duration(lag / 1000) if lag is not None else report.primary.source
    console.print(f"primary path: handler lag {primary}")
    for replica in report.replicas:
        verdict = replica.verdict
        table = Table(
            title=(
                f"replica {replica.name} ({replica.region}, application "
                f"{replica.application_name}, deadline {replica.deadline_hours:g} h, "
                f"max {replica.max_wcu:g} WCU): [{_STYLE[verdict]}]{verdict}[/]"
            ),
            title_justify="left",
        )
        for column in (
            "shard",
            "owner",
            "checkpoint",
            "behind",
            "oldest unapplied",
            "rate WCU",
            "drain",
            "to deadline",
            "to retention",
            "verdict",
        ):
            table.add_column(column, overflow="fold")
        for row in replica.shards:
            verdict_text = f"[{_STYLE[row.verdict]}]{row.verdict}[/]"
            if row.reasons:
                verdict_text += "\n" + "; ".join(row.reasons)
            table.add_row(
                row.shard_id + ("" if row.open else " (closed)"),
                row.lease_owner or "-",
                _checkpoint(row),
                _behind(row),
                duration(row.oldest_unapplied_age_s),
                "-" if row.pacer_rate_wcu is None else f"{row.pacer_rate_wcu:g}",
                duration(row.projected_drain_s),
                duration(row.margin_to_deadline_s),
                duration(row.margin_to_retention_s),
                verdict_text,
            )
        if not replica.lease_table_found:
            table.caption = (
                f"no lease table {replica.application_name}: its KCL application has not run"
            )
        console.print(table)
