"""The pacer on a virtual clock: the bucket, the average, the deadline, throttling, verdicts."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from binlog.errors import PermanentError, TransientError
from binlog.topology import parse_topology
from kcl_consumer.pacer import (
    DeadlineError,
    Pacer,
    PacerConfig,
    check_deadline_fits,
    read_retention_s,
    verified_config,
)

pytestmark = pytest.mark.timeout(60)  # a pacer that never pays would loop on a virtual clock

HOUR = 3600.0
DAY = 86400.0


class Clock:
    """Virtual time: it moves when the pacer sleeps or the test advances it."""

    def __init__(self) -> None:
        self.t = 0.0
        self.wall0 = 1_700_000_000_000

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the pacer never sleeps for nothing"
        self.t += seconds

    def wall_ms(self) -> int:
        return self.wall0 + round(self.t * 1000)

    def at_ms(self, t: float) -> int:
        return self.wall0 + round(t * 1000)


def make(clock: Clock, **knobs: Any) -> Pacer:
    fields: dict[str, Any] = {"max_wcu": 100.0, "deadline_s": 6 * HOUR}
    fields.update(knobs)
    return Pacer(PacerConfig(**fields), clock=clock.clock, sleep=clock.sleep, wall_ms=clock.wall_ms)


def fixed(clock: Clock, rate: float, **knobs: Any) -> Pacer:
    """A pacer held at `rate` (min_wcu = max_wcu)."""
    return make(clock, max_wcu=rate, min_wcu=rate, **knobs)


class Shard:
    """One shard whose records arrive by `load(t)` (WCU/s), consumed the way the KCL does.

    A record per `step_s` carries that step's load. The consumer polls once a second when
    caught up, takes batches of up to `batch` records, and pays for each record before
    applying it; `order` says whether it reports a batch before ("before") or after
    ("after", as kcl_consumer/processor.py does) paying for it.
    """

    def __init__(
        self,
        clock: Clock,
        pacer: Pacer,
        load: Callable[[float], float],
        *,
        step_s: float = 10.0,
        batch: int = 1000,
        order: str = "after",
    ) -> None:
        self.clock, self.pacer, self.load = clock, pacer, load
        self.step_s, self.batch, self.order = step_s, batch, order
        self.produced = 0  # records that exist (arrived by now)
        self.applied = 0
        self.arrivals: list[float] = []
        self.sizes: list[float] = []
        self.max_lag = 0.0
        self.applied_wcu = 0.0

    def _produce_until(self, t: float) -> None:
        while (len(self.arrivals)) * self.step_s <= t:
            at = len(self.arrivals) * self.step_s
            self.arrivals.append(at)
            self.sizes.append(self.load(at) * self.step_s)

    def run(self, until: float, *, consume: bool = True) -> None:
        while self.clock.t < until:
            self._produce_until(self.clock.t)
            available = min(len(self.arrivals), self.applied + self.batch)
            if not consume or available == self.applied:
                self.clock.t = min(until, self.clock.t + 1.0)
                continue
            first, last = self.applied, available
            more = len(self.arrivals) > last
            behind = round((self.clock.t - self.arrivals[last - 1]) * 1000) if more else 0
            wcu = sum(self.sizes[first:last])
            oldest = self.clock.at_ms(self.arrivals[first])
            if self.order == "before":
                self.pacer.observe(wcu, last - first, oldest, behind)
            for k in range(first, last):
                self.pacer.acquire(self.sizes[k], self.clock.at_ms(self.arrivals[k]))
                self.max_lag = max(self.max_lag, self.clock.t - self.arrivals[k])
                self.applied_wcu += self.sizes[k]
            if self.order == "after":
                self.pacer.observe(wcu, last - first, oldest, behind)
            self.applied = last


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("max_wcu", 0, "between 0.001 and 1000000"),
        ("max_wcu", math.nan, "between 0.001 and 1000000"),
        ("retention_s", 3600, "between 86400 and 31536000"),
        ("safety_margin_s", -1, "between 0 and 86399"),
        ("deadline_s", 0.5, "between 1 and 86400"),
        ("min_wcu", 200, "between 0.001 and 100"),
        ("average_window_s", 60, "between 600 and 604800"),
        ("headroom", 1.5, "between 0 and 1"),
        ("burst_s", 0, "between 0.1 and 60"),
        ("deadline_slack", 0.9, "between 0 and 0.5"),
        ("throttle_backoff", 1.0, "between 0.1 and 0.95"),
        ("throttle_recovery_s", 0, "between 1 and 3600"),
        ("update_interval_s", -1, "between 0 and 300"),
        ("at_risk_fraction", 0, "between 0.01 and 1"),
        ("headroom", True, "between 0 and 1"),
    ],
)
def test_config_names_the_field_and_its_range(field: str, value: Any, allowed: str) -> None:
    fields: dict[str, Any] = {"max_wcu": 100.0, "deadline_s": HOUR, field: value}
    with pytest.raises(ValueError, match=re.escape(f"PacerConfig.{field} must be {allowed}, got")):
        PacerConfig(**fields)


TOPOLOGY = {
    "stream": {"name": "binlog", "region": "us-east-1", "retention_hours": 48, "shards": 4},
    "tables": {"orders": {"partition_key": {"name": "pk", "type": "S"}}},
    "safety_margin_hours": 3,
    "replicas": {"eu": {"region": "eu-west-1", "max_wcu": 200, "deadline_hours": 40}},
}


def test_from_topology_shares_max_wcu_among_the_shards() -> None:
    topology = parse_topology(TOPOLOGY)
    config = PacerConfig.from_topology(topology, "eu")
    assert (config.max_wcu, config.deadline_s) == (50.0, 40 * HOUR)
    assert (config.retention_s, config.safety_margin_s) == (48 * HOUR, 3 * HOUR)
    assert PacerConfig.from_topology(topology, "eu", shards=1).max_wcu == 200.0
    assert PacerConfig.from_topology(topology, "eu", shards=400).min_wcu == 0.5
    assert PacerConfig.from_topology(topology, "eu", headroom=0.2).headroom == 0.2
    with pytest.raises(KeyError):
        PacerConfig.from_topology(topology, "apac")
    with pytest.raises(ValueError, match="shards must be at least 1"):
        PacerConfig.from_topology(topology, "eu", shards=0)


REFUSAL = (
    "the replica's deadline of 23 h does not fit the stream's retention of 24 h minus the "
    "safety margin of 2 h (at most 22 h): records could age out of the stream before they "
    "are applied. Raise the stream's retention to at least 25 h (aws kinesis "
    "increase-stream-retention-period --retention-period-hours 25) and stream.retention_hours, "
    "or shorten the replica's deadline_hours to 22 h or less and raise its max_wcu if the "
    "shorter deadline needs more capacity"
)


def test_a_deadline_that_does_not_fit_is_refused_saying_what_to_change() -> None:
    config = PacerConfig(max_wcu=10, deadline_s=23 * HOUR, retention_s=48 * HOUR)
    check_deadline_fits(config, 25 * HOUR)  # 25 - 2 >= 23: fits
    with pytest.raises(DeadlineError) as caught:
        check_deadline_fits(config, 24 * HOUR)
    assert str(caught.value) == REFUSAL
    assert isinstance(caught.value, PermanentError)
    assert isinstance(caught.value, ValueError)
    assert not caught.value.retriable


def test_the_config_itself_refuses_a_deadline_beyond_its_retention() -> None:
    with pytest.raises(DeadlineError, match="at most 22 h"):
        PacerConfig(max_wcu=10, deadline_s=23 * HOUR)


class FakeKinesis:
    """DescribeStreamSummary only."""

    def __init__(self, hours: int | None = None, error: str | None = None) -> None:
        self.hours, self.error = hours, error
        self.calls: list[dict[str, Any]] = []

    def describe_stream_summary(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            response: Any = {
                "Error": {"Code": self.error, "Message": "no"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(response, "DescribeStreamSummary")
        return {"StreamDescriptionSummary": {"RetentionPeriodHours": self.hours}}


def test_verified_config_reads_the_streams_retention() -> None:
    config = PacerConfig(max_wcu=10, deadline_s=20 * HOUR)
    client: Any = FakeKinesis(hours=72)
    checked = verified_config(config, client, "binlog")
    assert checked.retention_s == 72 * HOUR
    assert client.calls == [{"StreamName": "binlog"}]
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/binlog"
    assert read_retention_s(client, arn) == 72 * HOUR
    assert client.calls[-1] == {"StreamARN": arn}


def test_verified_config_refuses_a_stream_whose_retention_is_too_short() -> None:
    config = PacerConfig(max_wcu=10, deadline_s=40 * HOUR, retention_s=48 * HOUR)
    client: Any = FakeKinesis(hours=24)
    with pytest.raises(DeadlineError, match="Raise the stream's retention to at least 42 h"):
        verified_config(config, client, "binlog")


@pytest.mark.parametrize(
    ("code", "error"),
    [("ResourceNotFoundException", PermanentError), ("LimitExceededException", TransientError)],
)
def test_retention_read_errors_are_translated(code: str, error: type[Exception]) -> None:
    client: Any = FakeKinesis(error=code)
    with pytest.raises(error, match=f"reading the retention of stream 'binlog': {code}: no"):
        read_retention_s(client, "binlog")


# --- the token bucket -------------------------------------------------------------------------


def test_the_bucket_starts_empty_and_waits_exactly() -> None:
    clock = Clock()
    pacer = fixed(clock, 10)
    assert pacer.acquire(10, None) == pytest.approx(1.0)
    assert pacer.acquire(5, None) == pytest.approx(0.5)
    assert clock.t == pytest.approx(1.5)


def test_an_idle_bucket_holds_burst_s_of_the_rate() -> None:
    clock = Clock()
    pacer = fixed(clock, 10, burst_s=2.0)
    clock.t += 100
    assert pacer.acquire(20, None) == 0.0  # 2 s of 10 WCU/s were saved, no more
    assert pacer.acquire(1, None) == pytest.approx(0.1)


def test_a_chunk_larger_than_the_bucket_waits_for_its_shortfall() -> None:
    clock = Clock()
    pacer = fixed(clock, 10)
    assert pacer.acquire(50, None) == pytest.approx(5.0)
    assert pacer.acquire(0, None) == 0.0


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.floats(0, 30)),  # (idle seconds before, WCU)
        min_size=1,
        max_size=40,
    ),
    st.floats(0.5, 50),
    st.floats(0.1, 5),
)
def test_no_window_gets_more_than_rate_times_length_plus_the_bucket(
    calls: list[tuple[float, float]], rate: float, burst_s: float
) -> None:
    # GIVEN any sequence of acquisitions with idle gaps WHEN each is granted
    clock = Clock()
    pacer = fixed(clock, rate, burst_s=burst_s)
    grants: list[tuple[float, float]] = []
    for idle, wcu in calls:
        clock.t += idle
        pacer.acquire(wcu, None)
        grants.append((clock.t, wcu))
    # THEN WCU granted from any grant to any later one fit rate * time + one bucket
    # (the bucket starts empty, so from time 0 it is rate * time exactly)
    for i, (start, _) in enumerate(grants):
        total = 0.0
        for end, wcu in grants[i:]:
            total += wcu
            assert total <= rate * (end - start) + rate * burst_s + max(w for _, w in calls) + 1e-6
    assert sum(w for _, w in grants) <= rate * grants[-1][0] + 1e-6


def test_a_waiting_caller_sees_the_rate_change() -> None:
    # GIVEN a caller waiting 2 s for 20 WCU at 10 WCU/s
    clock = Clock()
    pacers: list[Pacer] = []

    def sleep(seconds: float) -> None:
        clock.t += seconds
        if clock.t >= 1.0 and not pacers[0].state().throttled_recently:
            pacers[0].record_throttle()  # WHEN the replica throttles a second into the wait

    config = PacerConfig(max_wcu=10, min_wcu=10, deadline_s=HOUR)
    pacer = Pacer(config, clock=clock.clock, sleep=sleep, wall_ms=clock.wall_ms)
    pacers.append(pacer)
    # THEN the other 10 WCU are paid at 7 WCU/s
    assert pacer.acquire(20, None) == pytest.approx(1.0 + 10 / 7)


def test_back_to_back_acquisitions_run_at_exactly_the_rate() -> None:
    clock = Clock()
    pacer = fixed(clock, 8)
    for wcu in [1, 3, 2, 5, 1, 4] * 10:
        pacer.acquire(wcu, None)
    assert clock.t == pytest.approx(160 / 8)


def test_threads_share_one_bucket() -> None:
    # GIVEN 4 threads paying 100 x 1 WCU each at 2,000 WCU/s on the real clock
    pacer = Pacer(PacerConfig(max_wcu=2000, min_wcu=2000, deadline_s=HOUR))
    began = time.monotonic()

    def work() -> None:
        for _ in range(100):
            pacer.acquire(1, None)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN the 400 WCU took 0.2 s, as one bucket would allow
    assert 0.18 <= time.monotonic() - began < 0.6
    assert pacer.state().spent_wcu == 400


def test_negative_costs_are_refused() -> None:
    pacer = fixed(Clock(), 10)
    with pytest.raises(ValueError, match="wcu must be a finite number >= 0"):
        pacer.acquire(-1, None)
    with pytest.raises(ValueError, match="wcu must be a finite number >= 0"):
        pacer.acquire(math.nan, None)
    with pytest.raises(ValueError, match="batch_wcu must be a finite number >= 0"):
        pacer.observe(math.inf, 1, None, 0)


def test_suggested_chunk_is_the_bucket() -> None:
    pacer = fixed(Clock(), 40, burst_s=0.5)
    assert pacer.suggested_chunk_wcu() == 20


# --- the primary's average --------------------------------------------------------------------


@pytest.mark.parametrize("order", ["after", "before"])
def test_steady_load_sets_the_rate_to_the_average_plus_headroom(order: str) -> None:
    clock = Clock()
    pacer = make(clock)
    Shard(clock, pacer, lambda t: 5.0, order=order).run(2 * HOUR)
    state = pacer.state()
    assert state.average_arrival_wcu == pytest.approx(5.0, rel=0.01)
    assert state.rate_wcu == pytest.approx(5.25, rel=0.01)
    assert state.backlog_wcu_estimate < 5.0 * 20  # at most a poll's and a step's worth


def daily(t: float) -> float:
    """3 WCU/s on average, from 0 at midnight to 6 at noon."""
    return 3.0 * (1 - math.cos(2 * math.pi * t / DAY))


def test_the_average_over_24_h_cancels_a_daily_cycle() -> None:
    # GIVEN two days of a daily cycle, observed as it arrives (nothing paid for)
    clock = Clock()
    pacer = make(clock)
    averages = []
    for step in range(int(2 * DAY / 300)):
        t = step * 300.0
        clock.t = t + 300
        pacer.observe(daily(t) * 300, 1, clock.at_ms(t), 0, newest_arrival_ms=clock.at_ms(t + 299))
        if t >= DAY:
            averages.append(pacer.state().average_arrival_wcu)
    # THEN on the second day the average is the daily average at every hour
    assert min(averages) == pytest.approx(3.0, rel=0.01)
    assert max(averages) == pytest.approx(3.0, rel=0.01)


def test_while_warming_up_the_rate_follows_a_rising_load() -> None:
    # GIVEN a fresh pacer, 2 WCU/s for an hour then 8 WCU/s
    clock = Clock()
    pacer = make(clock)
    Shard(clock, pacer, lambda t: 2.0 if t < HOUR else 8.0).run(3 * HOUR)
    # THEN with less than a day of history it spends the recent rate, not the mean
    state = pacer.state()
    assert state.average_arrival_wcu < 6.0  # (2 + 8 + 8) / 3 at most
    assert state.rate_wcu == pytest.approx(8 * 1.05, rel=0.02)


def test_once_warm_the_rate_is_the_average_not_the_peak() -> None:
    clock = Clock()
    pacer = make(clock, deadline_s=20 * HOUR)
    shard = Shard(clock, pacer, daily)
    shard.run(2 * DAY + 12 * HOUR)  # noon of day 3: the load is at its peak, 6 WCU/s
    state = pacer.state()
    assert state.average_arrival_wcu == pytest.approx(3.0, rel=0.02)
    assert state.rate_wcu == pytest.approx(3.15, rel=0.02)
    assert shard.max_lag < 20 * HOUR


# --- the deadline -----------------------------------------------------------------------------


def test_catch_up_after_an_outage_meets_every_deadline() -> None:
    # GIVEN a day of 1 WCU/s, then the consumer stops for 3 h while the load is 4 WCU/s
    clock = Clock()
    pacer = make(clock, max_wcu=40, deadline_s=4 * HOUR)
    shard = Shard(clock, pacer, lambda t: 4.0 if DAY <= t < DAY + 3 * HOUR else 1.0)
    shard.run(DAY)
    assert pacer.rate_wcu == pytest.approx(1.05, rel=0.01)
    shard.run(DAY + 3 * HOUR, consume=False)
    # WHEN it comes back (its forecast, "the same hours yesterday", says 1 WCU/s: the
    # burst is unknown until read, but the oldest record's age is known)
    shard.run(DAY + 3 * HOUR + 60)
    assert pacer.rate_wcu > 2.0  # well above the average: it catches up
    rates = []
    while clock.t < 2 * DAY:
        shard.run(clock.t + 600)
        rates.append(pacer.rate_wcu)
    # THEN every record was applied before its arrival plus the deadline, at <= max_wcu
    assert shard.applied == len(shard.arrivals)
    assert shard.max_lag <= 4 * HOUR * 0.9 + 60  # the deadline less the slack, give or take
    assert max(rates) <= 40
    assert rates[-1] == pytest.approx(1.05 * (1 + 3 * 3 / 24), rel=0.02)  # the new average


def test_a_known_backlog_raises_the_rate_just_enough() -> None:
    # GIVEN a batch of 9,000 WCU that all arrived an hour ago, reported before it is paid for
    clock = Clock()
    clock.t = 2 * HOUR
    pacer = make(clock, max_wcu=100, deadline_s=2 * HOUR, deadline_slack=0.1)
    oldest = clock.at_ms(HOUR)
    pacer.observe(9000, 9000, oldest, 0, newest_arrival_ms=oldest)
    # THEN the rate is what applies it by the deadline less 10%: 9,000 / (1.8 h - 1 h)
    state = pacer.state()
    assert state.oldest_age_s == pytest.approx(HOUR)
    assert state.backlog_wcu_estimate == pytest.approx(9000)
    assert state.rate_wcu == pytest.approx(9000 / (0.8 * HOUR))
    assert state.required_wcu == pytest.approx(9000 / HOUR)  # exactly, without the slack
    assert state.projected_drain_s == pytest.approx(0.8 * HOUR)
    assert state.margin_to_deadline_s == pytest.approx(0.2 * HOUR)
    assert state.margin_to_retention_s == pytest.approx(0.2 * HOUR + 22 * HOUR)
    assert state.verdict == "ok"
    # WHEN it is paid for THEN it is done within the deadline less the slack (sooner, in
    # fact: the pacer cannot tell how much of a batch that arrived at one instant is paid)
    for _ in range(90):
        pacer.acquire(100, oldest)
    assert 0.4 * HOUR < clock.t - 2 * HOUR <= 0.8 * HOUR


def test_the_rate_never_exceeds_max_wcu() -> None:
    clock = Clock()
    clock.t = 2 * HOUR
    pacer = make(clock, max_wcu=10, deadline_s=2 * HOUR)
    pacer.observe(1e6, 1000, clock.at_ms(HOUR), 0)
    state = pacer.state()
    assert state.rate_wcu == 10
    assert state.verdict == "records will expire"


@pytest.mark.parametrize(
    ("backlog", "verdict"),
    [(1000, "ok"), (8.5 * 3000, "at risk"), (10.5 * 3000, "records will expire")],
)
def test_verdicts(backlog: float, verdict: str) -> None:
    # GIVEN WCU that arrived 10 min ago with a 1 h deadline: 3,000 s left, max 10 WCU/s
    clock = Clock()
    clock.t = 1000
    pacer = make(clock, max_wcu=10, deadline_s=HOUR)
    pacer.observe(backlog, 1, clock.at_ms(400), 0, newest_arrival_ms=clock.at_ms(400))
    state = pacer.state()
    assert state.required_wcu == pytest.approx(backlog / 3000)
    assert state.verdict == verdict


def test_records_past_their_deadline_will_expire() -> None:
    clock = Clock()
    clock.t = 3 * HOUR
    pacer = make(clock, max_wcu=10, deadline_s=2 * HOUR)
    pacer.observe(10, 1, clock.at_ms(0), 0, newest_arrival_ms=clock.at_ms(0))
    state = pacer.state()
    assert state.verdict == "records will expire"
    assert state.required_wcu == math.inf
    assert state.to_json()["required_wcu"] is None


def test_caught_up_and_quiet_means_no_backlog() -> None:
    # GIVEN a warm pacer whose shard went quiet (nothing arrives) at hour 26
    clock = Clock()
    pacer = make(clock)
    shard = Shard(clock, pacer, lambda t: 2.0 if t < 26 * HOUR else 0.0)
    shard.run(26 * HOUR + 60)
    clock.t += 2 * HOUR
    # THEN the same hours yesterday (2 WCU/s) are not mistaken for a backlog
    state = pacer.state()
    assert state.backlog_wcu_estimate <= 2.0 * 10 + 1e-9
    assert state.oldest_age_s <= 10
    assert state.verdict == "ok"


def test_state_to_json() -> None:
    clock = Clock()
    pacer = fixed(clock, 10)
    document = pacer.state().to_json()
    assert json.loads(json.dumps(document)) == document
    assert document == {
        "rate_wcu": 10.0,
        "average_arrival_wcu": 0.0,
        "backlog_wcu_estimate": 0.0,
        "oldest_age_s": 0.0,
        "projected_drain_s": 0.0,
        "deadline_s": 6 * HOUR,
        "margin_to_deadline_s": 6 * HOUR,
        "margin_to_retention_s": 24 * HOUR,
        "throttled_recently": False,
        "verdict": "ok",
        "required_wcu": 0.0,
        "max_wcu": 10.0,
        "ceiling_wcu": None,
        "throttles": 0,
        "spent_wcu": 0.0,
        "records_observed": 0,
    }


# --- throttling -------------------------------------------------------------------------------


def test_throttling_backs_off_at_once_and_recovers_gradually() -> None:
    clock = Clock()
    pacer = fixed(clock, 10, throttle_backoff=0.7, throttle_recovery_s=60, update_interval_s=0)
    pacer.record_throttle()
    assert pacer.rate_wcu == pytest.approx(7.0)
    clock.t += 0.5
    pacer.record_throttle()  # the same event, seen by another writer
    assert pacer.rate_wcu == pytest.approx(7.0)
    clock.t += 1.5
    pacer.record_throttle()
    assert pacer.rate_wcu == pytest.approx(4.9)
    state = pacer.state()
    assert (state.throttles, state.throttled_recently) == (3, True)
    assert state.ceiling_wcu == pytest.approx(4.9)
    clock.t += 60  # one recovery step
    assert pacer.state().rate_wcu == pytest.approx(7.0)
    clock.t += 30
    assert pacer.state().rate_wcu == pytest.approx(4.9 / 0.7**1.5)
    clock.t += 30  # two steps: 10, which is max_wcu: recovered
    state = pacer.state()
    assert state.rate_wcu == 10
    assert (state.throttled_recently, state.ceiling_wcu) == (False, None)


def test_a_throttle_empties_the_bucket() -> None:
    clock = Clock()
    pacer = fixed(clock, 10)
    clock.t += 10  # the bucket is full
    pacer.record_throttle()
    assert pacer.acquire(7, None) == pytest.approx(1.0)  # no burst: 7 WCU at 7 WCU/s


def test_throttling_never_goes_below_the_floor_or_above_max() -> None:
    clock = Clock()
    pacer = make(clock, max_wcu=10, update_interval_s=0)
    rates = []
    for _ in range(40):
        clock.t += 2
        pacer.record_throttle()
        rates.append(pacer.rate_wcu)
    assert min(rates) == pytest.approx(0.1)
    for _ in range(100):
        clock.t += 60
        rates.append(pacer.state().rate_wcu)
    assert max(rates) <= 10
    assert pacer.state().throttled_recently is False
