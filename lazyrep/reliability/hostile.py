"""Family 7: hostile records mixed into valid SDK traffic on the primary path.

Raw `PutRecords` (bypassing the SDK's checks) writes records that are random bytes,
truncated JSON, over DynamoDB's 400 KB item limit, nested too deep (in the item, and
10,000 brackets deep as plain JSON), of the wrong shape or types, or valid envelopes
for tables outside the topology (a stranger's, the tombstone table, a replica's name),
while four writers send the suite's workload through the SDK. Every hostile record
must be parked in the dead-letter queue with the reason it was made for; the valid
traffic must equal the reference model; the handler's process must not grow (its
resident set is measured after each fifth of the load).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import random
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from binlog.codec import document, dumps
from binlog.envelope import Action
from emulators.esm import EventSourceMapping
from emulators.esm_events import FunctionIdentity, StreamRecord, build_event
from emulators.esm_settings import EsmSettings
from lambda_consumer import handler
from lazyrep.reliability.accounting import compare
from lazyrep.reliability.framework import Progress, Result, Scale, rss_mb
from lazyrep.reliability.model import ModelProcess, contents
from lazyrep.reliability.primary import (
    REGION,
    Function,
    World,
    build_consumer,
    direct_client,
    produce,
    serving,
)
from lazyrep.reliability.workload import action_count, plan
from producer import Producer, ProducerConfig

# Kinesis PutRecords: 500 records and 5 MiB a call; stay clear of the byte limit.
_CALL_RECORDS = 500
_CALL_BYTES = 4 * 1024 * 1024
OVERSIZED_EVERY = 500
"""One record in this many is a 410 KB item (they are slow to park: keep them few)."""


class Hostile(NamedTuple):
    """One record to write raw, and the reason the consumer must park it with."""

    data: bytes
    partition_key: str
    reason: str


def _envelope(run: str, table: str, n: int, **parts: Any) -> dict[str, Any]:
    key = parts.pop("key", {"user_id": {"S": f"hostile-{n}"}})
    doc = document(
        envelope_id=f"hostile-{run}-{n}",
        time_ms=1_700_000_000_000 + n,
        action=Action.PUT,
        table=table,
        key=key,
        item={**key, "v": {"N": "1"}},
    )
    doc.update(parts)
    return doc


def hostile_records(run: str, count: int, *, seed: int = 7) -> list[Hostile]:
    """`count` hostile records of every kind, in a seeded random order."""
    rng = random.Random(seed)
    users = f"{run}users"
    kinds: list[tuple[str, Any]] = [
        ("not_json", lambda n: b"\xff" + rng.randbytes(rng.randrange(1, 300))),
        ("not_json", lambda n: dumps(_envelope(run, users, n))[: rng.randrange(1, 60)]),
        ("too_deep", lambda n: b"[" * 10_000 + b"]" * 10_000),
        (
            "too_deep",
            lambda n: dumps(
                _envelope(run, users, n, item=_nested({"user_id": {"S": f"hostile-{n}"}}, 40))
            ),
        ),
        ("not_object", lambda n: json.dumps([n, "x", None]).encode()),
        ("unknown_format", lambda n: dumps(_envelope(run, users, n, format="1"))),
        ("bad_field", lambda n: dumps(_envelope(run, users, n, id=n))),
        ("bad_field", lambda n: dumps(_envelope(run, users, n, action="DropTable"))),
        (
            "key_mismatch",
            lambda n: dumps(_envelope(run, users, n, key={"user_id": {"N": str(n)}})),
        ),
        (
            "bad_value",
            lambda n: dumps(
                _envelope(run, users, n, item={"user_id": {"S": f"hostile-{n}"}, "v": {"N": "x"}})
            ),
        ),
        ("unauthorized_table", lambda n: dumps(_envelope(run, f"stranger-{run}", n))),
        ("unauthorized_table", lambda n: dumps(_envelope(run, f"{run}tombstones", n))),
        ("unauthorized_table", lambda n: dumps(_envelope(run, f"eu-{run}users", n))),
    ]
    records = []
    for n in range(count):
        if n % OVERSIZED_EVERY == OVERSIZED_EVERY // 2:
            blob = {"S": "x" * (410 * 1024)}
            item = {"user_id": {"S": f"hostile-{n}"}, "blob": blob}
            reason, data = "item_too_large", dumps(_envelope(run, users, n, item=item))
        else:
            reason, make = kinds[n % len(kinds)]
            data = make(n)
        records.append(Hostile(data, f"hostile-{rng.randrange(10**9)}", reason))
    rng.shuffle(records)
    return records


def _nested(item: dict[str, Any], depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(depth):
        value = {"M": {"a": value}}
    return {**item, "deep": value}


def handler_memory(world: World, records: list[Hostile], *, rounds: int = 4) -> list[float]:
    """Memory the Python allocator holds (tracemalloc, KB) after each pass of the same hostile
    records through `lambda_consumer.handler.handle`, once warmed up; flat means no leak.

    Run after the dead letters are read: these passes park the records again, at positions
    of their own (a made-up shard sequence), in the same store.
    """
    kinesis = direct_client("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=world.stream)
    who = FunctionIdentity(
        "lazyrep-applier", REGION, summary["StreamDescriptionSummary"]["StreamARN"]
    )
    shard = kinesis.list_shards(StreamName=world.stream)["Shards"][0]["ShardId"]
    sample = [r for r in records if r.reason != "item_too_large"][:1000]
    now = time.time()
    events = [
        build_event(
            [
                StreamRecord(str(10**20 + start + n), r.partition_key, r.data, now)
                for n, r in enumerate(sample[start : start + 250])
            ],
            shard,
            who,
        )
        for start in range(0, len(sample), 250)
    ]

    def one_pass() -> None:
        for event in events:
            handler.handle(dict(event), None)

    # A log handler that keeps every record (pytest's capture does) would count as growth:
    # the consumer's per-record warnings are silenced while measuring.
    quiet = [logging.getLogger(name) for name in ("lambda_consumer", "binlog")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    figures: list[float] = []
    try:
        one_pass()  # imports, caches, connection pools: not a leak
        tracemalloc.start()
        for _ in range(rounds):
            one_pass()
            gc.collect()
            figures.append(round(tracemalloc.get_traced_memory()[0] / 1024, 1))
    finally:
        tracemalloc.stop()
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return figures


def _calls(records: list[Hostile]) -> Iterator[list[Hostile]]:
    call: list[Hostile] = []
    size = 0
    for record in records:
        weight = len(record.data) + len(record.partition_key)
        if call and (len(call) == _CALL_RECORDS or size + weight > _CALL_BYTES):
            yield call
            call, size = [], 0
        call.append(record)
        size += weight
    if call:
        yield call


def put_raw(kinesis: Any, stream: str, records: list[Hostile]) -> None:
    """Write records with plain PutRecords, retrying entries Kinesis refused."""
    for call in _calls(records):
        pending = call
        for _ in range(50):
            answer = kinesis.put_records(
                StreamName=stream,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in pending],
            )
            pending = [
                r for r, e in zip(pending, answer["Records"], strict=True) if "ErrorCode" in e
            ]
            if not pending:
                break
        else:
            raise RuntimeError(f"{len(pending)} hostile records refused by Kinesis 50 times")


@dataclass(frozen=True, slots=True)
class HostileScenario:
    """Hostile records mixed into valid traffic; see the module's docstring."""

    name: str = "hostile-records"
    family: str = "7 primary"
    description: str = (
        "10,000 random, garbled, oversized, deeply nested, wrong-type and unauthorised-table "
        "records written raw among valid SDK traffic"
    )
    hostile: int = 10_000
    actions: int = 2_000
    chunks: int = 5
    max_rss_growth_mb: float = 64.0
    max_traced_growth_kb: float = 256.0

    def run(self, scale: Scale, progress: Progress) -> Result:
        result = Result(self.name)
        run = f"h{uuid.uuid4().hex[:6]}"
        plans = plan(4, scale.count(self.actions, 40), prefix=run)
        records = hostile_records(run, scale.count(self.hostile, 26))
        expected_reasons = Counter(r.reason for r in records)
        result.produced = action_count(plans) + len(records)
        rss: list[float] = []
        with contextlib.ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lazyrep-")))
            model = stack.enter_context(ModelProcess())
            expected = model.submit(run, plans)
            world = World.create(run, directory, dead_letter="s3")
            consumer = build_consumer(
                world, direct_client("dynamodb", pool=20), direct_client("kinesis")
            )
            stack.enter_context(serving(consumer))
            settings = EsmSettings(
                batch_size=500,
                function_response_types=("ReportBatchItemFailures",),
                bisect_batch_on_function_error=True,
                poll_interval_s=0.05,
                shard_discovery_interval_s=0.5,
                retry_backoff_s=0.01,
                retry_backoff_max_s=0.2,
            )
            mapping = EventSourceMapping(
                world.stream,
                Function("plain", 0),
                settings,
                region=REGION,
                kinesis=direct_client("kinesis", pool=64),
            )
            mapping.start()
            stack.callback(mapping.stop)
            producer = stack.enter_context(
                Producer(world.path, config=ProducerConfig(max_attempts=60))
            )
            raw = direct_client("kinesis")
            per_chunk = -(-len(records) // self.chunks)
            for chunk in range(self.chunks):
                progress(f"{self.name}: chunk {chunk + 1} of {self.chunks}")
                put_raw(raw, world.stream, records[chunk * per_chunk : (chunk + 1) * per_chunk])
                produce(producer, plans, chunk / self.chunks, (chunk + 1) / self.chunks)
                producer.flush()
                mapping.drain(600)
                rss.append(round(rss_mb(), 1))
            stats = mapping.drain(600)
            mapping.stop()
            progress(f"{self.name}: reading the dead-letter queue")
            letters = world.letters()
            progress(f"{self.name}: the handler's memory over repeated passes")
            traced = handler_memory(world, records)
            tally = compare(expected.result(timeout=600), contents(direct_client("dynamodb"), run))
        parked_reasons = Counter(str(v["reason"]) for v in letters.values())
        result.parked = len(letters)
        result.lost = max(0, tally.lost - max(0, result.parked - len(records)))
        result.duplicated = tally.duplicated
        result.diverged = tally.diverged
        result.applied = result.produced - result.parked - result.lost
        growth = rss[-1] - rss[0] if rss else 0.0
        traced_growth = traced[-1] - traced[0]
        result.extra.update(
            {
                "hostile": len(records),
                "valid_actions": action_count(plans),
                "parked_by_reason": dict(sorted(parked_reasons.items())),
                "expected_by_reason": dict(sorted(expected_reasons.items())),
                "rss_mb_per_chunk": rss,
                "rss_growth_mb": round(growth, 1),
                "handler_traced_kb_per_pass": traced,
                "handler_traced_growth_kb": round(traced_growth, 1),
                "esm_function_errors": stats.function_errors,
                "handler_applied": consumer.total.applied,
            }
        )
        if tally.examples:
            result.extra["differences"] = tally.examples
        result.expect(
            parked_reasons == expected_reasons,
            "hostile records parked with other reasons than they were made for",
        )
        result.expect(stats.function_errors == 0, "the handler raised on hostile input")
        result.expect(
            traced_growth <= self.max_traced_growth_kb,
            f"the handler kept {traced_growth:.0f} KB more after each pass of the same records",
        )
        result.expect(
            growth <= self.max_rss_growth_mb,
            f"the handler's process grew {growth:.1f} MB over the run",
        )
        return result


HOSTILE = HostileScenario()
SCENARIOS = (HOSTILE,)
