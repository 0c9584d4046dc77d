"""The suite's workload: the demo mix plus a ledger whose every action leaves its own mark.

The demo mix (lazyrep.workload.ops_for_writer) brings puts, deletes, conditional
writes, batch writes, ADD counters (`users.visits`) and list_append (`carts.items`).
The ledger adds, per action, `ADD n 1` and `list_append(log, [tag])` with a tag unique
to the action, so after the run each ledger item says exactly which actions were
applied, how often and in which order: a double apply shows as a repeated tag and a
counter above the reference, a loss as a missing tag and a counter below it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from binlog.topology import KeyAttribute, KeySchema
from lazyrep.workload import Op, ops_for_writer

SCHEMAS: dict[str, KeySchema] = {
    "users": KeySchema(KeyAttribute("user_id", "S")),
    "orders": KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N")),
    "carts": KeySchema(KeyAttribute("cart_id", "S")),
    "ledger": KeySchema(KeyAttribute("acct_id", "S")),
}
"""The suite's tables (each name gets the run's prefix)."""

LEDGER_UPDATE = "ADD #n :one SET #log = list_append(if_not_exists(#log, :empty), :tag)"

COUNTERS: dict[str, tuple[str, ...]] = {"ledger": ("n",)}
"""Numeric attributes only ADD touches: above the reference means applied twice. Not
`users.visits`: puts and deletes of a user reset it, so a replica part-way through the
replay can hold more visits than the end state without any double apply."""
LISTS: dict[str, tuple[str, ...]] = {"carts": ("items",), "ledger": ("log",)}
"""Lists only list_append touches (carts are never put or deleted): longer than the
reference means applied twice."""


def ledger_ops(writer: int, count: int, *, prefix: str, items: int = 25) -> Iterator[Op]:
    """`count` ledger actions of one writer, each tagged `w<writer>-<n>`, on its own items."""
    rng = random.Random(writer * 7919 + 17)
    for n in range(count):
        yield Op(
            "update_item",
            f"{prefix}ledger",
            {
                "key": {"acct_id": f"w{writer}-acct-{rng.randrange(items)}"},
                "update": LEDGER_UPDATE,
                "names": {"#n": "n", "#log": "log"},
                "values": {":one": 1, ":empty": [], ":tag": [f"w{writer}-{n}"]},
            },
        )


def plan(writers: int, actions: int, *, prefix: str) -> list[list[Op]]:
    """Each writer's SDK calls, demo and ledger alternating, about `actions` records in all."""
    per_writer = max(2, actions // writers)
    plans: list[list[Op]] = []
    for writer in range(writers):
        demo = ops_for_writer(writer, 10 * per_writer, prefix=prefix)
        ledger = ledger_ops(writer, per_writer, prefix=prefix)
        ops: list[Op] = []
        count = 0
        while count < per_writer:
            source = ledger if len(ops) % 2 else demo
            op = next(source)
            ops.append(op)
            count += len(op.actions)
        plans.append(ops)
    return plans


def action_count(plans: list[list[Op]]) -> int:
    """Records the plans become (a batch write is one record per item)."""
    return sum(len(op.actions) for ops in plans for op in ops)


def topology_toml(
    run: str,
    *,
    shards: int = 2,
    region: str = "us-east-1",
    replicas: str = "",
    dead_letter: str = "sqs",
) -> str:
    """The topology of one run: stream, the four tables, tombstones, a dead-letter store
    (`sqs`: queue `<run>dlq`; `s3`: bucket `<run>-dlq`)."""
    store = f"{run}dlq" if dead_letter == "sqs" else f"{run}-dlq"
    lines = [
        f'[stream]\nname = "rel-{run}"\nregion = "{region}"\nshards = {shards}\n',
        f'[applier]\ntombstone_table = "{run}tombstones"\n',
        f'[dead_letter]\nkind = "{dead_letter}"\nname = "{store}"\n',
    ]
    for name, schema in SCHEMAS.items():
        attrs = [f'{{ name = "{a.name}", type = "{a.type}" }}' for a in schema.attributes]
        sort = f"\nsort_key = {attrs[1]}" if len(attrs) > 1 else ""
        lines.append(f"[tables.{run}{name}]\npartition_key = {attrs[0]}{sort}\n")
    return "\n".join(lines) + replicas
