"""Family 8: retention. Too little capacity must be flagged long before a record could expire;
a feasible deadline must be met with nothing expiring.

Two replica targets of one topology: `starved` (max_wcu 1 against 5 WCU/s arriving) and
`fed` (max_wcu 20 against the same load), both with a 20 h deadline on a 24 h stream.
1. Each target's real pacer (kcl_consumer.pacer.Pacer, configured from the topology)
   consumes a steady load on a virtual clock for 40 simulated hours, as the processor
   does: told of each batch, paying for each chunk before applying it. Every 10 virtual
   minutes the pacer's verdict is sampled next to the true age of the oldest
   unapplied record. starved: the verdict must leave "ok" while that age is still far
   from the retention (the lead time is reported); fed: "ok" throughout and no record
   older than the deadline.
2. `lazyrep status --json` then runs against the local stack: a stream with records, a
   lease table holding each target's checkpoint (KCL 3.x's item shape), and each
   target's status row written through kcl_consumer.status's DynamoStatusTable, carrying
   the pacer state at the moment of the warning (starved) or at the end (fed). Its
   verdict must be "at risk" or "records will expire" for starved and "ok" for fed.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from binlog.tables import create_table
from binlog.topology import KeyAttribute, KeySchema, Topology
from kcl_consumer.pacer import Pacer, PacerConfig, PacerState
from kcl_consumer.status import DynamoStatusTable, ShardProgress, status_table_name
from lazyrep.bench_pacer import VirtualClock
from lazyrep.cli_status import status
from lazyrep.reliability.framework import Progress, Result, Scale
from lazyrep.reliability.primary import REGION, World, direct_client

HOUR_S = 3600.0
KCL_MAX_RECORDS = 10_000
SAMPLE_S = 600.0
SHARD = "shardId-000000000000"


@dataclass(slots=True)
class Trace:
    """What one simulated target went through."""

    samples: int = 0
    first_warning_s: float | None = None
    age_at_warning_s: float | None = None
    state_at_warning: PacerState | None = None
    first_deadline_miss_s: float | None = None
    first_expiry_s: float | None = None
    max_age_s: float = 0.0
    verdicts: dict[str, int] = field(default_factory=dict)
    last_state: PacerState | None = None
    arrived: int = 0
    applied: int = 0
    expired: int = 0
    """Records older than the retention when applied (or still unapplied at the end)."""


def simulate(config: PacerConfig, arrival_wcu: float, hours: float) -> Trace:
    """One shard consumed through its pacer on a virtual clock; records of 1 WCU arrive
    steadily at `arrival_wcu` a second."""
    clock = VirtualClock()
    wall0 = clock.wall_ms()
    pacer = Pacer(config, clock=clock.clock, sleep=clock.sleep, wall_ms=clock.wall_ms)
    trace = Trace()
    applied = 0
    next_sample = 0.0
    horizon = hours * HOUR_S

    def arrival_ms(index: int) -> int:
        return wall0 + int(index / arrival_wcu * 1000)

    def sample() -> None:
        nonlocal next_sample
        now = clock.now
        arrived = math.floor(now * arrival_wcu)
        age = max(0.0, now - applied / arrival_wcu) if arrived > applied else 0.0
        state = pacer.state()
        trace.samples += 1
        trace.verdicts[state.verdict] = trace.verdicts.get(state.verdict, 0) + 1
        trace.max_age_s = max(trace.max_age_s, age)
        trace.last_state = state
        if state.verdict != "ok" and trace.first_warning_s is None:
            trace.first_warning_s, trace.age_at_warning_s = now, age
            trace.state_at_warning = state
        if age >= config.deadline_s and trace.first_deadline_miss_s is None:
            trace.first_deadline_miss_s = now
        if age >= config.retention_s and trace.first_expiry_s is None:
            trace.first_expiry_s = now
        next_sample = now + SAMPLE_S

    while clock.now < horizon:
        arrived = math.floor(clock.now * arrival_wcu)
        available = min(arrived, applied + KCL_MAX_RECORDS)
        if available <= applied:
            clock.sleep(1.0)  # the KCL's idle time between reads
        else:
            newest = available - 1
            behind = clock.wall_ms() - arrival_ms(arrived - 1) if arrived > available else 0
            pacer.observe(
                available - applied,
                available - applied,
                arrival_ms(applied),
                behind,
                newest_arrival_ms=arrival_ms(newest),
            )
            while applied < available and clock.now < horizon:
                chunk = min(available - applied, max(1, int(pacer.suggested_chunk_wcu())))
                pacer.acquire(chunk, arrival_ms(applied))
                # Records of the chunk that arrived more than the retention ago were gone.
                gone_before = (clock.now - config.retention_s) * arrival_wcu
                trace.expired += max(0, min(chunk, math.ceil(gone_before) - applied))
                applied += chunk
                if clock.now >= next_sample:
                    sample()
        if clock.now >= next_sample:
            sample()
    trace.arrived = math.floor(clock.now * arrival_wcu)
    trace.applied = applied
    # Still unapplied at the end and already past the retention: expired too.
    gone_by_end = math.floor((clock.now - config.retention_s) * arrival_wcu)
    trace.expired += max(0, gone_by_end - applied)
    return trace


def lease_item(checkpoint: str, owner: str) -> dict[str, Any]:
    """A lease as KCL 3.1.3 writes it (what `lazyrep status` reads, and a few fields it sets)."""
    return {
        "leaseKey": {"S": SHARD},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
        "leaseCounter": {"N": "3"},
        "leaseOwner": {"S": owner},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": str(2**128 - 1)},
    }


@dataclass(frozen=True, slots=True)
class RetentionScenario:
    """See the module's docstring."""

    name: str = "retention"
    family: str = "8 lazy (pacer + status)"
    description: str = (
        "max_wcu 1 vs 5 WCU/s arriving: status warns hours before any record could expire; "
        "max_wcu 20: ok, nothing expires"
    )
    arrival_wcu: float = 5.0
    hours: float = 40.0

    def run(self, scale: Scale, progress: Progress) -> Result:
        del scale  # virtual time: the full run takes seconds
        result = Result(self.name)
        run = f"t{uuid.uuid4().hex[:6]}"
        replicas = "".join(
            f'\n[replicas.{name}]\nregion = "{REGION}"\nmax_wcu = {wcu}\n'
            f'deadline_hours = 20\napplication_name = "rel-{run}-{name}"\n'
            for name, wcu in (("starved", 1), ("fed", 20))
        )
        with tempfile.TemporaryDirectory(prefix="lazyrep-") as directory:
            world = World.create(run, Path(directory), shards=1, replicas=replicas)
            traces: dict[str, Trace] = {}
            for name in ("starved", "fed"):
                progress(f"{self.name}: {self.hours:g} simulated hours of replica {name}")
                config = PacerConfig.from_topology(world.topology, name, shards=1)
                traces[name] = simulate(config, self.arrival_wcu, self.hours)
            progress(f"{self.name}: lazyrep status")
            verdicts = self._status(world, traces)
        starved, fed = traces["starved"], traces["fed"]
        # The figures are the fed target's: the starved one is meant to fall behind (and
        # `expired` shows what its warning is about).
        result.produced = fed.arrived
        result.applied = fed.applied
        retention_s = world.topology.stream.retention_hours * HOUR_S
        lead = (
            None
            if starved.first_warning_s is None or starved.first_expiry_s is None
            else starved.first_expiry_s - starved.first_warning_s
        )
        result.extra.update(
            {
                "arrival_wcu": self.arrival_wcu,
                "simulated_hours": self.hours,
                "starved": _trace_json(starved),
                "fed": _trace_json(fed),
                "warning_lead_h": None if lead is None else round(lead / HOUR_S, 2),
                "status_verdicts": verdicts,
            }
        )
        # A record that ages out of the stream unapplied is lost: with a feasible deadline,
        # none may; with too little capacity, the warning must come first.
        result.lost = fed.expired
        result.expect(starved.first_warning_s is not None, "starved: the pacer never warned")
        result.expect(
            starved.age_at_warning_s is not None and starved.age_at_warning_s < retention_s / 2,
            "starved: the warning came when the oldest record was already half-way to expiry",
        )
        result.expect(
            starved.first_deadline_miss_s is None
            or (starved.first_warning_s or math.inf) < starved.first_deadline_miss_s,
            "starved: a record missed its deadline before any warning",
        )
        result.expect(set(fed.verdicts) == {"ok"}, f"fed: verdicts {fed.verdicts}, not only ok")
        result.expect(fed.first_deadline_miss_s is None, "fed: a record missed its deadline")
        result.expect(
            verdicts.get("starved") in ("at risk", "records will expire"),
            f"lazyrep status said {verdicts.get('starved')!r} for the starved replica",
        )
        result.expect(
            verdicts.get("fed") == "ok", f"lazyrep status said {verdicts.get('fed')!r} for fed"
        )
        return result

    def _status(self, world: World, traces: dict[str, Trace]) -> dict[str, str]:
        """Stream records, leases and status rows as the workers would leave them; then
        `lazyrep status --json`; each replica's verdict."""
        kinesis = direct_client("kinesis")
        sequences = [
            kinesis.put_record(StreamName=world.stream, Data=b"{}", PartitionKey=f"k{i}")[
                "SequenceNumber"
            ]
            for i in range(3)
        ]
        dynamodb = direct_client("dynamodb")
        topology: Topology = world.topology
        now_ms = int(time.time() * 1000)
        for name, trace in traces.items():
            app = topology.replicas[name].application_name
            behind = name == "starved"
            state = trace.state_at_warning if behind else trace.last_state
            checkpoint = sequences[0] if behind else sequences[-1]
            create_table(dynamodb, app, KeySchema(KeyAttribute("leaseKey", "S")))
            dynamodb.put_item(TableName=app, Item=lease_item(checkpoint, f"worker-{name}"))
            table = DynamoStatusTable(dynamodb, status_table_name(app))
            table.ensure()
            table.publish(
                ShardProgress(
                    shard_id=SHARD,
                    replica=name,
                    owner=f"worker-{name}",
                    state="processing",
                    checkpoint_sequence=checkpoint,
                    pacer=None if state is None else state.to_json(),
                    updated_ms=now_ms,
                ),
                claim=True,
            )
        answer = CliRunner().invoke(status, ["--topology", str(world.path), "--json"])
        with contextlib.suppress(ValueError):
            doc = json.loads(answer.stdout)
            return {r["name"]: r["verdict"] for r in doc["replicas"]}
        return {"error": f"exit {answer.exit_code}: {answer.stdout[-300:]}"}


def _trace_json(trace: Trace) -> dict[str, Any]:
    def hours(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / HOUR_S, 2)

    return {
        "first_warning_h": hours(trace.first_warning_s),
        "oldest_age_at_warning_h": hours(trace.age_at_warning_s),
        "first_deadline_miss_h": hours(trace.first_deadline_miss_s),
        "first_expiry_h": hours(trace.first_expiry_s),
        "max_age_h": hours(trace.max_age_s),
        "arrived": trace.arrived,
        "applied": trace.applied,
        "expired": trace.expired,
        "verdict_samples": trace.verdicts,
    }


RETENTION = RetentionScenario()
SCENARIOS = (RETENTION,)
