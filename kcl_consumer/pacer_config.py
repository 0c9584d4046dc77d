"""The pacer's configuration, and the start-up check that its deadline fits the stream.

Import these from `kcl_consumer.pacer`; they live here so that the boto3 helper
(`pacer_aws.py`) and the pacer itself can share them without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from binlog.errors import PermanentError
from binlog.topology import Topology

HOUR_S = 3600.0
MIN_RETENTION_S = 24 * HOUR_S  # Kinesis: retention is 24 h to 8,760 h (365 days)
MAX_RETENTION_S = 8760 * HOUR_S
MAX_WCU_LIMIT = 1_000_000.0


class DeadlineError(PermanentError, ValueError):
    """The deadline does not fit the stream's retention minus the safety margin.

    Records would age out of the stream before the replica had to apply them, so
    the worker refuses to start; the message says what to change.
    """


@dataclass(frozen=True, slots=True)
class PacerConfig:
    """One shard's pacer: its capacity, its deadline, and the knobs of its rate policy.

    max_wcu: the most this pacer ever spends (WCU/s). In the MultiLangDaemon every
        shard has its own process and pacer, so a replica target's capacity is
        shared out (`from_topology` divides by the shard count).
    deadline_s: every record is applied before its arrival time plus this.
    retention_s / safety_margin_s: the stream's retention, and how much of it the
        deadline must leave unused (deadline_s <= retention_s - safety_margin_s).
    min_wcu: the rate never drops below this (WCU/s), unless the replica throttles.
    average_window_s: the primary's average write rate is measured over this much
        arrival time (24 h cancels a daily cycle exactly; see docs/PACER.md).
    headroom: the steady rate is the average times 1 + headroom, so that a backlog
        built at the peak drains before the next one.
    burst_s: the token bucket holds this many seconds of the current rate.
    deadline_slack: catch-up aims to finish this fraction of the deadline early.
    throttle_backoff: on throttling, the rate ceiling becomes the rate times this.
    throttle_recovery_s: the ceiling regains one backoff step per this many seconds.
    update_interval_s: the rate policy is recomputed at most this often (an
        observed batch and a throttle recompute it at once).
    at_risk_fraction: verdict "at risk" when meeting the deadline needs more than
        this fraction of max_wcu.
    """

    max_wcu: float
    deadline_s: float
    retention_s: float = MIN_RETENTION_S
    safety_margin_s: float = 2 * HOUR_S
    min_wcu: float = 1.0
    average_window_s: float = 24 * HOUR_S
    headroom: float = 0.05
    burst_s: float = 1.0
    deadline_slack: float = 0.1
    throttle_backoff: float = 0.7
    throttle_recovery_s: float = 60.0
    update_interval_s: float = 10.0
    at_risk_fraction: float = 0.8

    def __post_init__(self) -> None:
        _check("max_wcu", self.max_wcu, 0.001, MAX_WCU_LIMIT)
        _check("retention_s", self.retention_s, MIN_RETENTION_S, MAX_RETENTION_S)
        _check("safety_margin_s", self.safety_margin_s, 0.0, self.retention_s - 1.0)
        _check("deadline_s", self.deadline_s, 1.0, self.retention_s)
        _check("min_wcu", self.min_wcu, 0.001, self.max_wcu)
        _check("average_window_s", self.average_window_s, 600.0, 7 * 24 * HOUR_S)
        _check("headroom", self.headroom, 0.0, 1.0)
        _check("burst_s", self.burst_s, 0.1, 60.0)
        _check("deadline_slack", self.deadline_slack, 0.0, 0.5)
        _check("throttle_backoff", self.throttle_backoff, 0.1, 0.95)
        _check("throttle_recovery_s", self.throttle_recovery_s, 1.0, 3600.0)
        _check("update_interval_s", self.update_interval_s, 0.0, 300.0)
        _check("at_risk_fraction", self.at_risk_fraction, 0.01, 1.0)
        check_deadline_fits(self, self.retention_s)

    @classmethod
    def from_topology(
        cls,
        topology: Topology,
        replica_name: str,
        *,
        shards: int | None = None,
        **knobs: float,
    ) -> PacerConfig:
        """The pacer of one shard of `replica_name`: its share of max_wcu, its deadline.

        `shards` (default: the topology's stream.shards) is how many shard processes
        share the target's max_wcu; `knobs` override the other fields.

        Raises:
            KeyError: no such replica in the topology.
            ValueError: a knob out of range (DeadlineError if the deadline does not fit).
        """
        replica = topology.replicas[replica_name]
        count = topology.stream.shards if shards is None else shards
        if count < 1:
            raise ValueError(f"PacerConfig.from_topology: shards must be at least 1, got {count}")
        max_wcu = replica.max_wcu / count
        knobs.setdefault("min_wcu", min(1.0, max_wcu))
        return cls(
            max_wcu=max_wcu,
            deadline_s=replica.deadline_hours * HOUR_S,
            retention_s=topology.stream.retention_hours * HOUR_S,
            safety_margin_s=topology.safety_margin_hours * HOUR_S,
            **knobs,
        )


def check_deadline_fits(config: PacerConfig, retention_s: float) -> None:
    """Refuse a deadline that does not fit `retention_s` (the stream's, as read) minus the margin.

    Raises:
        DeadlineError: saying what to change.
    """
    limit = retention_s - config.safety_margin_s
    if config.deadline_s <= limit:
        return
    needed_h = math.ceil((config.deadline_s + config.safety_margin_s) / HOUR_S)
    raise DeadlineError(
        f"the replica's deadline of {_hours(config.deadline_s)} does not fit the stream's "
        f"retention of {_hours(retention_s)} minus the safety margin of "
        f"{_hours(config.safety_margin_s)} (at most {_hours(max(limit, 0.0))}): records "
        f"could age out of the stream before they are applied. Raise the stream's retention "
        f"to at least {needed_h} h (aws kinesis increase-stream-retention-period "
        f"--retention-period-hours {needed_h}) and stream.retention_hours, or shorten the "
        f"replica's deadline_hours to {_hours(max(limit, 0.0))} or less and raise its "
        f"max_wcu if the shorter deadline needs more capacity"
    )


def _hours(seconds: float) -> str:
    return f"{seconds / HOUR_S:g} h"


def _check(name: str, value: float, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or not low <= value <= high
    ):
        raise ValueError(
            f"PacerConfig.{name} must be between {_number(low)} and {_number(high)}, got {value!r}"
        )


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"
