"""The reliability suite's frame: what a scenario is, what it reports, and how runs are scaled.

A scenario hurts one path of the system on the local stack and returns a `Result`:
how many actions were produced, applied and parked, and how many were lost,
applied twice or left an item different from the reference model. The last three
must be 0; `Result.ok` says so. Scenarios plug in by being listed in
`lazyrep.reliability.catalog`; the lazy-path (KCL) families add their own modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


@dataclass(frozen=True, slots=True)
class Scale:
    """How big a run is: `factor` 1.0 is the full figure run, smaller for tests and `--quick`.

    Scenarios multiply their own full-size counts by `factor` (never below their minimum).
    """

    factor: float = 1.0

    def __post_init__(self) -> None:
        if not 0.001 <= self.factor <= 10.0:
            raise ValueError(f"Scale.factor must be between 0.001 and 10, got {self.factor!r}")

    def count(self, full: int, minimum: int = 1) -> int:
        """`full` scaled, at least `minimum`."""
        return max(minimum, round(full * self.factor))


@dataclass(slots=True)
class Result:
    """One scenario's figures. `extra` holds the scenario's own (faults injected, reasons...)."""

    scenario: str
    produced: int = 0
    applied: int = 0
    parked: int = 0
    lost: int = 0
    duplicated: int = 0
    diverged: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """Scenario-specific expectations that did not hold (empty: all held)."""

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing applied twice, nothing diverged, every expectation held."""
        return self.lost == 0 and self.duplicated == 0 and self.diverged == 0 and not self.failures

    def expect(self, condition: bool, message: str) -> None:
        """Record a scenario-specific expectation; a false one makes the run fail."""
        if not condition:
            self.failures.append(message)

    def to_json(self) -> dict[str, Any]:
        """The JSON line: the common fields first, then the scenario's own."""
        doc: dict[str, Any] = {
            "scenario": self.scenario,
            "produced": self.produced,
            "applied": self.applied,
            "parked": self.parked,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "diverged": self.diverged,
            "seconds": round(self.seconds, 2),
        }
        doc.update(self.extra)
        doc["failures"] = list(self.failures)
        doc["ok"] = self.ok
        return doc


class Scenario(Protocol):
    """One way of hurting the system. `run` builds its own world (unique names) on the stack
    the environment points at, and must not raise for a finding: findings go in the Result."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str:
        """The issue's scenario number and path, e.g. `1 primary`."""
        ...

    @property
    def description(self) -> str: ...

    def run(self, scale: Scale, progress: Progress) -> Result: ...


@dataclass(frozen=True, slots=True)
class Summary:
    """Every scenario's result, and whether all held."""

    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_json(self) -> dict[str, Any]:
        totals = {
            name: sum(getattr(r, name) for r in self.results)
            for name in ("produced", "applied", "parked", "lost", "duplicated", "diverged")
        }
        return {
            "summary": True,
            "ok": self.ok,
            **totals,
            "seconds": round(sum(r.seconds for r in self.results), 2),
            "scenarios": [r.to_json() for r in self.results],
        }


def run_scenarios(
    scenarios: Mapping[str, Scenario],
    names: list[str],
    scale: Scale,
    *,
    progress: Progress = _quiet,
    each: Callable[[Result], None] | None = None,
) -> Summary:
    """Run the named scenarios in order; a scenario that raises is a failed result, not a crash.

    Raises:
        KeyError: an unknown scenario name (checked before anything runs).
    """
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        raise KeyError(f"unknown scenario {unknown[0]!r} (known: {', '.join(scenarios)})")
    results = []
    for name in names:
        began = time.monotonic()
        try:
            result = scenarios[name].run(scale, progress)
        except Exception as exc:  # a crash of the scenario is a finding, reported as such
            result = Result(name)
            result.failures.append(f"scenario raised {type(exc).__name__}: {exc}"[:2000])
        result.seconds = time.monotonic() - began
        results.append(result)
        if each is not None:
            each(result)
    return Summary(tuple(results))


@contextmanager
def timed(result: Result) -> Iterator[None]:
    """Set `result.seconds` to the time the block took."""
    began = time.monotonic()
    try:
        yield
    finally:
        result.seconds = time.monotonic() - began


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc; 0.0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
