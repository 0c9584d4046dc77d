"""The demo's final report: the figures, the verdict, and how to show them (rich or JSON).

`DemoReport.ok` is the demo's exit status: every record was finished by every consumer,
every replica verifies with no difference, the primary equals the reference model,
every rogue record was parked by every consumer with its reason, and no process is left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table

from lazyrep.demo_primary import PrimaryFigures
from lazyrep.verify import VerifyReport
from lazyrep.verify_compare import Kind

PRIMARY_CONSUMER = "lambda:primary"


class LetterCount(NamedTuple):
    """Letters in the dead-letter queue from one consumer, for one reason and record."""

    consumer: str
    reason: str
    partition_key: str
    letters: int
    detail: str


class TableCheck(NamedTuple):
    """A primary table against the reference model."""

    items: int
    expected: int
    equal: bool
    missing: int
    extra: int
    different: int


@dataclass(frozen=True, slots=True)
class PrimaryReport:
    """The primary path's totals."""

    done: int = 0
    applied: int = 0
    parked: int = 0
    parked_reasons: dict[str, int] = field(default_factory=dict)
    invocations: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    peak_wcu: float = 0.0
    total_wcu: float = 0.0

    @classmethod
    def from_figures(cls, figures: PrimaryFigures) -> PrimaryReport:
        """The last figures of the run."""
        return cls(
            done=figures.done,
            applied=figures.done - figures.parked,
            parked=figures.parked,
            parked_reasons=dict(figures.parked_reasons),
            invocations=figures.invocations,
            latency_p50_ms=figures.latency_p50_ms,
            latency_p99_ms=figures.latency_p99_ms,
            peak_wcu=figures.peak_wcu,
            total_wcu=figures.total_wcu,
        )


@dataclass(frozen=True, slots=True)
class ReplicaReport:
    """One replica's totals (from its status table) and its pacing."""

    name: str
    region: str
    max_wcu: float
    deadline_s: float
    done: int
    applied: int
    parked: int
    peak_wcu: float  # the highest one-second window of what its pacers spent
    peak_rate_wcu: float  # the highest rate its pacers were set to, summed over shards
    max_lag_s: float
    done_s: float | None  # since the first write
    verdicts: list[str]


@dataclass(frozen=True, slots=True)
class VerifySummary:
    """`lazyrep verify` of one replica: counts by class, per table."""

    ok: bool
    lag: str  # what could count as lag: none, or the replica's checkpoints
    remaining_errors: int
    elapsed_s: float
    tables: dict[str, dict[str, int]]
    findings: list[str]


def verify_summary(report: VerifyReport, elapsed_s: float) -> VerifySummary:
    """The counts a person reads: in sync, and each difference class (lag or error)."""
    tables: dict[str, dict[str, int]] = {}
    for table in report.tables:
        counts = {"checked": table.checked, "in_sync": table.counts.get(Kind.IN_SYNC, 0)}
        for kind, n in table.lag.items():
            counts[f"{kind.value} (lag)"] = n
        for kind, n in table.errors.items():
            counts[kind.value] = n
        tables[f"{table.table} -> {table.replica_table}"] = counts
    findings = [
        f"{f.table} {f.key}: {f.verdict.kind.value} ({f.verdict.reason})"
        for table in report.tables
        for f in table.findings[:5]
    ]
    return VerifySummary(
        report.exit_status == 0,
        report.config.lag.value,
        report.remaining_errors,
        elapsed_s,
        tables,
        findings,
    )


