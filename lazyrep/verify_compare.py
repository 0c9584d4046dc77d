"""What `lazyrep verify` concludes about one key, from what each side holds: pure, no I/O.

An item is observed as its version (the applier's binary version attribute), its
action id and a digest of its content (every other attribute, in a canonical form
where set order and number spelling do not matter). Comparing the primary's and the
replica's observations, with the primary's tombstone for deleted items and the
replica's progress through the stream, gives one of five kinds, each either
explained by lag (the replica has not reached that record yet: it will converge) or
not (something lag cannot explain: an error):

- in_sync: same version, same content.
- behind: the replica holds an older version. Lag while the replica has not
  applied the primary's version.
- missing: on the primary only. Lag while the replica has not applied the
  primary's version.
- extra: on the replica only. Lag while the primary's tombstone (its delete) is
  newer than the replica's copy and the replica has not applied that delete.
- diverged: same version but other content; or the replica newer than the
  primary; or an item written outside the binlog (no version). Never lag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from binlog.attrvalue import canonical_number
from binlog.topology import KeySchema
from binlog.version import Version

DIGEST_BYTES = 16


class Kind(StrEnum):
    """How one key compares between the primary and the replica."""

    IN_SYNC = "in_sync"
    BEHIND = "behind"
    MISSING = "missing"
    EXTRA = "extra"
    DIVERGED = "diverged"


DIFFERENCES: tuple[Kind, ...] = (Kind.BEHIND, Kind.MISSING, Kind.EXTRA, Kind.DIVERGED)


class Observation(NamedTuple):
    """One side's item, reduced to what the comparison needs (kept for every scanned key)."""

    version: bytes | None  # None: the item carries no version (written outside the binlog)
    action_id: str | None
    digest: bytes  # content without the version and id attributes


class Verdict(NamedTuple):
    """The comparison's result for one key."""

    kind: Kind
    lag: bool  # True: the replica has not reached the record yet (expected, not an error)
    reason: str

    @property
    def is_error(self) -> bool:
        """A difference lag cannot explain."""
        return self.kind is not Kind.IN_SYNC and not self.lag


# -- observing items ------------------------------------------------------------------------


def observe(item: Mapping[str, Any], version_attribute: str, id_attribute: str) -> Observation:
    """Reduce a scanned item (boto3 low-level form) to its observation."""
    version = item.get(version_attribute, {}).get("B")
    action_id = item.get(id_attribute, {}).get("S")
    return Observation(
        bytes(version) if version is not None else None,
        action_id,
        item_digest(item, skip=(version_attribute, id_attribute)),
    )


