"""`lazyrep backfill`: bootstrap a new replica from its primary, then hand over to the KCL.

1. Note the stream position first: the time now minus a safety margin. The
   replica's KCL application will start there (AT_TIMESTAMP), so every write that
   the copy might miss is replayed over it. Time, not sequence numbers: the KCL
   starts a new lease only at TRIM_HORIZON, LATEST or AT_TIMESTAMP, never at a
   sequence number, and one timestamp covers every shard. The margin covers the
   primary Lambda's lag (a record already in the stream but not yet applied to the
   primary when its item is copied must come after the start) and clock skew
   between this machine and Kinesis's arrival timestamps.
2. Copy every item of every table with its version and action id, through a
   parallel consistent scan of the primary, at a WCU rate, each write guarded so it
   never replaces a newer replica version (lazyrep/backfill_copy.py): running twice,
   or while the replica's KCL application already runs, is safe.
3. Report the start position (`initialPositionInStreamExtended = <epoch seconds>`,
   which alone makes the MultiLangDaemon start new leases AT_TIMESTAMP; its
   `initialPositionInStream` key must be absent), and refuse it if the copy took so
   long that records after the start have left the stream.

The replay from the start position overlaps the copy: records the copy already
holds are skipped as stale by the applier, later ones applied. Idempotence makes
the overlap harmless and the margin makes it necessary.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from binlog.awserrors import classify
from binlog.capacity import item_size, units_for_bytes
from binlog.errors import LazyRepError
from binlog.tables import create_table, create_tombstone_table
from lazyrep.backfill_copy import CopyOutcome, CopyTarget, copy_item
from lazyrep.backfill_rate import WcuBucket
from lazyrep.backfill_state import BackfillState
from lazyrep.verify_target import (
    MAX_SEGMENTS,
    Clients,
    ReplicaPair,
    TablePair,
    TargetError,
    check_table,
    check_tombstone_table,
    parallel_scan,
)

logger = logging.getLogger(__name__)

AT_TIMESTAMP = "AT_TIMESTAMP"
POSITION_KEY = "initialPositionInStream"
TIMESTAMP_KEY = "initialPositionInStreamExtended"
POSITION_KEY_REMOVED = (
    f"{POSITION_KEY} removed by `lazyrep backfill`: {TIMESTAMP_KEY} below starts new "
    f"leases at {AT_TIMESTAMP} (the daemon refuses {POSITION_KEY} = {AT_TIMESTAMP}, and "
    "another value there could override the timestamp)"
)
"""KCL 3.1.3's MultiLangDaemon sets the start from `initialPositionInStreamExtended`
(epoch seconds: AT_TIMESTAMP) and from `initialPositionInStream` (TRIM_HORIZON or
LATEST: `InitialPositionInStreamExtended.newInitialPosition` throws "Invalid
InitialPosition: AT_TIMESTAMP" and the daemon exits). Both write one field, in the
properties' hash order, so a file with both keys may start anywhere: only the timestamp
key may be present."""

Progress = Callable[[str, int, int], None]
"""Called from the scan threads with a table, how many items were just handled, and the
table's approximate item count (DescribeTable's, refreshed by AWS every few hours)."""


class BackfillTooSlowError(LazyRepError):
    """The copy outlasted the stream's retention: records after the start are gone."""


@dataclass(frozen=True, slots=True)
class BackfillConfig:
    """rate_wcu: write capacity the copy may spend per second (> 0); segments: parallel
    scan segments and writer threads (1-1000); start_margin_s: how far before the copy
    the KCL starts (0 to the stream's retention); burst_s: seconds of rate the bucket
    may spend at once (0-10); page_items: items per scan page, the unit of resuming
    (0: DynamoDB's 1 MB pages)."""

    rate_wcu: float
    segments: int = 8
    start_margin_s: float = 900.0
    burst_s: float = 0.2
    create_tables: bool = False
    page_items: int = 0  # items per scan page (0: DynamoDB's 1 MB pages)

    def __post_init__(self) -> None:
        if not 0 < self.rate_wcu <= 1_000_000:
            raise ValueError("BackfillConfig.rate_wcu must be above 0, at most 1000000")
        if not 1 <= self.segments <= MAX_SEGMENTS:
            raise ValueError(f"BackfillConfig.segments must be between 1 and {MAX_SEGMENTS}")
        if self.start_margin_s < 0:
            raise ValueError("BackfillConfig.start_margin_s must be 0 or more")
        if not 0 <= self.burst_s <= 10:
            raise ValueError("BackfillConfig.burst_s must be between 0 and 10")
        if not 0 <= self.page_items <= 100_000:
            raise ValueError("BackfillConfig.page_items must be between 0 and 100000")


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Where the replica's KCL application starts: a whole epoch second (the KCL's unit)."""

    noted_at: datetime
    epoch_s: int

    @property
    def start(self) -> datetime:
        """The start as a datetime."""
        return datetime.fromtimestamp(self.epoch_s, UTC)

    def properties(self) -> dict[str, str]:
        """The KCL MultiLangDaemon key (epoch seconds, as its Date converter reads them).

        `initialPositionInStream` must not be set beside it (see POSITION_KEY_REMOVED).
        """
        return {TIMESTAMP_KEY: str(self.epoch_s)}

    @staticmethod
    def unset() -> dict[str, str]:
        """The keys a properties file must not hold, with why (a comment takes their place)."""
        return {POSITION_KEY: POSITION_KEY_REMOVED}


@dataclass(slots=True)
class TableCopy:
    """One table's copy."""

    table: str
    replica_table: str
    approximate_items: int = 0
    scanned: int = 0
    wcu: int = 0
    outcomes: Counter[CopyOutcome] = field(default_factory=Counter)


