"""`lazyrep verify`: compare a replica with its primary, telling lag from errors.

Order of reads, so that lag is never mistaken for an error:
1. the replica's progress (its KCL checkpoints: lazyrep/verify_progress.py);
2. the replica's items (a parallel segmented scan);
3. the primary's items (the same), compared key by key as they arrive.
Whatever the replica held was applied before the primary was read, so a primary
that is ahead is normal and a replica that is ahead is suspect; and a checkpoint
read first can only understate the replica's progress, which errs towards "lag".
Scans are eventually consistent (half the read capacity). Every key that looks
like an error is read again after `recheck_delay_s`, consistently and in the same
order (progress, replica, primary, the primary's tombstone), which settles writes
that were in flight during the scans; only what is still an error is reported,
and with `repair` rewritten (lazyrep/verify_repair.py), then read once more.

`sample` < 1 scans a random subset of many small segments of each table and looks
the keys found up on the other side (BatchGetItem, consistent).

Memory: the replica's keys, versions and 16-byte digests, about 200 bytes per item.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from binlog.applier import TOMBSTONE_KEY
from binlog.partition import canonical_key
from lazyrep.verify_compare import (
    DIFFERENCES,
    Kind,
    Observation,
    Verdict,
    classify,
    key_from_canonical,
    observe,
)
from lazyrep.verify_progress import LagMode, ReplicaProgress, fixed_progress, read_progress
from lazyrep.verify_repair import Repairer, RepairOutcome, Tombstone
from lazyrep.verify_target import (
    MAX_SEGMENTS,
    Clients,
    ReplicaPair,
    TablePair,
    batch_get,
    check_table,
    check_tombstone_table,
    parallel_scan,
)

logger = logging.getLogger(__name__)

_RECHECK_BATCH = 100
_MIN_SAMPLE_SEGMENTS_PER_UNIT = 20  # sampling granularity: at least 20 segments per sampled one


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    """How to verify. segments: parallel scan workers (1-1000); sample: fraction of keys
    (0 < sample <= 1); lag: what may count as lag; recheck_delay_s: wait before reading
    suspects again (0-300); max_findings: errors listed in the report (0-100000)."""

    segments: int = 4
    sample: float = 1.0
    repair: bool = False
    lag: LagMode = LagMode.CHECKPOINTS
    recheck_delay_s: float = 2.0
    max_findings: int = 100
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.segments <= MAX_SEGMENTS:
            raise ValueError(f"VerifyConfig.segments must be between 1 and {MAX_SEGMENTS}")
        if not 0 < self.sample <= 1:
            raise ValueError("VerifyConfig.sample must be a fraction above 0, at most 1")
        if not 0 <= self.recheck_delay_s <= 300:
            raise ValueError("VerifyConfig.recheck_delay_s must be between 0 and 300")
        if not 0 <= self.max_findings <= 100_000:
            raise ValueError("VerifyConfig.max_findings must be between 0 and 100000")


@dataclass(frozen=True, slots=True)
class Finding:
    """One key that lag cannot explain, with what the repair did to it."""

    table: str
    replica_table: str
    key: dict[str, Any]
    verdict: Verdict
    primary_version: bytes | None
    replica_version: bytes | None
    tombstone_version: bytes | None = None
    repair: RepairOutcome | None = None
    repair_detail: str = ""
    after_repair: Verdict | None = None

    @property
    def remaining(self) -> bool:
        """Still an error after the repair (or not repaired at all)."""
        final = self.after_repair if self.repair is not None else self.verdict
        return final is not None and final.is_error


@dataclass(slots=True)
class TableReport:
    """One table's comparison."""

    table: str
    replica_table: str
    primary_scanned: int = 0
    replica_scanned: int = 0
    counts: Counter[Kind] = field(default_factory=Counter)
    lag: Counter[Kind] = field(default_factory=Counter)
    errors: Counter[Kind] = field(default_factory=Counter)
    repairs: Counter[RepairOutcome] = field(default_factory=Counter)
    remaining_errors: int = 0
    findings: list[Finding] = field(default_factory=list)
    unlisted: int = 0  # errors found beyond max_findings (counted, not listed)

    @property
    def checked(self) -> int:
        """Keys compared."""
        return sum(self.counts.values())


