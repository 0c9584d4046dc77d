"""Counting what a run lost, applied twice or left different, against the reference model.

Per item, in the tables of the run:
- `diverged`: the item differs from the reference (missing, extra, or any attribute);
- `lost`: effects the reference has and the table lacks: a missing item counts 1; an ADD
  counter or a list_append list below the reference counts the shortfall; a ledger tag
  missing from the item's log counts 1 each;
- `duplicated`: effects applied more than once: a counter or list above the reference
  counts the excess, a ledger tag that appears twice counts 1 each.
Per item the largest of its detectors counts (a ledger action moves both `n` and `log`).
Parked valid actions are not lost: the caller subtracts them (they are reported instead).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lazyrep.reliability.model import Tables
from lazyrep.reliability.workload import COUNTERS, LISTS


@dataclass(slots=True)
class Tally:
    """What the comparison found, with the first few differences named."""

    lost: int = 0
    duplicated: int = 0
    diverged: int = 0
    items: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text[:400])


def _number(value: Any) -> Decimal:
    if isinstance(value, dict) and "N" in value:
        return Decimal(value["N"])
    return Decimal(0)


def _list(value: Any) -> list[Any]:
    if isinstance(value, dict) and "L" in value:
        items: list[Any] = value["L"]
        return items
    return []


def _item_effects(table: str, ref: dict[str, Any], got: dict[str, Any]) -> tuple[int, int]:
    """(lost, duplicated) effects on one item present on both sides."""
    lost = dup = 0
    for name in COUNTERS.get(table, ()):
        diff = int(_number(got.get(name)) - _number(ref.get(name)))
        lost, dup = max(lost, -diff), max(dup, diff)
    for name in LISTS.get(table, ()):
        want, have = _list(ref.get(name)), _list(got.get(name))
        diff = len(have) - len(want)
        lost, dup = max(lost, -diff), max(dup, diff)
        if table == "ledger":
            tags = Counter(repr(v) for v in have)
            repeated = sum(n - 1 for n in tags.values() if n > 1)
            missing = sum(1 for v in want if repr(v) not in tags)
            lost, dup = max(lost, missing), max(dup, repeated)
    return lost, dup


def compare(reference: Tables, actual: Tables) -> Tally:
    """Compare every table of the run with the reference model."""
    tally = Tally()
    for table, want_items in reference.items():
        have_items = actual.get(table, {})
        for key in sorted(set(want_items) | set(have_items)):
            tally.items += 1
            want, have = want_items.get(key), have_items.get(key)
            if want == have:
                continue
            tally.diverged += 1
            if have is None:
                tally.lost += 1
                tally.note(f"{table} {key}: missing")
                continue
            if want is None:
                tally.note(f"{table} {key}: not in the reference")
                continue
            lost, dup = _item_effects(table, want, have)
            tally.lost += lost
            tally.duplicated += dup
            wrong = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
            tally.note(f"{table} {key}: differs in {wrong} (lost {lost}, applied twice {dup})")
    return tally
