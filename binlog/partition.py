"""Partition keys: every record of one item lands in one shard, so Kinesis keeps its order.

The key is derived from the table and the item's primary key only, and spelled the
same way by every producer in any language (docs/FORMAT.md gives the rule and
test vectors): a Go and a Python producer writing one item share its shard.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from binlog.attrvalue import canonical_number
from binlog.topology import KeySchema

_TABLE_PREFIX_CHARS = 200
_DIGEST_HEX_CHARS = 32


def canonical_key(schema: KeySchema, key: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Length-prefixed bytes naming one item: equal keys (`1.0` and `1`) give equal bytes."""
    parts: list[bytes] = []
    for attr in schema.attributes:
        value = key[attr.name][attr.type]
        if attr.type == "S":
            raw = value.encode("utf-8")
        elif attr.type == "N":
            raw = _canonical_number_text(value).encode("ascii")
        else:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
        parts.append(b"%s:%d:%s" % (attr.type.encode("ascii"), len(raw), raw))
    return b"".join(parts)


def _canonical_number_text(text: str) -> str:
    """`canonical_number`, with a fast path for integers already in canonical form."""
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit() and digits.isascii() and digits[0] != "0":
        return text
    return canonical_number(Decimal(text))


class PartitionKeyer:
    """`partition_key` for one table, with the table's share of the hash done once."""

    __slots__ = ("_prefix", "_schema", "_seed")

    def __init__(self, table: str, schema: KeySchema) -> None:
        self._schema = schema
        self._seed = hashlib.sha256(table.encode("utf-8") + b"\n")
        self._prefix = f"{table[:_TABLE_PREFIX_CHARS]}:"

    def __call__(self, key: Mapping[str, Mapping[str, Any]]) -> str:
        digest = self._seed.copy()
        digest.update(canonical_key(self._schema, key))
        return self._prefix + digest.hexdigest()[:_DIGEST_HEX_CHARS]


def partition_key(table: str, schema: KeySchema, key: Mapping[str, Mapping[str, Any]]) -> str:
    """`<table (200 chars at most)>:<32 hex of SHA-256(table, canonical key)>`, <= 233 chars."""
    digest = hashlib.sha256(table.encode("utf-8") + b"\n" + canonical_key(schema, key))
    return f"{table[:_TABLE_PREFIX_CHARS]}:{digest.hexdigest()[:_DIGEST_HEX_CHARS]}"
