"""Create the tables a topology needs in one region: the data tables and the tombstones.

For the local stack, tests and the demo; in AWS the templates create them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from binlog.applier import TOMBSTONE_EXPIRES, TOMBSTONE_KEY
from binlog.topology import KeySchema, Topology

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)


def create_table(client: DynamoDBClient, name: str, schema: KeySchema) -> None:
    """An on-demand table with this key schema; an existing one is left as it is."""
    attrs: list[Any] = [
        {"AttributeName": a.name, "AttributeType": a.type} for a in schema.attributes
    ]
    keys: list[Any] = [{"AttributeName": schema.partition.name, "KeyType": "HASH"}]
    if schema.sort is not None:
        keys.append({"AttributeName": schema.sort.name, "KeyType": "RANGE"})
    _create(client, name, attrs, keys)


def create_tombstone_table(client: DynamoDBClient, name: str) -> None:
    """The applier's tombstones: binary key `k`, TTL on `expires`."""
    _create(
        client,
        name,
        [{"AttributeName": TOMBSTONE_KEY, "AttributeType": "B"}],
        [{"AttributeName": TOMBSTONE_KEY, "KeyType": "HASH"}],
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TOMBSTONE_EXPIRES},
    )


def create_topology_tables(
    client: DynamoDBClient, topology: Topology, *, table_map: Mapping[str, str] | None = None
) -> list[str]:
    """Every data table (renamed by `table_map`) and the tombstone table; their names."""
    names = []
    for table, schema in topology.tables.items():
        name = (table_map or {}).get(table, table)
        create_table(client, name, schema)
        names.append(name)
    create_tombstone_table(client, topology.applier.tombstone_table)
    names.append(topology.applier.tombstone_table)
    return names


def _create(client: DynamoDBClient, name: str, attrs: list[Any], keys: list[Any]) -> None:
    try:
        client.create_table(
            TableName=name,
            AttributeDefinitions=attrs,
            KeySchema=keys,
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        logger.info("table %s exists already", name)
        return
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
