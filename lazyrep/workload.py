"""A realistic, deterministic mix of actions for demos, tests and benchmarks.

Each writer owns its items (no two writers touch one item), so the order in which
one item's actions were issued is defined, and a reader can check it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from binlog.envelope import Action


@dataclass(frozen=True, slots=True)
class Op:
    """One SDK call: `method` is a producer method name, `kwargs` its arguments."""

    method: str
    table: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def actions(self) -> list[Action]:
        """The record actions this call becomes, in order."""
        if self.method == "batch_write":
            puts = [Action.PUT] * len(self.kwargs.get("puts", ()))
            return puts + [Action.DELETE] * len(self.kwargs.get("deletes", ()))
        return [
            {"put_item": Action.PUT, "update_item": Action.UPDATE, "delete_item": Action.DELETE}[
                self.method
            ]
        ]


def ops_for_writer(
    writer: int, count: int, *, seed: int = 7, items: int = 50, prefix: str = ""
) -> Iterator[Op]:
    """`count` calls on the demo topology's tables (named with `prefix`), on items only
    this writer owns."""
    rng = random.Random(seed * 1000 + writer)
    for n in range(count):
        roll = rng.random()
        item = rng.randrange(items)
        user = f"w{writer}-user-{item}"
        if roll < 0.2:
            yield Op(
                "put_item",
                f"{prefix}users",
                {
                    "item": {
                        "user_id": user,
                        "name": f"User {item}",
                        "score": Decimal(rng.randrange(10**6)) / 100,
                        "tags": {"new", f"cohort-{item % 4}"},
                        "prefs": {"lang": "en", "emails": rng.random() < 0.5},
                        "avatar": bytes([item % 256]) * 8,
                    }
                },
            )
        elif roll < 0.4:
            yield Op(
                "update_item",
                f"{prefix}users",
                {
                    "key": {"user_id": user},
                    "update": "ADD #v :one SET #s = :now",
                    "names": {"#v": "visits", "#s": "seen"},
                    "values": {":one": 1, ":now": n},
                },
            )
        elif roll < 0.5:
            yield Op(
                "update_item",
                f"{prefix}carts",
                {
                    "key": {"cart_id": f"w{writer}-cart-{item}"},
                    "update": "SET #i = list_append(if_not_exists(#i, :empty), :new)",
                    "names": {"#i": "items"},
                    "values": {":empty": [], ":new": [f"sku-{rng.randrange(1000)}"]},
                },
            )
        elif roll < 0.65:
            yield Op(
                "put_item",
                f"{prefix}orders",
                {
                    "item": {
                        "customer_id": user,
                        "order_no": n,
                        "lines": [
                            {"sku": f"sku-{rng.randrange(1000)}", "qty": rng.randrange(1, 5)}
                        ],
                        "total": Decimal(rng.randrange(100, 100_000)) / 100,
                        "status": "NEW",
                    },
                    "condition": "attribute_not_exists(customer_id)",
                },
            )
        elif roll < 0.75:
            yield Op(
                "update_item",
                f"{prefix}users",
                {
                    "key": {"user_id": user},
                    "update": "SET #e = :e",
                    "condition": "attribute_exists(user_id)",
                    "names": {"#e": "email"},
                    "values": {":e": f"{user}@example.com"},
                },
            )
        elif roll < 0.85:
            yield Op("delete_item", f"{prefix}users", {"key": {"user_id": user}})
        else:
            base = n * 10
            yield Op(
                "batch_write",
                f"{prefix}orders",
                {
                    "puts": [
                        {"customer_id": user, "order_no": base + i, "status": "IMPORTED"}
                        for i in range(rng.randrange(2, 6))
                    ],
                    "deletes": [{"customer_id": user, "order_no": base + 9}],
                },
            )


def plan_writers(writers: int, actions: int, *, seed: int = 7, prefix: str = "") -> list[list[Op]]:
    """Each writer's calls (`ops_for_writer`, cut at whole calls): about `actions` records
    in all, shared out evenly (a writer stops at the first call that reaches its share)."""
    if writers < 1 or actions < writers:
        raise ValueError(f"plan_writers needs 1 <= writers <= actions, got {writers}, {actions}")
    plans: list[list[Op]] = []
    for writer in range(writers):
        share = actions // writers + (1 if writer < actions % writers else 0)
        ops: list[Op] = []
        count = 0
        for op in ops_for_writer(writer, 10 * share, seed=seed, prefix=prefix):
            if count >= share:
                break
            ops.append(op)
            count += len(op.actions)
        plans.append(ops)
    return plans