@dataclass(slots=True)
class VerifyReport:
    """The whole run: per table, and what the replica's progress was."""

    replica: str
    primary_region: str
    replica_region: str
    config: VerifyConfig
    progress: ReplicaProgress
    started_at: datetime
    tables: list[TableReport] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def remaining_errors(self) -> int:
        """Differences lag cannot explain, after any repair."""
        return sum(t.remaining_errors for t in self.tables)

    @property
    def exit_status(self) -> int:
        """0: in sync or lagging; 1: something lag cannot explain remains."""
        return 1 if self.remaining_errors else 0


@dataclass(slots=True)
class _TableRun:
    """The state of one table's comparison while it runs (scan threads share it)."""

    table: TablePair
    progress: ReplicaProgress
    report: TableReport
    replica: dict[bytes, Observation] = field(default_factory=dict)
    unmatched: list[tuple[bytes, Observation]] = field(default_factory=list)
    suspects: list[bytes] = field(default_factory=list)  # keys that look like errors
    lock: threading.Lock = field(default_factory=threading.Lock)


class Verifier:
    """Runs one verification of `pair` (see the module docstring)."""

    def __init__(
        self,
        pair: ReplicaPair,
        clients: Clients,
        config: VerifyConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pair = pair
        self.clients = clients
        self.config = config
        self._sleep = sleep
        names = pair.topology.applier
        self._version_attribute = names.version_attribute
        self._id_attribute = names.id_attribute
        self._tombstones = names.tombstone_table
        self._random = random.Random(config.seed)  # sampling, not security

    def check(self) -> None:
        """Every table exists on both sides with its key, and the tombstone tables too.

        Raises:
            TargetError: naming the table and the region.
        """
        primary_region, replica_region = self.pair.primary_region, self.pair.replica.region
        for table in self.pair.tables:
            check_table(
                self.clients.primary, table.primary, table.schema, primary_region, "primary"
            )
            check_table(
                self.clients.replica, table.replica, table.schema, replica_region, "replica"
            )
        check_tombstone_table(self.clients.primary, self._tombstones, primary_region, "primary")
        if self.config.repair:
            check_tombstone_table(self.clients.replica, self._tombstones, replica_region, "replica")

    def progress(self) -> ReplicaProgress:
        """The replica's progress as `config.lag` asks."""
        if self.config.lag is LagMode.CHECKPOINTS:
            return read_progress(
                self.clients.replica,
                self.clients.kinesis,
                self.pair.replica.application_name,
                self.pair.topology.stream.name,
            )
        return fixed_progress(self.config.lag)

    def run(self) -> VerifyReport:
        """Check, then compare every table; repair if configured."""
        started = time.monotonic()
        self.check()
        report = VerifyReport(
            self.pair.replica.name,
            self.pair.primary_region,
            self.pair.replica.region,
            self.config,
            self.progress(),
            datetime.now(UTC),
        )
        repairer = (
            Repairer(self.clients.replica, self.pair.topology, self.pair.replica)
            if self.config.repair
            else None
        )
        try:
            for table in self.pair.tables:
                report.tables.append(self._table(table, report.progress, repairer))
        finally:
            if repairer is not None:
                repairer.close()
        report.elapsed_s = time.monotonic() - started
        return report

    # -- one table ------------------------------------------------------------------------

    def _segments(self) -> tuple[list[int], int]:
        """Which segments to scan, out of how many."""
        if self.config.sample >= 1:
            return list(range(self.config.segments)), self.config.segments
        per_unit = max(_MIN_SAMPLE_SEGMENTS_PER_UNIT, math.ceil(1 / self.config.sample))
        total = min(1_000_000, self.config.segments * per_unit)
        chosen = max(1, round(total * self.config.sample))
        return sorted(self._random.sample(range(total), chosen)), total

    def _table(
        self, table: TablePair, progress: ReplicaProgress, repairer: Repairer | None
    ) -> TableReport:
        run = _TableRun(table, progress, TableReport(table.primary, table.replica))
        sampled = self.config.sample < 1
        # 2. The replica, first; 3. the primary, compared as it arrives.
        replica_segments, total = self._segments()
        for pages in self._scan(
            self.clients.replica, table, table.replica, replica_segments, total
        ):
            for observed in pages:
                run.replica.update(observed)
        run.report.replica_scanned = len(run.replica)
        primary_segments = self._segments()[0] if sampled else replica_segments

        def compare(page: list[dict[str, Any]]) -> int:
            for key, primary in self._observe_page(table, page).items():
                with run.lock:
                    other = run.replica.pop(key, None)
                if other is None and sampled:
                    with run.lock:
                        run.unmatched.append((key, primary))
                else:
                    self._count(run, key, primary, other, None)
            return len(page)

        scanned = parallel_scan(
            self.clients.primary,
            table.primary,
            primary_segments,
            total,
            compare,
            consistent=False,
            workers=self.config.segments,
        )
        run.report.primary_scanned = sum(sum(pages) for pages in scanned)
        if sampled:
            self._look_up_sampled(run)
        self._judge_replica_only(run)
        # 4. Suspects: read again, consistently, in the same order; repair what remains.
        if run.suspects:
            self._recheck(table, run.report, run.suspects, repairer)
        run.report.remaining_errors += sum(1 for f in run.report.findings if f.remaining)
        return run.report

    def _observe_page(
        self, table: TablePair, page: list[dict[str, Any]]
    ) -> dict[bytes, Observation]:
        return {
            canonical_key(table.schema, item): observe(
                item, self._version_attribute, self._id_attribute
            )
            for item in page
        }

    def _scan(
        self, client: Any, table: TablePair, name: str, segments: list[int], total: int
    ) -> list[list[dict[bytes, Observation]]]:
        return parallel_scan(
            client,
            name,
            segments,
            total,
            lambda page: self._observe_page(table, page),
            consistent=False,
            workers=self.config.segments,
        )

    def _look_up_sampled(self, run: _TableRun) -> None:
        """Sampled keys seen on one side only: look them up on the other."""
        table = run.table
        if run.unmatched:
            keys = [k for k, _ in run.unmatched]
            found = self._get(self.clients.replica, table.replica, table.schema, keys)
            for key, primary in run.unmatched:
                self._count(run, key, primary, self._observe(found.get(key)), None)
        if run.replica:
            keys = list(run.replica)
            found = self._get(self.clients.primary, table.primary, table.schema, keys)
            for key in keys:
                primary_obs = self._observe(found.get(key))
                if primary_obs is not None:
                    self._count(run, key, primary_obs, run.replica.pop(key), None)

    def _judge_replica_only(self, run: _TableRun) -> None:
        """On the replica only: the primary's tombstones say whether a delete explains them."""
        if not run.replica:
            return
        tombstones = self._tombstones_of(run.table, list(run.replica))
        for key, other in run.replica.items():
            tomb = tombstones.get(key)
            self._count(run, key, None, other, tomb.version if tomb else None)
        run.replica.clear()

    def _count(
        self,
        run: _TableRun,
        key: bytes,
        primary: Observation | None,
        replica: Observation | None,
        tombstone: bytes | None,
    ) -> None:
        verdict = classify(primary, replica, tombstone, run.progress.applied)
        if verdict is None:
            return
        with run.lock:
            if verdict.is_error:
                run.suspects.append(key)
            else:
                _add(run.report, verdict.kind, verdict.lag, 1)

    def _recheck(
        self,
        table: TablePair,
        report: TableReport,
        suspects: Sequence[bytes],
        repairer: Repairer | None,
    ) -> None:
        if self.config.recheck_delay_s:
            self._sleep(self.config.recheck_delay_s)
        progress = self.progress()
        schema = table.schema
        for start in range(0, len(suspects), _RECHECK_BATCH):
            keys = list(suspects[start : start + _RECHECK_BATCH])
            replica_items = self._get(self.clients.replica, table.replica, schema, keys)
            primary_items = self._get(self.clients.primary, table.primary, schema, keys)
            absent = [k for k in keys if k not in primary_items]
            tombstones = self._tombstones_of(table, absent) if absent else {}
            for key in keys:
                primary_item, replica_item = primary_items.get(key), replica_items.get(key)
                primary = self._observe(primary_item)
                replica = self._observe(replica_item)
                tomb = tombstones.get(key)
                verdict = classify(
                    primary, replica, tomb.version if tomb else None, progress.applied
                )
                if verdict is None:  # gone from both sides meanwhile: consistent
                    _add(report, Kind.IN_SYNC, False, 1)
                    continue
                _add(report, verdict.kind, verdict.lag, 1)
                if not verdict.is_error:
                    continue
                finding = Finding(
                    table.primary,
                    table.replica,
                    key_from_canonical(schema, key),
                    verdict,
                    primary.version if primary else None,
                    replica.version if replica else None,
                    tomb.version if tomb else None,
                )
                if repairer is not None:
                    result = repairer.repair(
                        table.primary, finding.key, verdict, primary_item, replica_item, tomb
                    )
                    report.repairs[result.outcome] += 1
                    finding = replace(finding, repair=result.outcome, repair_detail=result.detail)
                    after = self._judge_again(table, key, progress)
                    finding = replace(finding, after_repair=after)
                self._keep(report, finding)

    def _judge_again(
        self, table: TablePair, key: bytes, progress: ReplicaProgress
    ) -> Verdict | None:
        """One key read again after its repair (replica, then primary, then tombstone)."""
        schema = table.schema
        replica = self._observe(
            self._get(self.clients.replica, table.replica, schema, [key]).get(key)
        )
        primary = self._observe(
            self._get(self.clients.primary, table.primary, schema, [key]).get(key)
        )
        tomb = self._tombstones_of(table, [key]).get(key) if primary is None else None
        return classify(primary, replica, tomb.version if tomb else None, progress.applied)

    def _keep(self, report: TableReport, finding: Finding) -> None:
        if len(report.findings) < self.config.max_findings:
            report.findings.append(finding)
            return
        report.unlisted += 1
        if finding.remaining:
            report.remaining_errors += 1  # counted, not listed

    def _observe(self, item: Mapping[str, Any] | None) -> Observation | None:
        if item is None:
            return None
        return observe(item, self._version_attribute, self._id_attribute)

    def _get(
        self, client: Any, table: str, schema: Any, keys: Iterable[bytes]
    ) -> dict[bytes, dict[str, Any]]:
        """Items by canonical key (BatchGetItem, consistent); absent keys are left out."""
        requested = [key_from_canonical(schema, key) for key in keys]
        return {canonical_key(schema, item): item for item in batch_get(client, table, requested)}

    def _tombstones_of(self, table: TablePair, keys: Sequence[bytes]) -> dict[bytes, Tombstone]:
        """The primary's tombstones of these keys (written by the primary's applier)."""
        prefix = table.primary.encode() + b"\n"  # binlog.applier.Applier.item_identity
        requested = [{TOMBSTONE_KEY: {"B": prefix + key}} for key in keys]
        found: dict[bytes, Tombstone] = {}
        for item in batch_get(self.clients.primary, self._tombstones, requested):
            version = item.get(self._version_attribute, {}).get("B")
            if version is None:
                continue
            key = bytes(item[TOMBSTONE_KEY]["B"])[len(prefix) :]
            found[key] = Tombstone(bytes(version), item.get(self._id_attribute, {}).get("S"))
        return found


def _add(report: TableReport, kind: Kind, lag: bool, n: int) -> None:
    report.counts[kind] += n
    if kind in DIFFERENCES:
        if lag:
            report.lag[kind] += n
        else:
            report.errors[kind] += n
