"""The verdict rules of `lazyrep status` (pure: no AWS)."""

from __future__ import annotations

import pytest

from lazyrep.status import ShardFigures, Verdict, assess, worst
from lazyrep.status_report import duration

DEADLINE = 20 * 3600.0
RETENTION = 24 * 3600.0


def figures(**kw: object) -> ShardFigures:
    base: dict[str, object] = {
        "ended": False,
        "caught_up": False,
        "oldest_unapplied_age_s": 60.0,
        "has_owner": True,
        "status_fresh": True,
        "pacer_drain_s": 100.0,
        "pacer_verdict": "ok",
    }
    base.update(kw)
    return ShardFigures(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "verdict", "reasons"),
    [
        ({"caught_up": True, "has_owner": False}, "ok", ()),
        ({"ended": True}, "ok", ()),
        ({}, "ok", ()),
        (
            {"oldest_unapplied_age_s": DEADLINE},
            "at risk",
            ("the oldest unapplied record misses the deadline",),
        ),
        ({"pacer_verdict": "at risk"}, "at risk", ("the pacer says at risk",)),
        ({"has_owner": False}, "at risk", ("no worker holds the lease",)),
        (
            {"status_fresh": False, "pacer_verdict": "records will expire"},
            "at risk",
            ("the worker's status is stale", "drain time unknown"),
        ),
        (
            {"pacer_drain_s": RETENTION},
            "records will expire",
            (
                "the oldest unapplied record leaves the stream before it is applied",
                "the oldest unapplied record misses the deadline",
            ),
        ),
    ],
)
def test_verdicts(kw: dict[str, object], verdict: Verdict, reasons: tuple[str, ...]) -> None:
    result = assess(figures(**kw), deadline_s=DEADLINE, retention_s=RETENTION)

    assert (result.verdict, result.reasons) == (verdict, reasons)


def test_margins_subtract_age_and_drain() -> None:
    result = assess(figures(), deadline_s=DEADLINE, retention_s=RETENTION)

    assert result.margin_to_deadline_s == DEADLINE - 160
    assert result.margin_to_retention_s == RETENTION - 160


def test_worst_and_duration() -> None:
    assert worst([]) == "ok"
    assert worst(["ok", "records will expire", "at risk"]) == "records will expire"
    assert [duration(x) for x in (None, 5, 185, -3720)] == ["-", "5.0s", "3m05s", "-1h02m"]