@dataclass
class DemoReport:
    """Everything the demo measured and checked."""

    actions_target: int
    replicas_expected: list[str]
    workload: Counter[tuple[str, str]] = field(default_factory=Counter)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    rogue: list[tuple[str, str, str]] = field(default_factory=list)  # what, reason, key
    produced: int = 0
    records: int = 0
    setup_s: float = 0.0
    produced_s: float = 0.0
    primary_done_s: float = 0.0
    total_s: float = 0.0
    primary: PrimaryReport = field(default_factory=PrimaryReport)
    replicas: dict[str, ReplicaReport] = field(default_factory=dict)
    replica_done_s: dict[str, float] = field(default_factory=dict)
    peak_rates: dict[str, float] = field(default_factory=dict)
    max_lags: dict[str, float] = field(default_factory=dict)
    verify: dict[str, VerifySummary] = field(default_factory=dict)
    primary_tables: dict[str, TableCheck] = field(default_factory=dict)
    dead_letters: list[LetterCount] = field(default_factory=list)
    worker_exits: dict[str, int | None] = field(default_factory=dict)
    worker_stop_s: dict[str, float] = field(default_factory=dict)
    process_groups: list[int] = field(default_factory=list)  # the replica workers' groups
    stack_groups: list[int] = field(default_factory=list)  # the emulators' groups
    processes_left: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log_dir: str | None = None

    def consumers(self) -> list[str]:
        """Who must have parked every rogue record."""
        return [PRIMARY_CONSUMER, *(f"kcl:{name}" for name in self.replicas_expected)]

    def unparked(self) -> list[str]:
        """Rogue records some consumer did not park with the expected reason."""
        parked = {(c.consumer, c.reason, c.partition_key) for c in self.dead_letters}
        return [
            f"{consumer}: {what} ({reason})"
            for consumer in self.consumers()
            for what, reason, key in self.rogue
            if (consumer, reason, key) not in parked
        ]

    def problems(self) -> list[str]:
        """Why the demo failed (empty when it passed)."""
        found = list(self.errors)
        if self.primary.done != self.records:
            found.append(f"primary finished {self.primary.done} of {self.records} records")
        if self.primary.parked != len(self.rogue):
            found.append(f"primary parked {self.primary.parked}, expected {len(self.rogue)}")
        for name in self.replicas_expected:
            replica = self.replicas.get(name)
            # Not its counts: a shard's status counts restart when a worker takes its lease
            # (again), and what was parked is checked in the dead-letter queue below.
            if replica is None or replica.done_s is None:
                found.append(f"replica {name} did not reach the end of the stream")
            summary = self.verify.get(name)
            if summary is None or not summary.ok:
                found.append(f"replica {name} does not verify")
        for table, check in self.primary_tables.items():
            if not check.equal:
                found.append(f"primary table {table} differs from the reference model")
        if not self.primary_tables:
            found.append("the primary was not compared with the reference model")
        found += [f"not parked: {what}" for what in self.unparked()]
        unexpected = [
            c for c in self.dead_letters if (c.reason, c.partition_key) not in self._rogue_keys()
        ]
        found += [f"unexpected dead letter: {c.consumer} {c.reason} {c.detail}" for c in unexpected]
        for name, code in self.worker_exits.items():
            if code != 0:
                found.append(f"replica worker {name} stopped with exit code {code}")
        if self.processes_left:
            found.append(f"process groups left running: {self.processes_left}")
        return found

    def _rogue_keys(self) -> set[tuple[str, str]]:
        return {(reason, key) for _, reason, key in self.rogue}

    @property
    def ok(self) -> bool:
        """Exit 0 only when nothing is wrong."""
        return not self.problems()

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON document (stable keys, for tests and monitors)."""
        return {
            "ok": self.ok,
            "problems": self.problems(),
            "actions_target": self.actions_target,
            "produced": self.produced,
            "rogue_records": len(self.rogue),
            "records": self.records,
            "workload": {f"{t} {a}": n for (t, a), n in sorted(self.workload.items())},
            "refused_by_sdk": [{"what": w, "reason": r} for w, r, _ in self.refused],
            "rogue": [{"what": w, "reason": r, "partition_key": k} for w, r, k in self.rogue],
            "seconds": {
                "setup": round(self.setup_s, 1),
                "producing": round(self.produced_s, 1),
                "primary_done": round(self.primary_done_s, 1),
                "replicas_done": {k: round(v, 1) for k, v in self.replica_done_s.items()},
                "worker_stop": {k: round(v, 1) for k, v in self.worker_stop_s.items()},
                "total": round(self.total_s, 1),
            },
            "primary": asdict(self.primary),
            "replicas": {name: asdict(r) for name, r in self.replicas.items()},
            "verify": {name: asdict(v) for name, v in self.verify.items()},
            "primary_vs_reference": {t: c._asdict() for t, c in self.primary_tables.items()},
            "dead_letters": [c._asdict() for c in self.dead_letters],
            "worker_exits": self.worker_exits,
            "process_groups": self.process_groups,
            "stack_groups": self.stack_groups,
            "processes_left": self.processes_left,
            "log_dir": self.log_dir,
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def print_report(console: Console, report: DemoReport) -> None:
    """The final report for people."""
    refused = Table(title="refused by the SDK before sending (never reached the stream)")
    for column in ("invalid action", "reason"):
        refused.add_column(column)
    for what, reason, _ in report.refused:
        refused.add_row(what, reason)
    console.print(refused)

    totals = Table(title="actions", show_header=False)
    totals.add_column("figure")
    totals.add_column("value", justify="right")
    totals.add_row("produced with the SDKs", f"{report.produced:,}")
    totals.add_row("rogue records (raw boto3)", str(len(report.rogue)))
    totals.add_row("records in the stream", f"{report.records:,}")
    totals.add_row(
        "workload", ", ".join(f"{t} {a} {n:,}" for (t, a), n in sorted(report.workload.items()))
    )
    totals.add_row("setup / producing", f"{report.setup_s:.0f} s / {report.produced_s:.0f} s")
    totals.add_row("whole demo", f"{report.total_s:.0f} s")

    p = report.primary
    totals.add_row(
        "primary latency (arrival to applied)",
        f"p50 {_ms(p.latency_p50_ms)}, p99 {_ms(p.latency_p99_ms)}",
    )
    console.print(totals)

    consumers = Table(
        title="consumers (applied: includes writes whose condition was false; a replica "
        "counts from each shard's last lease take-over)"
    )
    for column in ("consumer", "applied", "parked", "peak WCU/s", "max lag", "done after"):
        consumers.add_column(column, justify="right")
    consumers.add_row(
        "primary (Lambda)",
        f"{p.applied:,}",
        str(p.parked),
        f"{p.peak_wcu:,.0f}",
        "-",
        f"{report.primary_done_s:.0f} s",
    )
    for r in report.replicas.values():
        share = f" ({r.peak_wcu / p.peak_wcu:.0%})" if p.peak_wcu else ""
        consumers.add_row(
            f"{r.name} ({r.region})",
            f"{r.applied:,}",
            str(r.parked),
            f"{r.peak_wcu:,.0f}{share}",
            f"{r.max_lag_s:.0f} s",
            "-" if r.done_s is None else f"{r.done_s:.0f} s",
        )
    console.print(consumers)
    for r in report.replicas.values():
        console.print(
            f"  {r.name}: max_wcu {r.max_wcu:g}, pacers' peak rate {r.peak_rate_wcu:,.0f} WCU/s, "
            f"deadline {r.deadline_s:.0f} s, pacer verdicts: {', '.join(r.verdicts) or '-'}"
        )

    letters = Table(title="dead-letter queue: letters by reason and consumer")
    for column in ("reason", "record", "parked by", "detail"):
        letters.add_column(column)
    by_record: dict[tuple[str, str], list[LetterCount]] = {}
    for c in report.dead_letters:
        by_record.setdefault((c.reason, c.partition_key), []).append(c)
    for (reason, key), found in sorted(by_record.items()):
        parked_by = ", ".join(
            f"{c.consumer}" + (f" x{c.letters}" if c.letters > 1 else "") for c in found
        )
        letters.add_row(reason, key, parked_by, found[0].detail[:40])
    console.print(letters)

    diffs = Table(title="verify: each replica against the primary, differences by class")
    for column in ("replica", "table", "classes"):
        diffs.add_column(column)
    for name, summary in report.verify.items():
        label = f"{name} (lag: {summary.lag})"
        for table, counts in summary.tables.items():
            diffs.add_row(label, table, ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        for finding in summary.findings:
            diffs.add_row(label, "", f"[red]{finding[:160]}[/]")
    console.print(diffs)

    primary = Table(title="primary tables against the reference model")
    for column in ("table", "items", "expected", "equal"):
        primary.add_column(column)
    for table, check in report.primary_tables.items():
        primary.add_row(
            table,
            f"{check.items:,}",
            f"{check.expected:,}",
            "[green]yes[/]"
            if check.equal
            else f"[red]NO[/] ({check.missing} missing, {check.extra} extra, "
            f"{check.different} different)",
        )
    console.print(primary)

    problems = report.problems()
    if problems:
        console.print("[red]FAILED[/]:")
        for problem in problems:
            console.print(f"  - {problem}")
        if report.log_dir:
            console.print(f"logs kept in {report.log_dir}")
    else:
        console.print(
            "[green]OK[/]: every record applied or parked by every consumer, replicas verify "
            "with no difference, the primary equals the reference model, no process left"
        )
