"""The KCL application's lease table, read the way `lazyrep status` and `rewind` need it.

KCL 3.x keeps one item per shard in the table named after the application (in the
replica's region): `leaseKey` (the shard id; `account:stream:creation:shardId-...`
for multi-stream applications), `leaseOwner` (worker id), `leaseCounter` (bumped by
every renewal: a counter that moves means a live owner), `checkpoint` (a sequence
number, or TRIM_HORIZON / LATEST / AT_TIMESTAMP / SHARD_END) and
`checkpointSubSequenceNumber`, plus fields we leave alone (parentShardIds,
pendingCheckpoint, ownerSwitchesSinceCheckpoint, checkpointOwner, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from binlog.awserrors import classify

SHARD_END = "SHARD_END"
SENTINELS = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", SHARD_END})


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease as the KCL wrote it."""

    lease_key: str
    shard_id: str
    checkpoint: str | None
    checkpoint_subsequence: int
    owner: str | None
    counter: int | None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Lease:
        """Read a low-level DynamoDB item (attribute-value form)."""
        key = str(item["leaseKey"]["S"])
        counter = item.get("leaseCounter", {}).get("N")
        return cls(
            lease_key=key,
            shard_id=key.rsplit(":", 1)[-1],
            checkpoint=item.get("checkpoint", {}).get("S"),
            checkpoint_subsequence=int(item.get("checkpointSubSequenceNumber", {}).get("N", "0")),
            owner=item.get("leaseOwner", {}).get("S") or None,
            counter=None if counter is None else int(counter),
        )

    def describe(self) -> str:
        """`checkpoint 123/0, owner w-1, leaseCounter 7` for people."""
        checkpoint = self.checkpoint or "none"
        if self.checkpoint and self.checkpoint.isdigit():
            checkpoint = f"{checkpoint}/{self.checkpoint_subsequence}"
        owner = self.owner or "none"
        counter = "none" if self.counter is None else str(self.counter)
        return f"checkpoint {checkpoint}, owner {owner}, leaseCounter {counter}"


def read_leases(client: Any, table: str) -> dict[str, Lease] | None:
    """Every lease by shard id (consistent read); None when the table does not exist.

    Raises:
        ClientError, BotoCoreError: the table exists but cannot be read.
    """
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    leases: dict[str, Lease] = {}
    while True:
        try:
            page = client.scan(**request)
        except ClientError as exc:
            if classify(exc).code == "ResourceNotFoundException":
                return None
            raise
        for item in page.get("Items", []):
            if "leaseKey" in item:
                lease = Lease.from_item(item)
                leases[lease.shard_id] = lease
        if "LastEvaluatedKey" not in page:
            return leases
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
