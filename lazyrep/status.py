"""`lazyrep status`: the pure part: per shard figures in, margins and a verdict out.

The verdict of a shard (docs/STATUS.md):
- caught up (nothing after the checkpoint): ok;
- records will expire: at the projected drain time the oldest unapplied record would
  be older than the stream's retention, or the pacer itself says so;
- at risk: it would miss the deadline, or the pacer says at risk, or no live worker
  is applying the shard (no lease owner, status not updated for `stale_after_s`);
- ok otherwise.
A replica's verdict is its worst shard's; the report's is its worst replica's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["ok", "at risk", "records will expire"]
VERDICTS: tuple[Verdict, ...] = ("ok", "at risk", "records will expire")

EXIT_OK = 0
EXIT_WILL_EXPIRE = 3
"""Exit status when any shard's verdict is "records will expire" (1 and 2 are errors)."""

DEFAULT_STALE_AFTER_S = 120.0
"""A status item not updated for this long no longer proves a worker is applying."""


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most serious of `verdicts` ("ok" for none)."""
    return max(verdicts, key=VERDICTS.index, default="ok")


@dataclass(frozen=True, slots=True)
class ShardFigures:
    """What was read for one shard (inputs of `assess`).

    ended: the checkpoint is SHARD_END, or the shard is closed and its lease is gone
    because the KCL finished it. oldest_unapplied_age_s: age of the first record
    after the checkpoint (None when caught up). pacer_*: from the worker's status item,
    only when `status_fresh`.
    """

    ended: bool
    caught_up: bool
    oldest_unapplied_age_s: float | None
    has_owner: bool
    status_fresh: bool | None  # None: the worker publishes no status item
    pacer_rate_wcu: float | None = None
    pacer_drain_s: float | None = None
    pacer_verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    """Margins (seconds; negative: missed) and the verdict, with the reasons for it."""

    margin_to_deadline_s: float | None
    margin_to_retention_s: float | None
    verdict: Verdict
    reasons: tuple[str, ...]


def assess(figures: ShardFigures, *, deadline_s: float, retention_s: float) -> Assessment:
    """Margins and verdict of one shard; see the module docstring for the rules."""
    if figures.ended or figures.caught_up:
        return Assessment(deadline_s, retention_s, "ok", ())
    age = figures.oldest_unapplied_age_s or 0.0
    drain = figures.pacer_drain_s if figures.status_fresh is not False else None
    if drain is not None and not math.isfinite(drain):
        drain = None
    spent = age + (drain or 0.0)
    to_deadline = deadline_s - spent
    to_retention = retention_s - spent
    reasons: list[str] = []
    verdicts: list[Verdict] = []
    if to_retention < 0:
        verdicts.append("records will expire")
        reasons.append("the oldest unapplied record leaves the stream before it is applied")
    if to_deadline < 0:
        verdicts.append("at risk")
        reasons.append("the oldest unapplied record misses the deadline")
    if figures.pacer_verdict in VERDICTS and figures.status_fresh:
        pacer_verdict: Verdict = figures.pacer_verdict
        if pacer_verdict != "ok":
            verdicts.append(pacer_verdict)
            reasons.append(f"the pacer says {pacer_verdict}")
    if not figures.has_owner:
        verdicts.append("at risk")
        reasons.append("no worker holds the lease")
    elif figures.status_fresh is False:
        verdicts.append("at risk")
        reasons.append("the worker's status is stale")
    if drain is None and figures.status_fresh is not True:
        reasons.append("drain time unknown")
    return Assessment(to_deadline, to_retention, worst(verdicts), tuple(reasons))


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One row of the report (the JSON field names are these)."""

    shard_id: str
    open: bool
    lease_owner: str | None
    lease_counter: int | None
    checkpoint: str | None
    checkpoint_subsequence: int | None
    latest_sequence: str | None
    next_unapplied_sequence: str | None
    oldest_unapplied_age_s: float | None
    millis_behind_latest: int | None
    caught_up: bool
    worker_state: str | None
    status_age_s: float | None
    pacer_rate_wcu: float | None
    projected_drain_s: float | None
    margin_to_deadline_s: float | None
    margin_to_retention_s: float | None
    verdict: Verdict
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: floats rounded to ms, reasons as a list."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, float):
                out[name] = round(value, 3) if math.isfinite(value) else None
        out["reasons"] = list(self.reasons)
        return out


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """One replica target and its shards."""

    name: str
    region: str
    application_name: str
    deadline_hours: float
    max_wcu: float
    lease_table_found: bool
    shards: tuple[ShardStatus, ...]

    @property
    def verdict(self) -> Verdict:
        """The worst shard's verdict (at risk when the KCL application never ran)."""
        found = [s.verdict for s in self.shards]
        if not self.lease_table_found:
            found.append("at risk")
        return worst(found)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "region": self.region,
            "application_name": self.application_name,
            "deadline_hours": self.deadline_hours,
            "max_wcu": self.max_wcu,
            "lease_table_found": self.lease_table_found,
            "verdict": self.verdict,
            "shards": [s.to_json() for s in self.shards],
        }


@dataclass(frozen=True, slots=True)
class PrimaryLag:
    """The primary path's lag, where a metric has it."""

    iterator_age_ms: float | None
    source: str  # the metric read, or why it is unknown


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The whole answer of `lazyrep status`."""

    stream: str
    stream_region: str
    retention_hours: float
    safety_margin_hours: float
    generated_at: str
    primary: PrimaryLag
    replicas: tuple[ReplicaStatus, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> Verdict:
        """The worst replica's verdict."""
        return worst([r.verdict for r in self.replicas])

    @property
    def exit_code(self) -> int:
        """EXIT_WILL_EXPIRE if any shard's records will expire, else 0."""
        return EXIT_WILL_EXPIRE if self.verdict == "records will expire" else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The `--json` document."""
        return {
            "generated_at": self.generated_at,
            "stream": {
                "name": self.stream,
                "region": self.stream_region,
                "retention_hours": self.retention_hours,
            },
            "safety_margin_hours": self.safety_margin_hours,
            "primary": {
                "iterator_age_ms": self.primary.iterator_age_ms,
                "source": self.primary.source,
            },
            "verdict": self.verdict,
            "replicas": [r.to_json() for r in self.replicas],
        }
