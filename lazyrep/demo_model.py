"""The demo's reference model in plain Python: what the tables hold once every call is applied.

`lazyrep.reference` computes the same with real DynamoDB calls, which on the local stack
would cost the moto server another write per action while the primary and both replicas
compete for it. The demo workload (`lazyrep.workload.ops_for_writer`) uses a handful of
expression shapes, so this model knows exactly those and refuses anything else;
tests/unit/test_demo_model.py checks it against `lazyrep.reference` on in-process moto.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from binlog.topology import KeySchema
from lazyrep.workload import Op

Plain = dict[str, Any]
Tables = dict[str, dict[tuple[Any, ...], Plain]]

_SERIALIZER = TypeSerializer()
_ADD_SET = re.compile(r"^ADD (#\w+) (:\w+) SET (#\w+) = (:\w+)$")
_SET = re.compile(r"^SET (#\w+) = (:\w+)$")
_APPEND = re.compile(r"^SET (#\w+) = list_append\(if_not_exists\((#\w+), (:\w+)\), (:\w+)\)$")
_EXISTS = re.compile(r"^attribute_exists\((\w+)\)$")
_NOT_EXISTS = re.compile(r"^attribute_not_exists\((\w+)\)$")


class ModelError(ValueError):
    """A call this model does not know (the workload grew: teach the model, or use moto)."""


def _key(schema: KeySchema, item: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(item[attribute.name] for attribute in schema.attributes)


def _condition_holds(condition: str | None, current: Plain | None) -> bool:
    if not condition:
        return True
    if match := _EXISTS.match(condition):
        return current is not None and match.group(1) in current
    if match := _NOT_EXISTS.match(condition):
        return current is None or match.group(1) not in current
    raise ModelError(f"condition {condition!r} is not one the demo model knows")


def _updater(
    update: str, names: Mapping[str, str], values: Mapping[str, Any]
) -> Callable[[Plain], None]:
    """The update expression as a function that changes an item in place."""
    if match := _ADD_SET.match(update):
        added, amount, assigned, value = match.groups()

        def add_and_set(item: Plain) -> None:
            item[names[added]] = Decimal(item.get(names[added], 0)) + Decimal(values[amount])
            item[names[assigned]] = values[value]

        return add_and_set
    if match := _APPEND.match(update):
        target, source, empty, new = match.groups()

        def append(item: Plain) -> None:
            item[names[target]] = list(item.get(names[source], values[empty])) + list(values[new])

        return append
    if match := _SET.match(update):
        assigned, value = match.groups()

        def assign(item: Plain) -> None:
            item[names[assigned]] = values[value]

        return assign
    raise ModelError(f"update {update!r} is not one the demo model knows")


def apply_op(tables: Tables, schemas: Mapping[str, KeySchema], op: Op) -> None:
    """Apply one SDK call to `tables` as DynamoDB would (a false condition changes nothing).

    Raises:
        ModelError: the call uses an expression this model does not know.
    """
    schema = schemas[op.table]
    table = tables.setdefault(op.table, {})
    kwargs = op.kwargs
    if op.method == "batch_write":
        for item in kwargs.get("puts", ()):
            table[_key(schema, item)] = dict(item)
        for key in kwargs.get("deletes", ()):
            table.pop(_key(schema, key), None)
        return
    if op.method == "put_item":
        key = _key(schema, kwargs["item"])
        if _condition_holds(kwargs.get("condition"), table.get(key)):
            table[key] = dict(kwargs["item"])
        return
    key = _key(schema, kwargs["key"])
    current = table.get(key)
    if not _condition_holds(kwargs.get("condition"), current):
        return
    if op.method == "delete_item":
        table.pop(key, None)
        return
    if op.method != "update_item":
        raise ModelError(f"method {op.method!r} is not one the demo model knows")
    item = dict(kwargs["key"]) if current is None else dict(current)
    _updater(kwargs["update"], kwargs.get("names") or {}, kwargs.get("values") or {})(item)
    table[key] = item


def expected_tables(
    plans: Iterable[Iterable[Op]], schemas: Mapping[str, KeySchema]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every writer's calls applied in order, shaped as `lazyrep.reference.table_contents`
    returns a table (key text -> attribute-value item), for every table in `schemas`."""
    tables: Tables = {name: {} for name in schemas}
    for ops in plans:  # writers own their items: applying writer after writer is exact
        for op in ops:
            apply_op(tables, schemas, op)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, items in tables.items():
        schema = schemas[name]
        rows: dict[str, dict[str, Any]] = {}
        for item in items.values():
            typed = {k: _SERIALIZER.serialize(v) for k, v in item.items()}
            rows["|".join(str(typed[a.name]) for a in schema.attributes)] = typed
        out[name] = rows
    return out


