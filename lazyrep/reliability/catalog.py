"""Every scenario of the suite, in the order they run; the lazy-path (KCL) families add theirs.

To add a family: a module with a `SCENARIOS` tuple of objects following
`framework.Scenario` (a name, a family, a description, `run(scale, progress)`), listed
in `_FAMILIES` below.
"""

from __future__ import annotations

from lazyrep.reliability import crashes, faults, hostile, lazy_scenarios, reshard, retention
from lazyrep.reliability.framework import Scenario

_FAMILIES = (faults, crashes, reshard, hostile, retention, lazy_scenarios)


def scenarios() -> dict[str, Scenario]:
    """Name -> scenario, in running order."""
    found: dict[str, Scenario] = {}
    for family in _FAMILIES:
        for scenario in family.SCENARIOS:
            if scenario.name in found:
                raise ValueError(f"two scenarios are named {scenario.name!r}")
            found[scenario.name] = scenario
    return found
