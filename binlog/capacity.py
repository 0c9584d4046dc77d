"""Write capacity units: what applying one record costs the table it writes, as DynamoDB bills it.

DynamoDB charges one WCU per 1 KB (1,024 bytes) of item size, rounded up, at least
one per write, where an item's size is the UTF-8 length of its attribute names
plus the size of its values (binlog/attrvalue.py measures values the same way).
Our applier stores two attributes of its own on every item it writes: the
record's version (binary, 34 bytes for AWS's 56-digit sequence numbers) and the
envelope id (a string), so their names and values count too.

What is known exactly and what is estimated (the pacer runs this per record, so
it never reads the table):
- PutItem: the new item's size. DynamoDB bills the larger of the old and the new
  item; a smaller item replacing a larger one costs more than estimated.
- UpdateItem: the post-image is unknown. Estimated as the key, the attribute names
  the update expression writes (placeholders resolved) and the values it uses,
  plus the applier's two attributes. Attributes the update leaves alone count in
  DynamoDB's bill but not here, so wide items updated a field at a time are
  underestimated; the pacer backs off when the replica throttles all the same.
- DeleteItem: DynamoDB bills the deleted item's size, unknown here: estimated as
  the key plus the applier's two attributes (usually 1 WCU). With `tombstones`
  (the default) the applier's tombstone write (binlog/applier.py writes it before
  deleting) is added: one more small item, normally 1 WCU.
Conditional writes that fail cost the same capacity as if they succeeded, so
stale redeliveries are charged too. Index (GSI/LSI) writes are not counted.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from binlog.envelope import Action, Envelope

WCU_BYTES = 1024
"""DynamoDB: one write capacity unit covers one write per second of an item up to 1 KB."""

VERSION_VALUE_BYTES = 34
"""The applier's version for an AWS sequence number (56 digits): 5 + 1 + 24 + 4 bytes."""

_EXPIRES_NAME_AND_VALUE = len("expires") + 6  # a 10-digit epoch second is 6 bytes as N
_TOMBSTONE_KEY_NAME = 1  # "k"
_CANONICAL_KEY_OVERHEAD = 8  # "S:12:" framing per key attribute, roughly

# Words of the update-expression grammar that are not attribute names.
_KEYWORDS = frozenset(
    {
        "SET",
        "REMOVE",
        "ADD",
        "DELETE",
        "if_not_exists",
        "list_append",
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "begins_with",
        "contains",
        "size",
        "AND",
        "OR",
        "NOT",
        "BETWEEN",
        "IN",
    }
)
# A bare name in an expression: not a `#name` or `:value` placeholder, not a keyword.
_BARE_NAME = re.compile(r"(?<![#:\w])([A-Za-z_][A-Za-z0-9_]*)")


def units_for_bytes(size: int) -> int:
    """WCU for one write of an item of `size` bytes: 1 KB rounded up, at least 1."""
    return max(1, -(-size // WCU_BYTES))


def write_units(
    envelope: Envelope,
    *,
    version_attribute: str = "_lr_version",
    id_attribute: str = "_lr_id",
    tombstones: bool = True,
) -> int:
    """The WCU applying this record costs the replica (exact for puts, estimated otherwise).

    See the module docstring for what is estimated. `version_attribute` and
    `id_attribute` are the applier's names (ApplierConfig); `tombstones=False`
    leaves out the tombstone a delete writes to the tombstone table.
    """
    overhead = (
        len(version_attribute.encode("utf-8"))
        + VERSION_VALUE_BYTES
        + len(id_attribute.encode("utf-8"))
        + len(envelope.id.encode("utf-8"))
    )
    if envelope.action is Action.PUT:
        return units_for_bytes(item_size(envelope.item or envelope.key) + overhead)
    key_size = item_size(envelope.key)
    if envelope.action is Action.UPDATE:
        size = key_size + overhead + _update_size(envelope)
        return units_for_bytes(size)
    units = units_for_bytes(key_size + overhead)
    if tombstones:
        tombstone = (
            _TOMBSTONE_KEY_NAME
            + len(envelope.table.encode("utf-8"))
            + 1
            + key_size
            + _CANONICAL_KEY_OVERHEAD * len(envelope.key)
            + overhead
            + _EXPIRES_NAME_AND_VALUE
        )
        units += units_for_bytes(tombstone)
    return units


def _update_size(envelope: Envelope) -> int:
    """Names the update expression writes (each once) and the values it carries."""
    names: set[str] = set((envelope.names or {}).values())
    if envelope.update:
        names.update(n for n in _BARE_NAME.findall(envelope.update) if n not in _KEYWORDS)
    names.difference_update(envelope.key)
    size = sum(len(name.encode("utf-8")) for name in names)
    for value in (envelope.values or {}).values():
        size += value_size(value)
    return size


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB measures it: names plus values (boto3 form, binary as bytes).

    The item is trusted (decoded envelopes are validated already): nothing is checked,
    so this is several times cheaper than binlog.attrvalue's validating walk, and
    agrees with it on every valid item.
    """
    size = 0
    for name, value in item.items():
        size += len(name.encode("utf-8")) + value_size(value)
    return size


def value_size(value: Mapping[str, Any]) -> int:
    """One attribute value's size (see `item_size`)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        # 3 bytes for the map, 1 per element, then the elements' names and values.
        return 3 + len(inner) + item_size(inner)
    if kind == "L":
        return 3 + len(inner) + sum(value_size(element) for element in inner)
    if kind == "SS":
        return sum(len(element.encode("utf-8")) for element in inner)
    if kind == "NS":
        return sum(number_size(element) for element in inner)
    if kind == "BS":
        return sum(_binary_size(element) for element in inner)
    raise ValueError(f"unknown attribute value type {kind!r}")


def number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1 (DynamoDB trims leading and trailing zeros)."""
    mantissa = text.lstrip("+-")
    cut = max(mantissa.find("e"), mantissa.find("E"))
    if cut >= 0:
        mantissa = mantissa[:cut]
    digits = len(mantissa.replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if isinstance(value, str):  # wire form: base64 text
        return len(base64.b64decode(value))
    # boto3.dynamodb.types.Binary keeps its bytes in `.value`.
    return len(bytes(getattr(value, "value", value)))
