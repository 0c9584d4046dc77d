"""The demo's arithmetic and verdict: percentiles, WCU per second, and when it may exit 0."""

from __future__ import annotations

import pytest

from kcl_consumer.status import ShardProgress
from lazyrep.demo_primary import percentile, spread
from lazyrep.demo_report import (
    DemoReport,
    LetterCount,
    PrimaryReport,
    ReplicaReport,
    TableCheck,
    VerifySummary,
)
from lazyrep.demo_workers import ReplicaFigures, WcuHistory, _caught_up

ROGUE = [("garbled bytes", "not_json", "rogue-1"), ("a deep item", "too_deep", "rogue-5")]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_spread_shares_an_amount_over_the_seconds_it_covers() -> None:
    bins: dict[int, float] = {}
    spread(bins, 10.5, 12.5, 100.0)
    assert bins == pytest.approx({10: 25.0, 11: 50.0, 12: 25.0})
    spread(bins, 11.0, 11.0, 5.0)  # an instant: all in its second
    assert bins[11] == pytest.approx(55.0)


def _figures(updated_ms: int, spent: float) -> ReplicaFigures:
    return ReplicaFigures(
        replica="eu",
        shards=1,
        done=0,
        applied=0,
        parked=0,
        lag_ms=0,
        rate_wcu=0.0,
        spent_wcu=spent,
        verdicts=(),
        applied_sequences={},
        updated_ms={"s0": updated_ms},
        spent_by_shard={"s0": spent},
    )


def test_wcu_history_spreads_each_shards_spending_between_reports() -> None:
    history = WcuHistory()
    history.observe(_figures(10_000, 0.0))
    history.observe(_figures(12_000, 300.0))
    history.observe(_figures(12_000, 300.0))  # the same report read again: nothing new
    assert history.bins == pytest.approx({10: 150.0, 11: 150.0})
    assert history.peak == pytest.approx(150.0)


def test_a_shard_is_caught_up_at_the_tip_with_no_backlog() -> None:
    progress = ShardProgress("s0", "eu", "w", "processing", millis_behind_latest=0)
    assert _caught_up(progress)
    behind = ShardProgress(
        "s0", "eu", "w", "processing", millis_behind_latest=0, pacer={"backlog_wcu_estimate": 40}
    )
    assert not _caught_up(behind)


def _passing() -> DemoReport:
    report = DemoReport(actions_target=100, replicas_expected=["eu"])
    report.rogue = list(ROGUE)
    report.produced, report.records = 100, 102
    report.primary = PrimaryReport(done=102, applied=100, parked=2)
    report.replicas["eu"] = ReplicaReport(
        "eu", "eu-west-1", 10.0, 60.0, 102, 100, 2, 5.0, 10.0, 3.0, 50.0, ["ok"]
    )
    report.verify["eu"] = VerifySummary(True, "none", 0, 1.0, {}, [])
    report.primary_tables["users"] = TableCheck(5, 5, True, 0, 0, 0)
    report.dead_letters = [
        LetterCount(consumer, reason, key, 1, "")
        for consumer in ("lambda:primary", "kcl:eu")
        for _, reason, key in ROGUE
    ]
    report.worker_exits = {"eu": 0}
    return report


def test_a_clean_run_exits_zero() -> None:
    report = _passing()
    assert report.problems() == []
    assert report.ok
    assert report.to_json()["ok"] is True


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (
            lambda r: r.verify.__setitem__("eu", VerifySummary(False, "none", 3, 1.0, {}, [])),
            "verify",
        ),
        (lambda r: r.dead_letters.pop(), "not parked: kcl:eu"),
        (lambda r: r.processes_left.append(4242), "left running"),
        (lambda r: r.worker_exits.__setitem__("eu", None), "exit code None"),
        (
            lambda r: r.primary_tables.__setitem__("users", TableCheck(4, 5, False, 1, 0, 0)),
            "reference model",
        ),
        (lambda r: setattr(r, "primary", PrimaryReport(done=90, parked=2)), "finished 90"),
    ],
)
def test_anything_wrong_fails_the_demo(spoil: object, problem: str) -> None:
    report = _passing()
    spoil(report)  # type: ignore[operator]
    assert not report.ok
    assert any(problem in p for p in report.problems()), report.problems()
