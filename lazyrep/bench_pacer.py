"""The pacer benchmark: a simulated diurnal day on a virtual clock, then a real-time run.

Simulation: one shard's pacer (kcl_consumer.pacer.Pacer) on a virtual clock (its
sleep advances the clock; nothing really sleeps) under a diurnal load whose
per-minute peak is 3 times its average, on a stream with 24 h retention. The
consumer behaves like the KCL and our processor: it polls once a second when caught
up, takes batches of at most 10,000 records, pays for each record (`acquire`)
before applying it and reports the batch (`observe`) once it is applied. Three
days are simulated: the pacer starts knowing nothing, day 1 fills its 24 h
average, day 2 leaves the backlog that a steady day starts with, day 3 is
measured. WCU are counted per minute of virtual time, so `replica_peak_wcu_to_avg`
is the busiest minute over the average minute (the producer's likewise).

Real time: records applied with binlog.applier.Applier to a table of the local
stack's moto server, each chunk paid for through a pacer held at a target rate;
`rate_accuracy` is the WCU applied per second (binlog.capacity) over the target.
"""

from __future__ import annotations

import bisect
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from binlog.applier import Applier, ApplierConfig, Outcome
from binlog.capacity import write_units
from binlog.clients import client_config, dynamodb_client
from binlog.envelope import Action, Envelope
from binlog.records import Position, SourcedRecord
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema
from kcl_consumer.pacer import Pacer, PacerConfig