@dataclass(slots=True)
class BackfillReport:
    """What the backfill did and where the replica's KCL must start."""

    replica: str
    application_name: str
    position: StartPosition
    retention_hours: int
    rate_wcu: float
    copy_started_at: datetime
    finished_at: datetime | None = None
    tables: list[TableCopy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def expires_at(self) -> datetime:
        """When the first records after the start leave the stream: start the KCL before."""
        return self.position.start + timedelta(hours=self.retention_hours)

    @property
    def copy_seconds(self) -> float:
        """How long the copy took."""
        end = self.finished_at or datetime.now(UTC)
        return (end - self.copy_started_at).total_seconds()

    @property
    def wcu(self) -> int:
        """WCU spent (estimated from item sizes)."""
        return sum(t.wcu for t in self.tables)


class Backfiller:
    """Runs one backfill of `pair` (see the module docstring)."""

    def __init__(
        self,
        pair: ReplicaPair,
        clients: Clients,
        config: BackfillConfig,
        *,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pair = pair
        self.clients = clients
        self.config = config
        self._progress = progress
        self._clock = clock
        self._bucket = WcuBucket(config.rate_wcu, burst_s=config.burst_s)
        names = pair.topology.applier
        self._names = names

    # -- before copying ---------------------------------------------------------------

    def retention_hours(self) -> int:
        """The stream's real retention (DescribeStreamSummary).

        Raises:
            TargetError: the stream does not exist in its region.
        """
        stream = self.pair.topology.stream
        try:
            summary = self.clients.kinesis.describe_stream_summary(StreamName=stream.name)
        except ClientError as exc:
            if classify(exc).code != "ResourceNotFoundException":
                raise
            raise TargetError(
                f"stream {stream.name!r} does not exist in {stream.region} (wrong region?)"
            ) from exc
        return int(summary["StreamDescriptionSummary"]["RetentionPeriodHours"])

    def check(self) -> dict[str, int]:
        """Tables on both sides (created on the replica with `create_tables`); item counts.

        Raises:
            TargetError: a table is missing or has another key.
        """
        primary_region, replica_region = self.pair.primary_region, self.pair.replica.region
        counts = {}
        for table in self.pair.tables:
            counts[table.primary] = check_table(
                self.clients.primary, table.primary, table.schema, primary_region, "primary"
            )
            if self.config.create_tables:
                create_table(self.clients.replica, table.replica, table.schema)
            check_table(
                self.clients.replica, table.replica, table.schema, replica_region, "replica"
            )
        if self.config.create_tables:
            create_tombstone_table(self.clients.replica, self._names.tombstone_table)
        check_tombstone_table(
            self.clients.replica, self._names.tombstone_table, replica_region, "replica"
        )
        return counts

    def lease_note(self) -> str:
        """A warning if the replica's KCL application has leases already (start ignored)."""
        app = self.pair.replica.application_name
        try:
            page = self.clients.replica.scan(TableName=app, Limit=1)
        except ClientError as exc:
            if classify(exc).code != "ResourceNotFoundException":
                raise
            return ""
        if not page.get("Items"):
            return ""
        return (
            f"the KCL application {app} has leases already: a start position applies only to "
            "shards without a checkpoint (move checkpoints with `lazyrep rewind`)"
        )

    def note_position(self, retention_hours: int) -> StartPosition:
        """The start: now minus the margin, floored to a second.

        Raises:
            TargetError: the margin reaches past the stream's retention.
        """
        if self.config.start_margin_s >= retention_hours * 3600:
            raise TargetError(
                f"a start margin of {self.config.start_margin_s:g} s reaches past the stream's "
                f"{retention_hours} h retention"
            )
        now = self._clock()
        return StartPosition(
            datetime.fromtimestamp(now, UTC), math.floor(now - self.config.start_margin_s)
        )

    # -- copying ----------------------------------------------------------------------

    def run(self, state_path: Path | None = None) -> BackfillReport:
        """Check, note the start (or take it from the state file), copy every table.

        With `state_path` the progress is saved after every page, and a run finding an
        unfinished state resumes it: same start position, finished segments skipped.

        Raises:
            TargetError: see `check` and `note_position`; a state file of another replica.
            BackfillTooSlowError: the copy outlasted the retention.
        """
        retention = self.retention_hours()
        counts = self.check()
        note = self.lease_note()
        state = self._state(state_path, retention)
        position = StartPosition(state.noted_at, state.start_epoch)
        report = BackfillReport(
            self.pair.replica.name,
            self.pair.replica.application_name,
            position,
            retention,
            self.config.rate_wcu,
            datetime.fromtimestamp(self._clock(), UTC),
        )
        if note:
            report.notes.append(note)
        if state.finished:
            report.notes.append(
                f"--state {state.path} says this backfill finished already: nothing copied "
                "(delete the file to copy again)"
            )
        elif state.tables:
            report.notes.append(f"resumed from --state {state.path}")
        if state.segments != self.config.segments:
            report.notes.append(f"the resumed copy keeps its {state.segments} segments")
        for table in self.pair.tables:
            copy = TableCopy(table.primary, table.replica, counts.get(table.primary, 0))
            report.tables.append(copy)
            if not state.finished:
                self._copy_table(table, copy, state)
        report.finished_at = datetime.fromtimestamp(self._clock(), UTC)
        self._check_retention(report)
        state.finish()
        return report

    def _state(self, path: Path | None, retention_hours: int) -> BackfillState:
        """The saved state to resume, or a new one with the start noted now (saved if `path`)."""
        stream = self.pair.topology.stream.name
        state = BackfillState.load(path) if path is not None else None
        if state is not None:
            state.check(self.pair.replica.name, stream)
            return state
        position = self.note_position(retention_hours)
        state = BackfillState(
            path,
            self.pair.replica.name,
            stream,
            self.config.segments,
            position.epoch_s,
            position.noted_at,
        )
        state.save()
        return state

    def _check_retention(self, report: BackfillReport) -> None:
        assert report.finished_at is not None
        if report.finished_at >= report.expires_at:
            raise BackfillTooSlowError(
                f"the copy ended at {report.finished_at:%Y-%m-%dT%H:%M:%SZ}, after the records "
                f"following the start ({report.position.start:%Y-%m-%dT%H:%M:%SZ}) began to "
                f"leave the stream ({report.retention_hours} h retention): start over (delete "
                "any --state file) with a higher --rate, with the replica's KCL application "
                "already running"
            )

    def _copy_table(self, table: TablePair, copy: TableCopy, state: BackfillState) -> None:
        target = CopyTarget(
            table.replica,
            table.schema,
            self._names.version_attribute,
            self._names.id_attribute,
            self._names.tombstone_table,
        )
        lock = threading.Lock()
        stop = threading.Event()

        def consume(page: list[dict[str, Any]]) -> None:
            outcomes: Counter[CopyOutcome] = Counter()
            spent = 0
            try:
                for item in page:
                    if stop.is_set():
                        return  # another segment failed, or Ctrl-C: the page is redone
                    units = units_for_bytes(item_size(item))
                    self._bucket.acquire(units)
                    outcome = copy_item(self.clients.replica, target, item)
                    if outcome is CopyOutcome.TAKEN_BACK:
                        self._bucket.acquire(units)  # the take-back delete is billed too
                        units *= 2
                    spent += units
                    outcomes[outcome] += 1
                    if self._progress is not None:
                        self._progress(table.primary, 1, copy.approximate_items)
            finally:
                with lock:
                    copy.scanned += sum(outcomes.values())
                    copy.wcu += spent
                    copy.outcomes.update(outcomes)

        def page_done(segment: int, last_key: dict[str, Any] | None) -> None:
            if not stop.is_set():
                state.page_done(table.primary, segment, last_key)

        pending = state.pending_segments(table.primary)
        if not pending:
            return
        parallel_scan(
            self.clients.primary,
            table.primary,
            pending,
            state.segments,
            consume,
            consistent=True,  # a copy must be at least as new as the start position
            workers=min(len(pending), state.segments),
            start_keys=state.start_keys(table.primary),
            page_done=page_done,
            stop=stop,
            page_items=self.config.page_items,
        )
