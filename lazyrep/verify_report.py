"""`lazyrep verify`'s output: a rich table for people, a JSON document for monitors.

The JSON shape (stable; `VerifyJson` below) is documented in docs/VERIFY.md.
"""

from __future__ import annotations

import base64
from typing import Any, TypedDict

from rich.console import Console
from rich.table import Table

from lazyrep.verify import Finding, TableReport, VerifyReport
from lazyrep.verify_compare import Kind, Verdict, version_text
from lazyrep.verify_repair import RepairOutcome

_LAG_KINDS = (Kind.BEHIND, Kind.MISSING, Kind.EXTRA)
_ERROR_KINDS = (Kind.DIVERGED, Kind.MISSING, Kind.EXTRA, Kind.BEHIND)


class FindingJson(TypedDict):
    """One difference lag cannot explain."""

    table: str
    replica_table: str
    key: dict[str, Any]
    kind: str
    reason: str
    primary_version: str | None
    replica_version: str | None
    tombstone_version: str | None
    repair: str | None
    repair_detail: str
    after_repair: str | None


class TableJson(TypedDict):
    """One table's counts."""

    table: str
    replica_table: str
    primary_scanned: int
    replica_scanned: int
    checked: int
    in_sync: int
    lag: dict[str, int]
    errors: dict[str, int]
    repairs: dict[str, int]
    remaining_errors: int


class VerifyJson(TypedDict):
    """The whole report."""

    replica: str
    primary_region: str
    replica_region: str
    ok: bool
    exit_status: int
    remaining_errors: int
    lag_source: str
    lag_note: str
    checkpoints: dict[str, str]
    sample: float
    segments: int
    repair: bool
    started_at: str
    elapsed_s: float
    tables: list[TableJson]
    findings: list[FindingJson]
    findings_unlisted: int


def key_json(key: dict[str, Any]) -> dict[str, Any]:
    """A key in DynamoDB's JSON form, binary as base64 (as the record format has it)."""
    out: dict[str, Any] = {}
    for name, value in key.items():
        ((kind, inner),) = value.items()
        out[name] = {kind: base64.b64encode(inner).decode("ascii") if kind == "B" else inner}
    return out


def key_text(key: dict[str, Any]) -> str:
    """`customer_id=c1, order_no=7` for people."""
    parts = []
    for name, value in key.items():
        ((kind, inner),) = value.items()
        shown = base64.b64encode(inner).decode("ascii") if kind == "B" else str(inner)
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def _verdict_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "gone"
    if verdict.kind is Kind.IN_SYNC:
        return "in_sync"
    return f"{verdict.kind.value} (lag)" if verdict.lag else verdict.kind.value


def finding_json(finding: Finding) -> FindingJson:
    """One finding as JSON."""
    return FindingJson(
        table=finding.table,
        replica_table=finding.replica_table,
        key=key_json(finding.key),
        kind=finding.verdict.kind.value,
        reason=finding.verdict.reason,
        primary_version=version_text(finding.primary_version),
        replica_version=version_text(finding.replica_version),
        tombstone_version=version_text(finding.tombstone_version),
        repair=finding.repair.value if finding.repair else None,
        repair_detail=finding.repair_detail,
        after_repair=_verdict_text(finding.after_repair) if finding.repair else None,
    )


def table_json(table: TableReport) -> TableJson:
    """One table's counts as JSON."""
    return TableJson(
        table=table.table,
        replica_table=table.replica_table,
        primary_scanned=table.primary_scanned,
        replica_scanned=table.replica_scanned,
        checked=table.checked,
        in_sync=table.counts[Kind.IN_SYNC],
        lag={kind.value: table.lag[kind] for kind in _LAG_KINDS},
        errors={kind.value: table.errors[kind] for kind in _ERROR_KINDS},
        repairs={outcome.value: n for outcome, n in sorted(table.repairs.items())},
        remaining_errors=table.remaining_errors,
    )


def report_json(report: VerifyReport) -> VerifyJson:
    """The whole report as JSON."""
    return VerifyJson(
        replica=report.replica,
        primary_region=report.primary_region,
        replica_region=report.replica_region,
        ok=report.exit_status == 0,
        exit_status=report.exit_status,
        remaining_errors=report.remaining_errors,
        lag_source=report.progress.mode.value,
        lag_note=report.progress.note,
        checkpoints=report.progress.describe(),
        sample=report.config.sample,
        segments=report.config.segments,
        repair=report.config.repair,
        started_at=report.started_at.isoformat(),
        elapsed_s=round(report.elapsed_s, 3),
        tables=[table_json(t) for t in report.tables],
        findings=[finding_json(f) for t in report.tables for f in t.findings],
        findings_unlisted=sum(t.unlisted for t in report.tables),
    )


def print_report(report: VerifyReport, console: Console) -> None:
    """The tables and the verdict, for people."""
    sampled = f", sample {report.config.sample:g}" if report.config.sample < 1 else ""
    title = (
        f"replica {report.replica} ({report.replica_region}) against its primary "
        f"({report.primary_region}){sampled}"
    )
    summary = Table(title=title, title_justify="left")
    for column in ("table", "checked", "in sync", "lag", "diverged", "missing", "extra", "behind"):
        summary.add_column(column, justify="left" if column == "table" else "right")
    if report.config.repair:
        summary.add_column("repaired", justify="right")
    for t in report.tables:
        name = t.table if t.table == t.replica_table else f"{t.table} -> {t.replica_table}"
        lag = sum(t.lag.values())
        row = [
            name,
            str(t.checked),
            str(t.counts[Kind.IN_SYNC]),
            str(lag),
            *(_cell(t.errors[kind]) for kind in _ERROR_KINDS),
        ]
        if report.config.repair:
            row.append(str(t.repairs.get(RepairOutcome.REPAIRED, 0)))
        summary.add_row(*row)
    console.print(summary)
    findings = [f for t in report.tables for f in t.findings]
    if findings:
        listed = Table(title="differences lag cannot explain", title_justify="left")
        for column in ("table", "key", "kind", "why", "primary version", "replica version"):
            listed.add_column(column, overflow="fold")
        if report.config.repair:
            listed.add_column("repair", overflow="fold")
        for f in findings:
            row = [
                f.table,
                key_text(f.key),
                f.verdict.kind.value,
                f.verdict.reason,
                version_text(f.primary_version) or "-",
                version_text(f.replica_version) or "-",
            ]
            if report.config.repair:
                after = _verdict_text(f.after_repair)
                row.append(f"{f.repair.value if f.repair else '-'} -> {after}")
            listed.add_row(*row)
        console.print(listed)
        unlisted = sum(t.unlisted for t in report.tables)
        if unlisted > 0:
            console.print(f"... and {unlisted} more (raise --max-findings to list them)")
    if report.progress.note:
        console.print(f"note: {report.progress.note}")
    lagging = sum(sum(t.lag.values()) for t in report.tables)
    if report.exit_status == 0:
        tail = f"; {lagging} items lag behind (expected: they will converge)" if lagging else ""
        console.print(f"[green]OK[/green]: nothing lag cannot explain{tail}")
    else:
        tail = (
            " remain after the repair"
            if report.config.repair
            else " (--repair rewrites what it can from the primary)"
        )
        console.print(
            f"[red]NOT OK[/red]: {report.remaining_errors} differences lag cannot explain{tail}"
        )


def _cell(n: int) -> str:
    return f"[red]{n}[/red]" if n else "0"
