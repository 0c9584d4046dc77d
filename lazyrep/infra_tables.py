"""DynamoDB tables in the templates: data tables, the tombstone table, the status table.

Every table is on demand, encrypted at rest (SSE with KMS: `SSEEnabled`), with point
in time recovery and deletion protection, and kept when its stack goes (Retain): it
holds the data. Key schemas come from the topology, so a template cannot disagree
with what producers and consumers validate records against.
"""

from __future__ import annotations

from binlog.applier import TOMBSTONE_EXPIRES, TOMBSTONE_KEY
from binlog.topology import KeySchema
from kcl_consumer.status import STATUS_EXPIRES, STATUS_KEY
from lazyrep.infra_cfn import Json, retained


def _table(
    name: str,
    attributes: list[tuple[str, str]],
    keys: list[tuple[str, str]],
    ttl_attribute: str | None = None,
) -> Json:
    properties: Json = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": t} for a, t in attributes],
        "KeySchema": [{"AttributeName": a, "KeyType": k} for a, k in keys],
        "SSESpecification": {"SSEEnabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "DeletionProtectionEnabled": True,
    }
    if ttl_attribute is not None:
        properties["TimeToLiveSpecification"] = {"AttributeName": ttl_attribute, "Enabled": True}
    return retained({"Type": "AWS::DynamoDB::Table", "Properties": properties})


def data_table(name: str, schema: KeySchema) -> Json:
    """A primary or replica table with the topology's key schema."""
    keys = [(schema.partition.name, "HASH")]
    if schema.sort is not None:
        keys.append((schema.sort.name, "RANGE"))
    return _table(name, [(a.name, a.type) for a in schema.attributes], keys)


def tombstone_table(name: str) -> Json:
    """The applier's tombstones (binlog/tables.py): binary key `k`, TTL on `expires`."""
    return _table(name, [(TOMBSTONE_KEY, "B")], [(TOMBSTONE_KEY, "HASH")], TOMBSTONE_EXPIRES)


def status_table(name: str) -> Json:
    """A replica's progress table (kcl_consumer/status.py): key `shard_id`, TTL `expires`.

    Created by the stack, so the worker's role needs no CreateTable/UpdateTimeToLive.
    Its items expire on their own: no point in time recovery needed, but it costs little.
    """
    return _table(name, [(STATUS_KEY, "S")], [(STATUS_KEY, "HASH")], STATUS_EXPIRES)
