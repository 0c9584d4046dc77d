"""Every scenario of `lazyrep bench reliability`, small, on the session's local stack.

GIVEN one scenario of the suite (faults, crashes, reshards, hostile records, retention)
at a small scale;
WHEN it runs the same code as the benchmark;
THEN nothing was lost, nothing applied twice, no item differs from the reference model,
and the scenario's own expectations held (faults really injected, hostile records parked
with exactly the reasons they were made for, status warning before expiry...).
"""

from __future__ import annotations

import pytest

from emulators.stack import LocalStack
from lazyrep.reliability import lazy_scenarios
from lazyrep.reliability.catalog import scenarios
from lazyrep.reliability.framework import Scale
from lazyrep.reliability.primary import PrimaryScenario

pytestmark = pytest.mark.wire

SMALL = Scale(0.03)
"""About 120 actions a primary-path scenario, 300 hostile records: seconds each."""

# The lazy-path scenarios need real daemons and minutes each: tests/e2e/test_reliability_lazy.py.
LAZY = {scenario.name for scenario in lazy_scenarios.SCENARIOS}
CATALOG = {name: s for name, s in scenarios().items() if name not in LAZY}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(CATALOG))
def test_scenario_loses_nothing_and_applies_nothing_twice(stack_env: LocalStack, name: str) -> None:
    scenario = CATALOG[name]

    result = scenario.run(SMALL, lambda _: None)

    figures = result.to_json()
    assert (result.lost, result.duplicated, result.diverged) == (0, 0, 0), figures
    assert result.failures == [], figures
    assert result.produced > 0
    assert result.applied > 0
    if name == "hostile-records":
        assert figures["parked_by_reason"] == figures["expected_by_reason"]
        assert result.parked == figures["hostile"]
        assert set(figures["parked_by_reason"]) == {
            "not_json", "too_deep", "not_object", "unknown_format", "bad_field",
            "key_mismatch", "bad_value", "unauthorized_table", "item_too_large",
        }  # fmt: skip
    elif name == "retention":
        assert figures["status_verdicts"]["fed"] == "ok"
        assert figures["status_verdicts"]["starved"] in ("at risk", "records will expire")
        assert figures["warning_lead_h"] > 12
    else:
        assert result.parked == 0
        assert figures["esm"]["discarded_records"] == 0


def test_scenario_names_are_unique_and_described() -> None:
    for name, scenario in CATALOG.items():
        assert scenario.name == name
        assert scenario.family
        assert scenario.description


@pytest.mark.timeout(300)
def test_the_suite_sees_double_applies_when_there_are_some(stack_env: LocalStack) -> None:
    # GIVEN a function that writes records plainly (no version guard) and reports a
    # partial failure on every batch, so the second half of each batch comes back
    control = PrimaryScenario(
        name="negative-control", family="test", description="", mode="naive-partial"
    )

    # WHEN the scenario runs
    result = control.run(SMALL, lambda _: None)

    # THEN the redelivered ADD / list_append actions show as applied twice
    assert result.duplicated > 0, result.to_json()
    assert result.diverged > 0
    assert not result.ok
