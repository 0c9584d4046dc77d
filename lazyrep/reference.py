"""The reference model: each action applied once, in order, with plain DynamoDB calls.

What the binlog means, computed the simplest way; the reliability suite, the demo's
checks and the tests compare the appliers' tables with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

_SERIALIZER = TypeSerializer()


def _typed(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _SERIALIZER.serialize(v) for k, v in values.items()}


def apply_plainly(client: Any, table: str, method: str, kwargs: Mapping[str, Any]) -> None:
    """Apply one SDK call (`put_item`, `update_item`, `delete_item`, `batch_write`) once.

    A false condition is a no-op, as it is for the applier.
    """
    if method == "batch_write":
        for item in kwargs.get("puts", ()):
            apply_plainly(client, table, "put_item", {"item": item})
        for key in kwargs.get("deletes", ()):
            apply_plainly(client, table, "delete_item", {"key": key})
        return
    request: dict[str, Any] = {"TableName": table}
    if kwargs.get("condition"):
        request["ConditionExpression"] = kwargs["condition"]
    if kwargs.get("names"):
        request["ExpressionAttributeNames"] = dict(kwargs["names"])
    if kwargs.get("values"):
        request["ExpressionAttributeValues"] = _typed(kwargs["values"])
    if method == "put_item":
        request["Item"] = _typed(kwargs["item"])
        call = client.put_item
    else:
        request["Key"] = _typed(kwargs["key"])
        if method == "update_item":
            request["UpdateExpression"] = kwargs["update"]
            call = client.update_item
        else:
            call = client.delete_item
    try:
        call(**request)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise


def table_contents(
    client: Any, table: str, *, ignore: tuple[str, ...] = ("_lr_version", "_lr_id")
) -> dict[str, dict[str, Any]]:
    """Every item of a table by its key, without the applier's bookkeeping attributes."""
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    key_names = [
        k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]
    ]
    while True:
        page = client.scan(**kwargs)
        for item in page["Items"]:
            key = "|".join(str(item[name]) for name in key_names)
            items[key] = {k: v for k, v in item.items() if k not in ignore}
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def unordered_sets(value: Any) -> Any:
    """DynamoDB sets have no order: sort them, so tables written by different servers,
    processes or paths compare equal when they hold the same items."""
    if isinstance(value, dict):
        return {
            k: sorted(v, key=repr) if k in ("SS", "NS", "BS") else unordered_sets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [unordered_sets(v) for v in value]
    return value
