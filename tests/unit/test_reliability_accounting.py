"""The reliability suite's own logic, without AWS: accounting, results, the hostile generator.

The detectors must be able to fail: a table that lost an action, applied one twice, or
holds an item the reference lacks is counted as such.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from binlog.codec import decode
from binlog.errors import Reason, RecordError
from binlog.topology import load_topology
from lazyrep.reliability.accounting import compare
from lazyrep.reliability.framework import Result, Scale, Summary, run_scenarios
from lazyrep.reliability.hostile import hostile_records
from lazyrep.reliability.workload import action_count, plan, topology_toml


def ledger(tags: list[str]) -> dict[str, Any]:
    return {
        "acct_id": {"S": "a"},
        "n": {"N": str(len(tags))},
        "log": {"L": [{"S": t} for t in tags]},
    }


def tables(**items: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {"ledger": items, "users": {}, "carts": {}, "orders": {}}


def test_identical_tables_count_nothing() -> None:
    reference = tables(a=ledger(["w0-0", "w0-1"]))

    tally = compare(reference, reference)

    assert (tally.lost, tally.duplicated, tally.diverged, tally.items) == (0, 0, 0, 1)


def test_an_action_applied_twice_is_duplicated() -> None:
    tally = compare(tables(a=ledger(["w0-0", "w0-1"])), tables(a=ledger(["w0-0", "w0-1", "w0-1"])))

    assert (tally.lost, tally.duplicated, tally.diverged) == (0, 1, 1)
    assert "applied twice 1" in tally.examples[0]


def test_a_missing_action_and_a_missing_item_are_lost() -> None:
    reference = tables(a=ledger(["w0-0", "w0-1"]), b=ledger(["w0-2"]))

    tally = compare(reference, tables(a=ledger(["w0-0"])))

    assert (tally.lost, tally.duplicated, tally.diverged) == (2, 0, 2)


def test_a_double_apply_hidden_by_a_loss_is_still_seen() -> None:
    # Same length and counter, but one tag twice and another missing.
    tally = compare(tables(a=ledger(["w0-0", "w0-1"])), tables(a=ledger(["w0-0", "w0-0"])))

    assert (tally.lost, tally.duplicated) == (1, 1)


def test_lists_of_the_demo_tables_count_both_ways() -> None:
    def cart(*skus: str) -> dict[str, Any]:
        items = {"L": [{"S": s} for s in skus]}
        return {"carts": {"c": {"cart_id": {"S": "c"}, "items": items}}}

    assert compare(cart("a", "b"), cart("a", "b", "b")).duplicated == 1
    assert compare(cart("a", "b"), cart("a")).lost == 1


def test_a_counter_that_puts_reset_only_diverges() -> None:
    # users.visits above the end state: a replica part-way (a later put resets it)
    want = {"users": {"u": {"user_id": {"S": "u"}, "visits": {"N": "3"}}}}
    more = {"users": {"u": {"user_id": {"S": "u"}, "visits": {"N": "5"}}}}
    fewer = {"users": {"u": {"user_id": {"S": "u"}, "visits": {"N": "1"}}}}

    for got in (more, fewer):
        tally = compare(want, got)
        assert (tally.lost, tally.duplicated, tally.diverged) == (0, 0, 1)


def test_an_extra_item_diverges() -> None:
    tally = compare(tables(), tables(a=ledger(["w0-0"])))

    assert (tally.lost, tally.duplicated, tally.diverged) == (0, 0, 1)


def test_result_is_ok_only_with_zeros_and_kept_expectations() -> None:
    result = Result("x", produced=3, applied=3)
    assert result.ok
    result.expect(False, "the fault never fired")
    assert not result.ok
    assert result.to_json()["failures"] == ["the fault never fired"]
    assert not Result("y", duplicated=1).ok


def test_summary_lists_every_scenario_and_a_crash_is_a_failed_result() -> None:
    class Boom:
        name = "boom"
        family = "0 test"
        description = "raises"

        def run(self, scale: Scale, progress: Any) -> Result:
            raise RuntimeError("kaput")

    class Fine(Boom):
        name = "fine"

        def run(self, scale: Scale, progress: Any) -> Result:
            return Result("fine", produced=scale.count(100))

    summary = run_scenarios({"boom": Boom(), "fine": Fine()}, ["boom", "fine"], Scale(0.5))

    doc = summary.to_json()
    assert [s["scenario"] for s in doc["scenarios"]] == ["boom", "fine"]
    assert doc["ok"] is False
    assert doc["scenarios"][0]["failures"] == ["scenario raised RuntimeError: kaput"]
    assert doc["scenarios"][1]["produced"] == 50
    assert isinstance(summary, Summary)
    with pytest.raises(KeyError, match="nope"):
        run_scenarios({"fine": Fine()}, ["nope"], Scale())


def test_scale_bounds_and_minimum() -> None:
    assert Scale(0.01).count(10_000, 26) == 100
    assert Scale(0.001).count(10_000, 26) == 26
    with pytest.raises(ValueError, match="factor"):
        Scale(0)


def test_plans_are_deterministic_and_sized() -> None:
    first, second = plan(4, 400, prefix="p"), plan(4, 400, prefix="p")

    assert first == second
    assert 400 <= action_count(first) <= 440


def test_every_hostile_record_is_refused_with_the_reason_it_was_made_for(tmp_path: Path) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(topology_toml("zz"), encoding="utf-8")
    schemas = load_topology(path).tables
    records = hostile_records("zz", 1000)
    got: Counter[str] = Counter()

    for record in records:
        with pytest.raises(RecordError) as refused:
            decode(record.data, schemas)
        reason = refused.value.reason
        got["unauthorized_table" if reason is Reason.UNKNOWN_TABLE else reason.value] += 1

    assert got == Counter(r.reason for r in records)
    assert len(got) == 9
