"""The pacer's arrival history: the average, the recent rate, and the forecast of the unseen."""

from __future__ import annotations

import pytest

from kcl_consumer.pacer_history import BINS_PER_WINDOW, ArrivalHistory

DAY_MS = 86_400_000
BIN_MS = DAY_MS // BINS_PER_WINDOW  # 5 minutes
T0 = 1_700_000_100_000 // BIN_MS * BIN_MS  # a bin boundary


def hourly(history: ArrivalHistory, hours: int, rate: float | list[float]) -> None:
    """Record `hours` of arrivals, hour by hour, at WCU/s `rate` (or one rate per hour)."""
    for hour in range(hours):
        r = rate if isinstance(rate, float) else rate[hour % len(rate)]
        start = T0 + hour * 3_600_000
        history.add(r * 3600, start, start + 3_600_000)


def test_an_empty_history_knows_nothing() -> None:
    history = ArrivalHistory(86_400)
    assert history.average_wcu_s() == 0.0
    assert history.segments(T0, T0 + BIN_MS) == []
    assert not history.warm


def test_the_average_is_over_the_last_window() -> None:
    history = ArrivalHistory(86_400)
    hourly(history, 24, 2.0)
    assert history.warm
    assert history.average_wcu_s() == pytest.approx(2.0)
    hourly_more = [4.0] * 12
    for hour, rate in enumerate(hourly_more, start=24):
        start = T0 + hour * 3_600_000
        history.add(rate * 3600, start, start + 3_600_000)
    # the last 24 h: 12 h at 2 and 12 h at 4 (to a bin: the window is whole bins)
    assert history.average_wcu_s() == pytest.approx(3.0, rel=0.002)
    assert history.recent_wcu_s() == pytest.approx(4.0)


def test_old_bins_are_dropped() -> None:
    history = ArrivalHistory(86_400)
    hourly(history, 24 * 5, 1.0)
    assert len(history._bins) <= BINS_PER_WINDOW + 2
    assert history.average_wcu_s() == pytest.approx(1.0)


def test_the_unseen_is_forecast_from_the_same_hours_a_window_earlier() -> None:
    # GIVEN a day in which hour h ran at h WCU/s, then one more hour (hour 0 again)
    history = ArrivalHistory(86_400)
    rates = [float(h) for h in range(24)]
    hourly(history, 25, rates)
    newest = T0 + 25 * 3_600_000
    # WHEN asked about the next two hours, unseen
    segments = history.segments(newest, newest + 2 * 3_600_000)
    # THEN they are yesterday's hours 1 and 2, bin by bin
    assert len(segments) == 24
    assert sum(w for _, w in segments[:12]) == pytest.approx(1.0 * 3600)
    assert sum(w for _, w in segments[12:]) == pytest.approx(2.0 * 3600)
    assert [start for start, _ in segments[:2]] == [newest, newest + BIN_MS]


def test_recorded_wcu_are_returned_as_recorded() -> None:
    history = ArrivalHistory(86_400)
    history.add(600, T0, T0 + 2 * BIN_MS)  # 300 per bin
    segments = history.segments(T0 + BIN_MS // 2, T0 + 2 * BIN_MS)
    assert [start for start, _ in segments] == [T0 + BIN_MS // 2, T0 + BIN_MS]
    assert [wcu for _, wcu in segments] == pytest.approx([150, 300])


def test_a_quiet_span_is_not_forecast() -> None:
    # GIVEN a day at 1 WCU/s, and a read that reached the tip an hour after the newest record
    history = ArrivalHistory(86_400)
    hourly(history, 24, 1.0)
    newest = T0 + 24 * 3_600_000
    history.quiet_until(newest + 3_600_000)
    # THEN that hour holds nothing, the next is forecast, and the average counts the quiet hour
    quiet = history.segments(newest, newest + 3_600_000)
    assert sum(w for _, w in quiet) == 0
    after = history.segments(newest + 3_600_000, newest + 2 * 3_600_000)
    assert sum(w for _, w in after) == pytest.approx(3600)
    assert history.average_wcu_s() == pytest.approx(23 / 24, rel=0.002)


def test_while_warming_up_the_forecast_uses_the_higher_of_average_and_recent() -> None:
    history = ArrivalHistory(86_400)
    hourly(history, 3, [1.0, 1.0, 4.0])
    newest = T0 + 3 * 3_600_000
    assert not history.warm
    assert history.fallback_wcu_s() == pytest.approx(4.0)
    unseen = history.segments(newest, newest + 3_600_000)
    assert sum(w for _, w in unseen) == pytest.approx(4.0 * 3600)


def test_provisional_entries_are_replaced_by_the_observed_batch() -> None:
    history = ArrivalHistory(86_400)
    history.add(100, T0, T0 + 1000)
    history.add_provisional(50, T0 + 2000)
    history.add_provisional(50, T0 + 3000)  # paid for before their batch was observed
    assert history.newest_ms == T0 + 3000
    history.add(100, T0 + 2000, T0 + 3000)  # the batch: the same 100 WCU, counted once
    total = sum(w for _, w in history.segments(T0, T0 + 3000))
    assert total == pytest.approx(200)