DAY_S = 86_400
HOUR_S = 3_600.0
PEAK_TO_AVERAGE = 3.0
KCL_MAX_RECORDS = 10_000  # the KCL's default maxRecords per GetRecords
POLL_S = 1.0  # the KCL's idle time between reads when a shard is caught up
SIZES = (1, 1, 2, 1, 1, 3, 1, 2)  # record sizes in WCU: mostly small items, some larger

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulated run: the load, the deadline, how long."""

    name: str
    average_wcu: float
    deadline_h: float
    days: int = 3
    retention_h: float = 24.0
    safety_margin_h: float = 2.0
    max_wcu_multiple: float = 4.0  # max_wcu as a multiple of the average load
    outage_h: tuple[float, float] | None = None  # consumer stopped from..to (hours)


class VirtualClock:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self, start_wall_ms: int = 1_700_000_000_000) -> None:
        self.now = 0.0
        self._wall0 = start_wall_ms

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def wall_ms(self) -> int:
        return self._wall0 + int(self.now * 1000)


def diurnal_shape() -> tuple[float, list[float]]:
    """(exponent, per-minute multipliers of the average) for (1 + sin)^p with peak/avg 3.

    A shifted sine cannot reach a peak 3 times its average without going negative,
    so the sine is raised to the power that gives exactly that ratio (p ~ 2.6); the
    day starts in the trough.
    """
    minutes = DAY_S // 60

    def curve(p: float) -> list[float]:
        return [
            (1.0 + math.sin(2 * math.pi * i / minutes - math.pi / 2)) ** p for i in range(minutes)
        ]

    low, high = 1.0, 5.0
    for _ in range(60):
        p = (low + high) / 2
        values = curve(p)
        if max(values) / (sum(values) / minutes) < PEAK_TO_AVERAGE:
            low = p
        else:
            high = p
    values = curve(high)
    mean = sum(values) / minutes
    return high, [v / mean for v in values]


def _arrivals(scenario: Scenario, shape: list[float], wall0: int) -> tuple[list[int], list[int]]:
    """Arrival times (epoch ms) and sizes (WCU) of every record of the run."""
    arrivals: list[int] = []
    sizes: list[int] = []
    owed = 0.0  # WCU of load not yet turned into a record
    n = 0
    for second in range(scenario.days * DAY_S):
        rate = scenario.average_wcu * shape[(second % DAY_S) // 60]
        at = 0.0  # position within this second
        while owed + rate * (1.0 - at) >= SIZES[n % len(SIZES)]:
            size = SIZES[n % len(SIZES)]
            step = max(0.0, (size - owed) / rate)
            at += step
            owed += rate * step - size
            arrivals.append(wall0 + int((second + at) * 1000))
            sizes.append(size)
            n += 1
        owed += rate * (1.0 - at)
    return arrivals, sizes


def simulate(scenario: Scenario, progress: Progress | None = None) -> dict[str, Any]:
    """Run one scenario on a virtual clock; figures measured on its last day."""
    return _Simulation(scenario, progress).run()


class _Simulation:
    """One shard consumed the way the KCL and our processor do, on a virtual clock."""

    def __init__(self, scenario: Scenario, progress: Progress | None) -> None:
        self.scenario = scenario
        self.progress = progress
        self.exponent, shape = diurnal_shape()
        self.clock = VirtualClock()
        self.wall0 = self.clock.wall_ms()
        self.arrivals, self.sizes = _arrivals(scenario, shape, self.wall0)
        self.config = PacerConfig(
            max_wcu=scenario.average_wcu * scenario.max_wcu_multiple,
            deadline_s=scenario.deadline_h * HOUR_S,
            retention_s=scenario.retention_h * HOUR_S,
            safety_margin_s=scenario.safety_margin_h * HOUR_S,
            min_wcu=min(1.0, scenario.average_wcu),
        )
        self.pacer = Pacer(
            self.config, clock=self.clock.clock, sleep=self.clock.sleep, wall_ms=self.clock.wall_ms
        )
        minutes = scenario.days * DAY_S // 60
        self.replica = [0.0] * minutes  # WCU applied per minute of virtual time
        self.producer = [0.0] * minutes  # WCU arrived per minute
        for arrival, size in zip(self.arrivals, self.sizes, strict=True):
            self.producer[(arrival - self.wall0) // 60_000] += size
        self.max_lag = [0.0] * scenario.days
        self.verdicts: dict[str, int] = {}
        self.max_rate = 0.0
        self.next_sample = 0.0
        self.index = 0

    def run(self) -> dict[str, Any]:
        end_s = self.scenario.days * DAY_S
        outage = self.scenario.outage_h
        next_report = 0.0
        while self.clock.now < end_s and self.index < len(self.arrivals):
            now = self.clock.now
            if outage is not None and outage[0] * HOUR_S <= now < outage[1] * HOUR_S:
                self.clock.sleep(outage[1] * HOUR_S - now)
            elif not self._batch():
                self.clock.sleep(POLL_S)
            if self.progress is not None and self.clock.now >= next_report:
                self.progress(f"{self.scenario.name}: {self.clock.now / HOUR_S:.0f} h simulated")
                next_report = self.clock.now + 6 * HOUR_S
        return self._figures()

    def _batch(self) -> bool:
        """One GetRecords' worth: pay for and apply each record, then report the batch."""
        arrivals, sizes, first = self.arrivals, self.sizes, self.index
        now_ms = self.clock.wall_ms()
        last = min(len(arrivals), first + KCL_MAX_RECORDS)
        available = bisect.bisect_right(arrivals, now_ms, first, last)
        if available == first:
            return False
        more = available < len(arrivals) and arrivals[available] <= now_ms
        behind = now_ms - arrivals[available - 1] if more else 0
        day_last = self.scenario.days - 1
        batch_wcu = 0
        for k in range(first, available):
            self.pacer.acquire(sizes[k], arrivals[k])
            applied_s = self.clock.now
            minute = int(applied_s // 60)
            if minute < len(self.replica):
                self.replica[minute] += sizes[k]
            day = min(day_last, int(applied_s // DAY_S))
            lag = applied_s - (arrivals[k] - self.wall0) / 1000
            self.max_lag[day] = max(self.max_lag[day], lag)
            batch_wcu += sizes[k]
            if applied_s >= self.next_sample:
                self._sample()
        self.pacer.observe(batch_wcu, available - first, arrivals[first], behind)
        self.index = available
        return True

    def _sample(self) -> None:
        state = self.pacer.state()
        self.max_rate = max(self.max_rate, state.rate_wcu)
        if self.clock.now >= (self.scenario.days - 1) * DAY_S:
            self.verdicts[state.verdict] = self.verdicts.get(state.verdict, 0) + 1
        self.next_sample = self.clock.now + 600

    def _figures(self) -> dict[str, Any]:
        first = (self.scenario.days - 1) * DAY_S // 60
        day_replica = self.replica[first:]
        day_producer = self.producer[first:]
        replica_avg = sum(day_replica) / len(day_replica)
        producer_avg = sum(day_producer) / len(day_producer)
        return {
            "deadline_s": self.config.deadline_s,
            "max_lag_s": round(max(self.max_lag), 1),
            "max_lag_s_by_day": [round(v, 1) for v in self.max_lag],
            "producer_peak_to_avg": round(max(day_producer) / producer_avg, 3),
            "replica_peak_wcu_to_avg": round(max(day_replica) / replica_avg, 3),
            "producer_avg_wcu": round(producer_avg / 60, 3),
            "replica_avg_wcu": round(replica_avg / 60, 3),
            "replica_peak_wcu": round(max(day_replica) / 60, 3),
            "max_wcu": self.config.max_wcu,
            "max_rate_wcu": round(self.max_rate, 3),
            "verdicts_last_day_every_10_min": self.verdicts,
            "records": len(self.arrivals),
            "backlog_records_at_end": len(self.arrivals) - self.index,
            "load_exponent": round(self.exponent, 4),
        }


def scenarios(quick: bool) -> list[Scenario]:
    """The day the issue asks for, a 6 h deadline, and an 8 h consumer outage at the peak."""
    average = 2.0 if quick else 6.0
    return [
        Scenario("diurnal", average_wcu=average, deadline_h=20.0),
        Scenario("short_deadline", average_wcu=average, deadline_h=6.0),
        Scenario("outage", average_wcu=average, deadline_h=20.0, outage_h=(30.0, 38.0)),
    ]


# -- real time against the local stack -------------------------------------------------------

SCHEMA = KeySchema(KeyAttribute("pk", "S"))


@contextmanager
def _stack() -> Iterator[str]:
    """The endpoints in the environment if set, else a local stack started for the run."""
    if os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL"):
        yield "endpoints from the environment"
        return
    from emulators.stack import LocalStack  # noqa: PLC0415 - only when no endpoint is set

    saved = dict(os.environ)
    with LocalStack.start() as stack:
        os.environ.update(stack.env)
        try:
            yield "local stack (moto server)"
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _records(table: str, count: int, items: int) -> list[SourcedRecord]:
    """PutItem records of 1-3 WCU over `items` items, in one shard's order."""
    now_ms = time.time_ns() // 1_000_000
    out = []
    for n in range(count):
        size = SIZES[n % len(SIZES)]
        envelope = Envelope(
            id=f"bench-{n}",
            time_ms=now_ms,
            action=Action.PUT,
            table=table,
            key={"pk": {"S": f"item-{n % items}"}},
            item={
                "pk": {"S": f"item-{n % items}"},
                "n": {"N": str(n)},
                "pad": {"S": "x" * (size * 1024 - 200)},
            },
        )
        sequence = str(49_000_000_000_000_000_000 + n)
        out.append(SourcedRecord(envelope, Position("shardId-000000000000", sequence), now_ms))
    return out


def realtime(
    target_wcu: float, duration_s: float, chunk_records: int = 10, progress: Progress | None = None
) -> dict[str, Any]:
    """Apply records to moto through a pacer held at `target_wcu` for about `duration_s`."""
    run_id = uuid.uuid4().hex[:8]
    table, tombstones = f"bench-pacer-{run_id}", f"bench-pacer-{run_id}-tombstones"
    client = dynamodb_client(region="us-east-1", config=client_config(pool=32))
    create_table(client, table, SCHEMA)
    create_tombstone_table(client, tombstones)
    applier = Applier(
        client,
        {table: SCHEMA},
        config=ApplierConfig(tombstone_table=tombstones, max_workers=16),
    )
    mean_size = sum(SIZES) / len(SIZES)
    count = int(target_wcu * duration_s / mean_size * 1.5) + chunk_records
    records = _records(table, count, items=max(10, count // 10))
    costs = [write_units(r.envelope) for r in records]
    pacer = Pacer(PacerConfig(max_wcu=target_wcu, min_wcu=target_wcu, deadline_s=20 * HOUR_S))
    outcomes: dict[str, int] = {}
    applied_wcu = 0
    waited = 0.0
    if progress is not None:
        progress(f"real time: {target_wcu:g} WCU/s for {duration_s:g} s")
    began = time.monotonic()
    index = 0
    try:
        while index < len(records) and time.monotonic() - began < duration_s:
            chunk = records[index : index + chunk_records]
            wcu = sum(costs[index : index + chunk_records])
            waited += pacer.acquire(wcu, min(r.arrival_ms or 0 for r in chunk))
            for result in applier.apply_batch(chunk):
                outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
            applied_wcu += wcu
            index += len(chunk)
        elapsed = time.monotonic() - began
    finally:
        applier.close()
    achieved = applied_wcu / elapsed
    return {
        "target_wcu": target_wcu,
        "achieved_wcu": round(achieved, 2),
        "rate_accuracy": round(achieved / target_wcu, 4),
        "elapsed_s": round(elapsed, 2),
        "records_applied": index,
        "outcomes": outcomes,
        "not_applied": sum(v for k, v in outcomes.items() if k != Outcome.APPLIED.value),
        "waited_s": round(waited, 2),
        "chunk_records": chunk_records,
    }


def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    """Both sections; `quick` finishes in under a minute (local stack start included)."""
    began = time.monotonic()
    figures: dict[str, Any] = {}
    for scenario in scenarios(quick):
        if progress is not None:
            progress(f"simulating {scenario.name}")
        figures[scenario.name] = simulate(scenario, progress)
    main = figures["diurnal"]
    summary = {
        "producer_peak_to_avg": main["producer_peak_to_avg"],
        "replica_peak_wcu_to_avg": main["replica_peak_wcu_to_avg"],
        "max_lag_s": main["max_lag_s"],
        "deadline_s": main["deadline_s"],
    }
    with _stack() as where:
        live = realtime(200.0, 10.0 if quick else 20.0, progress=progress)
    live["dynamodb"] = where
    return {
        **summary,
        "rate_accuracy": live["rate_accuracy"],
        "simulation": {
            "measured": "peaks and averages on day 3 of 3 (the pacer starts knowing nothing: "
            "day 1 fills its 24 h average, day 2 leaves the backlog a steady day starts "
            "with); WCU per minute of virtual time; max_lag_s over all three days",
            "retention_s": 24 * HOUR_S,
            **figures,
        },
        "realtime": live,
        "seconds": round(time.monotonic() - began, 1),
    }
