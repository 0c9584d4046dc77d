"""Copy one primary item to a replica, guarded by versions: safe beside a running replica.

The copy carries the primary's version and action id attributes unchanged, so the
replica's consumer, replaying the stream from before the copy, skips the records the
copy already holds and applies the later ones. It is one conditional PutItem that
writes only over a missing item, an item without a version, or an older or equal
version: never over a newer one, so copying twice, or while the replica's KCL
application already runs, is harmless.

Equal versions are rewritten on purpose. The primary's item at version V is by
definition the state after record V; a replica consumer that ran ahead of the copy
may have applied an UpdateItem at V to an item not copied yet, leaving only the
updated attributes at V, which the copy completes. (A conditional write that fails
costs the same capacity, so this costs nothing extra.)

A missing item may be missing because the replica applied a newer delete: the
applier's rule (binlog/applier.py) is followed, looking at the replica's tombstone
after creating the item and taking the copy back if a newer delete is recorded.
Only creations pay that consistent read (one per new item).

An item without a version on the primary (written outside the binlog) is copied
only where the replica has no item at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from binlog.applier import TOMBSTONE_KEY
from binlog.awserrors import classify
from binlog.expressions import free_guard, missing, unversioned
from binlog.partition import canonical_key
from binlog.topology import KeySchema


class CopyOutcome(StrEnum):
    """What copying one item did."""

    CREATED = "created"  # the replica did not hold it
    UPDATED = "updated"  # it replaced an older or unversioned copy
    REWRITTEN = "rewritten"  # the replica held the same version: rewritten as the primary's
    STALE = "skipped_stale"  # the replica holds a newer version
    TAKEN_BACK = "taken_back"  # created, then a newer delete's tombstone showed: removed


@dataclass(frozen=True, slots=True)
class CopyTarget:
    """Where a primary table's items go on the replica, and the applier's names."""

    table: str
    schema: KeySchema
    version_attribute: str
    id_attribute: str
    tombstone_table: str


def tombstone_key(table: str, schema: KeySchema, item: Mapping[str, Any]) -> bytes:
    """The tombstone key of an item of `table` (= `binlog.applier.Applier.item_identity`)."""
    return table.encode() + b"\n" + canonical_key(schema, item)


def copy_item(client: Any, target: CopyTarget, item: Mapping[str, Any]) -> CopyOutcome:
    """Write `item` (with its version and id attributes) unless the replica is as new.

    Raises:
        ClientError: anything but the condition failing (throttling after botocore's
            retries, access denied, a missing table).
    """
    guard = free_guard(None, None)
    names = {guard.key_name: target.schema.partition.name}
    version = item.get(target.version_attribute, {}).get("B")
    values: dict[str, Any] = {}
    if version is None:
        condition = missing(guard)
    else:
        version = bytes(version)
        names[guard.version_name] = target.version_attribute
        values[guard.version_value] = {"B": version}
        condition = (
            f"{missing(guard)} OR ({unversioned(guard)}) "
            f"OR {guard.version_name} <= {guard.version_value}"
        )
    request: dict[str, Any] = {
        "TableName": target.table,
        "Item": dict(item),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ReturnValues": "ALL_OLD",
    }
    if values:
        request["ExpressionAttributeValues"] = values
    try:
        old = client.put_item(**request).get("Attributes")
    except ClientError as exc:
        if classify(exc).code != "ConditionalCheckFailedException":
            raise
        return CopyOutcome.STALE
    if old:
        same = version is not None and old.get(target.version_attribute, {}).get("B") == version
        return CopyOutcome.REWRITTEN if same else CopyOutcome.UPDATED
    if version is None:
        return CopyOutcome.CREATED
    if _tombstone_version(client, target, item) > version:
        _take_back(client, target, item, version)
        return CopyOutcome.TAKEN_BACK
    return CopyOutcome.CREATED


def _tombstone_version(client: Any, target: CopyTarget, item: Mapping[str, Any]) -> bytes:
    response = client.get_item(
        TableName=target.tombstone_table,
        Key={TOMBSTONE_KEY: {"B": tombstone_key(target.table, target.schema, item)}},
        ConsistentRead=True,
        ProjectionExpression="#v",
        ExpressionAttributeNames={"#v": target.version_attribute},
    )
    return bytes(response.get("Item", {}).get(target.version_attribute, {}).get("B", b""))


def _take_back(client: Any, target: CopyTarget, item: Mapping[str, Any], version: bytes) -> None:
    """Delete the copy just created, unless something newer has written the item since."""
    key = {a.name: item[a.name] for a in target.schema.attributes}
    with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
        client.delete_item(
            TableName=target.table,
            Key=key,
            ConditionExpression="#v = :v",
            ExpressionAttributeNames={"#v": target.version_attribute},
            ExpressionAttributeValues={":v": {"B": version}},
        )
