"""The producer's I/O-free core: per-item order, batching limits, retries, linger."""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from binlog.awserrors import Failure
from binlog.envelope import Action
from producer.accumulator import Accumulator, Outcome, Pending
from producer.actions import OutgoingRecord
from producer.config import ProducerConfig

THROTTLED = Failure("ProvisionedThroughputExceededException", "slow down", retriable=True)
DENIED = Failure("AccessDeniedException", "no", retriable=False)


def record(key: str, n: int, size: int = 16) -> OutgoingRecord:
    return OutgoingRecord(f"{key}-{n}", Action.PUT, "t", key, b'{"key":{}}'.ljust(size))


def pending(key: str, n: int, at: float = 0.0, size: int = 16) -> Pending[str]:
    return Pending(record(key, n, size), f"{key}-{n}", at)


def ok(batch: list[Pending[str]]) -> list[Outcome]:
    return [("shardId-0", str(i)) for i in range(len(batch))]


def test_one_record_per_item_per_batch_and_the_next_waits_for_the_ack() -> None:
    # GIVEN three records of item a and one of item b
    acc: Accumulator[str] = Accumulator(ProducerConfig(linger_ms=0))
    for p in (pending("a", 1), pending("a", 2), pending("b", 1), pending("a", 3)):
        acc.add(p)
    # WHEN batches are taken without acknowledging the first
    first = acc.next_batch(1.0, flushing=False)
    second = acc.next_batch(1.0, flushing=False)
    # THEN the first holds a-1 and b-1 only, and nothing more may go
    assert first is not None
    assert [p.handle for p in first] == ["a-1", "b-1"]
    assert second is None
    # AND once acknowledged, a-2 goes next, alone
    resolved = acc.complete(first, ok(first), 1.0)
    assert [r.handle for r in resolved] == ["a-1", "b-1"]
    third = acc.next_batch(1.0, flushing=False)
    assert third is not None
    assert [p.handle for p in third] == ["a-2"]
    assert acc.buffered == 2


def test_a_retriable_failure_stays_at_the_head_of_its_item_after_backoff() -> None:
    acc: Accumulator[str] = Accumulator(
        ProducerConfig(linger_ms=0, backoff_base_ms=100), rng=random.Random(1)
    )
    acc.add(pending("a", 1))
    acc.add(pending("a", 2))
    batch = acc.next_batch(0.0, flushing=False)
    assert batch is not None
    assert acc.complete(batch, [THROTTLED], 0.0) == []
    # THEN during the backoff nothing of item a may be sent, not even a-2
    assert acc.next_batch(0.01, flushing=True) is None
    wait = acc.wait_s(0.0, flushing=False)
    assert wait is not None
    assert 0.05 <= wait <= 0.1
    retry = acc.next_batch(0.2, flushing=False)
    assert retry is not None
    assert [p.handle for p in retry] == ["a-1"]
    assert retry[0].attempts == 2


def test_retries_are_bounded_and_the_failure_names_the_action() -> None:
    acc: Accumulator[str] = Accumulator(ProducerConfig(linger_ms=0, max_attempts=3))
    acc.add(pending("a", 1))
    now = 0.0
    resolved = []
    for _ in range(3):
        now += 10.0
        batch = acc.next_batch(now, flushing=False)
        assert batch is not None
        resolved = acc.complete(batch, [THROTTLED], now)
    assert len(resolved) == 1
    failure = resolved[0].failure
    assert failure is not None
    assert (failure.envelope_id, failure.error_code, failure.attempts) == (
        "a-1",
        "ProvisionedThroughputExceededException",
        3,
    )
    assert acc.buffered == 0


def test_a_permanent_failure_fails_at_once_and_the_item_goes_on() -> None:
    acc: Accumulator[str] = Accumulator(ProducerConfig(linger_ms=0))
    acc.add(pending("a", 1))
    acc.add(pending("a", 2))
    batch = acc.next_batch(0.0, flushing=False)
    assert batch is not None
    (resolved,) = acc.complete(batch, [DENIED], 0.0)
    assert resolved.failure is not None
    assert resolved.failure.attempts == 1
    nxt = acc.next_batch(0.0, flushing=False)
    assert nxt is not None
    assert [p.handle for p in nxt] == ["a-2"]


def test_linger_holds_a_small_batch_until_its_time_or_a_flush() -> None:
    acc: Accumulator[str] = Accumulator(ProducerConfig(linger_ms=50))
    acc.add(pending("a", 1, at=1.0))
    assert acc.next_batch(1.01, flushing=False) is None
    wait = acc.wait_s(1.01, flushing=False)
    assert wait is not None
    assert abs(wait - 0.04) < 1e-9
    assert acc.next_batch(1.01, flushing=True) is not None


def test_record_and_byte_limits_split_batches() -> None:
    config = ProducerConfig(linger_ms=0, max_batch_records=3, max_batch_bytes=2 * 1024 * 1024)
    acc: Accumulator[str] = Accumulator(config)
    for i in range(7):
        acc.add(pending(f"k{i}", 1))
    sizes = []
    while (batch := acc.next_batch(0.0, flushing=False)) is not None:
        sizes.append(len(batch))
    assert sizes == [3, 3, 1]
    acc2: Accumulator[str] = Accumulator(ProducerConfig(linger_ms=0))
    for i in range(6):
        acc2.add(pending(f"k{i}", 1, size=1024 * 1024 - 10))
    byte_sizes = []
    while (batch := acc2.next_batch(0.0, flushing=False)) is not None:
        byte_sizes.append(len(batch))
    assert byte_sizes == [5, 1]  # 5 MiB per PutRecords


@settings(max_examples=200, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=60),
    seed=st.integers(0, 2**32),
)
def test_any_failure_schedule_keeps_per_item_order_and_settles_everything_once(
    plan: list[tuple[int, int]], seed: int
) -> None:
    """GIVEN records of six items and a random mix of successes, throttles and denials."""
    rng = random.Random(seed)
    acc: Accumulator[str] = Accumulator(
        ProducerConfig(linger_ms=0, max_attempts=4, max_batch_records=4), rng=rng
    )
    issued: dict[str, list[str]] = defaultdict(list)
    for n, (item, _) in enumerate(plan):
        key = f"item{item}"
        acc.add(pending(key, n))
        issued[key].append(f"{key}-{n}")
    succeeded: dict[str, list[str]] = defaultdict(list)
    settled: list[str] = []
    now = 0.0
    while acc.buffered:
        now += 10.0
        batch = acc.next_batch(now, flushing=True)
        assert batch is not None
        keys = [p.record.partition_key for p in batch]
        assert len(keys) == len(set(keys)), "two records of one item in flight"
        outcomes: list[Outcome] = []
        for _ in batch:
            roll = rng.random()
            outcomes.append(THROTTLED if roll < 0.4 else DENIED if roll < 0.5 else ("s", "1"))
        for resolved in acc.complete(batch, outcomes, now):
            settled.append(resolved.handle)
            if resolved.result is not None:
                succeeded[resolved.handle.rsplit("-", 1)[0]].append(resolved.handle)
    # THEN every record is settled exactly once, and successes keep the issue order
    assert sorted(settled) == sorted(h for hs in issued.values() for h in hs)
    for key, done in succeeded.items():
        assert done == [h for h in issued[key] if h in done]
        assert done == sorted(done, key=lambda h: int(h.rsplit("-", 1)[1]))