def item_digest(item: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> bytes:
    """A digest equal for equal items: set order, map order and number spelling are ignored."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    digest.update(_canonical_map({k: v for k, v in item.items() if k not in skip}))
    return digest.digest()


def _frame(tag: bytes, raw: bytes) -> bytes:
    return tag + str(len(raw)).encode("ascii") + b":" + raw


def _canonical_value(value: Mapping[str, Any]) -> bytes:
    ((kind, inner),) = value.items()
    if kind == "S":
        return _frame(b"S", inner.encode("utf-8"))
    if kind == "N":
        return _frame(b"N", canonical_number(Decimal(inner)).encode("ascii"))
    if kind == "B":
        return _frame(b"B", bytes(inner))
    if kind == "BOOL":
        return b"T" if inner else b"F"
    if kind == "NULL":
        return b"0"
    if kind == "L":
        return _frame(b"L", b"".join(_canonical_value(element) for element in inner))
    if kind == "M":
        return _canonical_map(inner)
    if kind in ("SS", "NS", "BS"):
        inner_kind = kind[0]
        elements = sorted(_canonical_value({inner_kind: element}) for element in inner)
        return _frame(kind.encode("ascii"), b"".join(elements))
    raise ValueError(f"unknown attribute value type {kind!r}")


def _canonical_map(values: Mapping[str, Any]) -> bytes:
    parts = [
        _frame(b"K", name.encode("utf-8")) + _canonical_value(value)
        for name, value in sorted(values.items())
    ]
    return _frame(b"M", b"".join(parts))


def key_from_canonical(schema: KeySchema, raw: bytes) -> dict[str, dict[str, Any]]:
    """The key (boto3 low-level form) back from `binlog.partition.canonical_key` bytes.

    Scans keep only the canonical bytes of every key; findings need the key again.

    Raises:
        ValueError: the bytes are not a canonical key of this schema.
    """
    key: dict[str, dict[str, Any]] = {}
    position = 0
    for attribute in schema.attributes:
        head = f"{attribute.type}:".encode("ascii")
        if raw[position : position + 2] != head:
            raise ValueError(f"not a canonical key of this schema: {raw!r:.80}")
        colon = raw.index(b":", position + 2)
        length = int(raw[position + 2 : colon])
        value = raw[colon + 1 : colon + 1 + length]
        position = colon + 1 + length
        if attribute.type == "S":
            key[attribute.name] = {"S": value.decode("utf-8")}
        elif attribute.type == "N":
            key[attribute.name] = {"N": value.decode("ascii")}
        else:
            key[attribute.name] = {"B": value}
    if position != len(raw):
        raise ValueError(f"trailing bytes after the key: {raw!r:.80}")
    return key


def version_text(version: bytes | None) -> str | None:
    """`shardId-000000000001/4960.../0` for people and JSON; None stays None."""
    if version is None:
        return None
    try:
        return str(Version.decode(version))
    except ValueError:
        return f"malformed:{version.hex()}"


def is_valid_version(version: bytes) -> bool:
    """True if the bytes decode as a lazy-replication version."""
    try:
        Version.decode(version)
    except ValueError:
        return False
    return True


# -- classifying ----------------------------------------------------------------------------

Applied = Callable[[bytes], bool]
"""Has the replica applied the record with this version? (See verify_progress.)"""


def classify(
    primary: Observation | None,
    replica: Observation | None,
    tombstone: bytes | None,
    applied: Applied,
) -> Verdict | None:
    """Compare one key's two sides; None when neither side holds it.

    `tombstone` is the version of the primary's tombstone for the key (its latest
    delete), or None; it only matters when the primary does not hold the item.
    """
    if primary is None and replica is None:
        return None
    if primary is None:
        assert replica is not None
        return _extra(replica, tombstone, applied)
    if replica is None:
        return _missing(primary, applied)
    return _both(primary, replica, applied)


def _both(primary: Observation, replica: Observation, applied: Applied) -> Verdict:
    pv, rv = primary.version, replica.version
    same_content = primary.digest == replica.digest
    if pv is None or rv is None:
        if pv is None and rv is None and same_content:
            return Verdict(Kind.IN_SYNC, False, "")
        side = "primary" if pv is None else "replica"
        return Verdict(
            Kind.DIVERGED, False, f"the {side} item has no version: written outside the binlog"
        )
    if not is_valid_version(pv) or not is_valid_version(rv):
        return Verdict(Kind.DIVERGED, False, "a version attribute is not a lazy-replication one")
    if pv == rv:
        if same_content and primary.action_id == replica.action_id:
            return Verdict(Kind.IN_SYNC, False, "")
        what = "content" if not same_content else "action id"
        return Verdict(Kind.DIVERGED, False, f"same version, different {what}")
    if rv > pv:
        return Verdict(
            Kind.DIVERGED,
            False,
            "the replica holds a newer version than the primary (is the primary behind the "
            "stream, e.g. restored from a backup?)",
        )
    if not applied(pv):
        return Verdict(Kind.BEHIND, True, "the replica has not reached the primary's version")
    return Verdict(
        Kind.BEHIND,
        False,
        "the replica passed the primary's version in its shard but kept an older one "
        "(a parked record, or a write outside the binlog?)",
    )


def _missing(primary: Observation, applied: Applied) -> Verdict:
    pv = primary.version
    if pv is None:
        return Verdict(
            Kind.MISSING, False, "the primary item has no version: written outside the binlog"
        )
    if not is_valid_version(pv):
        return Verdict(Kind.MISSING, False, "the primary's version is not a lazy-replication one")
    if not applied(pv):
        return Verdict(Kind.MISSING, True, "the replica has not reached the primary's version")
    return Verdict(
        Kind.MISSING,
        False,
        "the replica passed the primary's version in its shard without the item "
        "(a parked record, or a delete on the replica only?)",
    )


def _extra(replica: Observation, tombstone: bytes | None, applied: Applied) -> Verdict:
    rv = replica.version
    if tombstone is None:
        return Verdict(
            Kind.EXTRA,
            False,
            "not on the primary and no tombstone there (deleted longer ago than the stream's "
            "retention, or written outside the binlog)",
        )
    if rv is not None and rv > tombstone:
        return Verdict(
            Kind.EXTRA, False, "the replica holds a version newer than the primary's delete"
        )
    if not applied(tombstone):
        return Verdict(Kind.EXTRA, True, "deleted on the primary; the replica has not reached it")
    return Verdict(
        Kind.EXTRA,
        False,
        "the replica passed the primary's delete in its shard but kept the item",
    )
