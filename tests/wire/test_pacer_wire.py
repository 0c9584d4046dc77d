"""The pacer against the local stack: the applied rate, throttling, and the deadline check.

Real records are applied with the shared applier to a moto table, each chunk paid
for through the pacer first, as the replica processor does.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from binlog.applier import Applier, ApplierConfig, Outcome
from binlog.capacity import write_units
from binlog.clients import client_config, dynamodb_client, kinesis_client
from binlog.envelope import Action, Envelope
from binlog.records import Position, SourcedRecord
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema
from emulators.faultproxy import Fault, FaultProxy, Rule
from emulators.stack import LocalStack
from kcl_consumer.pacer import DeadlineError, Pacer, PacerConfig, verified_config

pytestmark = pytest.mark.wire

SCHEMA = KeySchema(KeyAttribute("pk", "S"))
HOUR = 3600.0


def _tables(client: Any) -> tuple[str, str]:
    name = f"pacer-{uuid.uuid4().hex[:8]}"
    create_table(client, name, SCHEMA)
    create_tombstone_table(client, f"{name}-tombstones")
    return name, f"{name}-tombstones"


def _records(table: str, count: int, items: int) -> list[SourcedRecord]:
    """PutItem records of 1, 2 or 3 WCU, `items` items written over and over."""
    now_ms = time.time_ns() // 1_000_000
    records = []
    for n in range(count):
        key = {"pk": {"S": f"item-{n % items}"}}
        pad = "x" * (1024 * (1 + n % 3) - 200)
        envelope = Envelope(
            f"rec-{n}", now_ms, Action.PUT, table, key, item={**key, "pad": {"S": pad}}
        )
        position = Position("shardId-000000000000", str(10**20 + n))
        records.append(SourcedRecord(envelope, position, now_ms + n))
    return records


def _paced(
    pacer: Pacer,
    applier: Applier,
    records: list[SourcedRecord],
    seconds: float,
    chunk: int = 5,
    rates: list[float] | None = None,
) -> tuple[float, float, list[Outcome]]:
    """Pay for and apply chunks for about `seconds`: (WCU applied, elapsed, outcomes)."""
    outcomes: list[Outcome] = []
    applied = 0.0
    began = time.monotonic()
    index = 0
    while index < len(records) and time.monotonic() - began < seconds:
        batch = records[index : index + chunk]
        wcu = sum(write_units(r.envelope) for r in batch)
        pacer.acquire(wcu, batch[0].arrival_ms)
        results = applier.apply_batch(batch)
        outcomes += [r.outcome for r in results]
        if any(r.code == "ProvisionedThroughputExceededException" for r in results):
            pacer.record_throttle()
        applied += wcu
        index += len(batch)
        if rates is not None:
            rates.append(pacer.rate_wcu)
    return applied, time.monotonic() - began, outcomes


def test_the_applied_rate_is_the_target(stack_env: LocalStack) -> None:
    # GIVEN a pacer held at 150 WCU/s in front of the applier and a moto table
    client = dynamodb_client(region="us-east-1", config=client_config(pool=16))
    table, tombstones = _tables(client)
    applier = Applier(
        client, {table: SCHEMA}, config=ApplierConfig(tombstone_table=tombstones, max_workers=8)
    )
    records = _records(table, 1000, items=50)
    pacer = Pacer(PacerConfig(max_wcu=150, min_wcu=150, deadline_s=HOUR))
    try:
        # WHEN records are applied for 2.5 s
        applied, elapsed, outcomes = _paced(pacer, applier, records, 2.5)
    finally:
        applier.close()
    # THEN every one was applied, at 95-100% of the target (never above it)
    assert set(outcomes) == {Outcome.APPLIED}
    assert 0.95 <= applied / elapsed / 150 <= 1.0


def test_throttling_slows_the_pacer_down_until_it_stops(
    stack_env: LocalStack, local_stack: LocalStack
) -> None:
    # GIVEN the applier reaching moto through a proxy that throttles half the PutItems,
    # with no botocore retries so that every throttle reaches the processor
    with FaultProxy(upstream=local_stack.endpoints.dynamodb, seed=7) as proxy:
        config = Config(retries={"mode": "standard", "total_max_attempts": 1})
        client: Any = boto3.client("dynamodb", endpoint_url=proxy.url, config=config)
        table, tombstones = _tables(client)
        applier = Applier(
            client, {table: SCHEMA}, config=ApplierConfig(tombstone_table=tombstones, max_workers=4)
        )
        records = _records(table, 2000, items=50)
        pacer = Pacer(
            PacerConfig(
                max_wcu=100,
                min_wcu=100,
                deadline_s=HOUR,
                throttle_recovery_s=1,
                update_interval_s=0,
            )
        )
        try:
            proxy.set_rules([Rule(Fault.THROTTLE, "PutItem", probability=0.5)])
            # WHEN the replica throttles for a while (one backoff: throttles within a
            # second of it are the same event)
            rates: list[float] = []
            _, _, outcomes = _paced(pacer, applier, records[:500], 0.8, rates=rates)
            throttled = pacer.state()
            # AND then stops throttling for 1.5 recovery steps
            proxy.clear()
            _paced(pacer, applier, records[500:], 1.5)
        finally:
            applier.close()
        assert Outcome.RETRY in outcomes
        assert proxy.stats.faults(Fault.THROTTLE, "PutItem") > 0
    # THEN the rate fell to 70% of the target at once, and came back to it
    assert throttled.throttled_recently
    assert min(rates) == pytest.approx(0.7 * 100)
    recovered = pacer.state()
    assert recovered.rate_wcu == 100
    assert not recovered.throttled_recently


def test_the_deadline_is_checked_against_the_streams_retention(stack_env: LocalStack) -> None:
    # GIVEN a stream with the default 24 h retention
    kinesis = kinesis_client(region="us-east-1")
    stream = f"pacer-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    # WHEN a replica configured for a 48 h stream wants a 40 h deadline THEN it is refused
    config = PacerConfig(max_wcu=10, deadline_s=40 * HOUR, retention_s=48 * HOUR)
    with pytest.raises(DeadlineError, match="Raise the stream's retention to at least 42 h"):
        verified_config(config, kinesis, stream)
    # AND a 20 h deadline fits, with the retention the stream really has
    fits = PacerConfig(max_wcu=10, deadline_s=20 * HOUR, retention_s=48 * HOUR)
    assert verified_config(fits, kinesis, stream).retention_s == 24 * HOUR
