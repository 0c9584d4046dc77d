"""The applier's guards, merged into the user's expressions without collisions.

Pure string work, no I/O: which placeholders are free, how a condition is
AND-ed with the user's, and how our SET actions join the user's update (an
update expression may name each clause, SET/REMOVE/ADD/DELETE, only once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

# SET as a clause keyword: not part of a #name or :value placeholder or a longer word.
_SET_CLAUSE = re.compile(r"(?<![#:\w])SET(?!\w)", re.IGNORECASE | re.ASCII)


class Guard(NamedTuple):
    """Our placeholders for one record: key, version and id attribute names and values."""

    key_name: str  # "#lrk" -> the table's partition key attribute
    version_name: str  # "#lrv" -> the version attribute
    id_name: str  # "#lri" -> the envelope id attribute
    version_value: str  # ":lrv"
    id_value: str  # ":lri"


def free_guard(names: Mapping[str, str] | None, values: Mapping[str, Any] | None) -> Guard:
    """Placeholders the user's expressions do not use (`#lrk`, or `#lrk1`, ...)."""
    taken = set(names or ()) | set(values or ())
    suffix = ""
    counter = 0
    while True:
        guard = Guard(
            f"#lrk{suffix}", f"#lrv{suffix}", f"#lri{suffix}", f":lrv{suffix}", f":lri{suffix}"
        )
        if taken.isdisjoint(guard):
            return guard
        counter += 1
        suffix = str(counter)


def newer_than_stored(guard: Guard) -> str:
    """The item holds an older version and another action's id (so it exists).

    Comparisons with a missing attribute are false, so this also requires the item
    to exist and to carry a version: kept short because it guards every write.
    """
    return f"{guard.version_name} < {guard.version_value} AND {guard.id_name} <> {guard.id_value}"


def unversioned(guard: Guard) -> str:
    """The item exists but was written without a version (not by an applier)."""
    return f"attribute_exists({guard.key_name}) AND attribute_not_exists({guard.version_name})"


def missing(guard: Guard) -> str:
    """The item does not exist."""
    return f"attribute_not_exists({guard.key_name})"


def tombstone_older(guard: Guard) -> str:
    """No tombstone, or one older than this record (or this very record, written before)."""
    v, i = guard.version_name, guard.id_name
    return (
        f"attribute_not_exists({v}) OR {v} < {guard.version_value}"
        f" OR ({v} = {guard.version_value} AND {i} = {guard.id_value})"
    )


def with_user_condition(guard_condition: str, user: str | None) -> str:
    """AND the user's condition (parenthesised, so its ORs stay inside)."""
    return guard_condition if not user else f"({guard_condition}) AND ({user})"


def merge_update(update: str, guard: Guard) -> str:
    """The user's update expression plus `SET <version> = ..., <id> = ...`."""
    ours = f"{guard.version_name} = {guard.version_value}, {guard.id_name} = {guard.id_value}"
    match = _SET_CLAUSE.search(update)
    if match is None:
        return f"{update} SET {ours}"
    return f"{update[: match.end()]} {ours},{update[match.end() :]}"


def used(expression_parts: list[str | None], mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a names or values map that the given expressions mention."""
    text = " ".join(part for part in expression_parts if part)
    found = set(re.findall(r"[#:][A-Za-z0-9_]+", text))
    return {k: v for k, v in mapping.items() if k in found}
