"""Shard lineage, checked once per shard per container.

Record versions order shards by their index (binlog/version.py), which is right only
if a child shard is numbered above its parents. Kinesis numbers them so; this check
makes a stream (or an emulator) that does not stop the batch instead of applying
records in the wrong order. One ListShards call per new shard id, cached for the
container's life: a shard's parents never change.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from binlog.version import check_lineage, shard_index

logger = logging.getLogger(__name__)


class ShardNotFoundError(LookupError):
    """ListShards does not list the shard the event came from (retry later)."""


class ShardLineage:
    """Verifies each shard's parents once, through one Kinesis client."""

    def __init__(self, kinesis: Any) -> None:
        self._kinesis = kinesis
        self._verified: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def verify(self, stream: str, shard_id: str) -> None:
        """Check the shard's parents (once; later calls for the same shard cost nothing).

        Raises:
            LineageError: the shard is numbered at or below a parent.
            ShardNotFoundError: the stream does not list the shard.
            ValueError: `shard_id` is not a Kinesis shard id.
            ClientError, BotoCoreError: the look-up failed (nothing is cached).
        """
        if (stream, shard_id) in self._verified:
            return
        shard = self._describe(stream, shard_id)
        check_lineage(shard_id, [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")])
        with self._lock:
            self._verified.add((stream, shard_id))
        logger.info(
            "shard %s of %s verified (parents %s, %s)",
            shard_id,
            stream,
            shard.get("ParentShardId"),
            shard.get("AdjacentParentShardId"),
        )

    def _describe(self, stream: str, shard_id: str) -> dict[str, Any]:
        """The shard's ListShards entry: one call starting just before it, else every page."""
        index = shard_index(shard_id)
        first: dict[str, Any] = {"StreamName": stream, "MaxResults": 1}
        if index > 0:
            first["ExclusiveStartShardId"] = f"shardId-{index - 1:012d}"
        page = self._kinesis.list_shards(**first)
        for shard in page.get("Shards", []):
            if shard["ShardId"] == shard_id:
                return dict(shard)
        request: dict[str, Any] = {"StreamName": stream}
        while True:
            page = self._kinesis.list_shards(**request)
            for shard in page.get("Shards", []):
                if shard["ShardId"] == shard_id:
                    return dict(shard)
            token = page.get("NextToken")
            if not token:
                raise ShardNotFoundError(f"{stream} does not list {shard_id}")
            request = {"NextToken": token}
