"""How far the replica has applied the stream, shard by shard: what lag can explain.

The authority is the replica's KCL application: its lease table (named after the
application, in the replica's region) holds one checkpoint per shard, and our
processor checkpoints only what it has applied. A record at or below its shard's
checkpoint is applied; above it, it is lag. The versions stored in the replica's
items are no measure of that: a backfill or a repair writes the primary's versions,
far ahead of where the replica's consumer is.

Shards without a lease: an ancestor of a leased shard is done (the KCL starts a
child only after its parents end, and deletes finished parents' leases); a shard
that is no longer listed but numbered below the newest listed one has left the
stream's retention (its records are applied or lost: not lag); any other shard has
not been started (lag).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from binlog.awserrors import classify
from binlog.version import Version, shard_index

logger = logging.getLogger(__name__)

SHARD_END = "SHARD_END"
NOT_STARTED_CHECKPOINTS = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"})


class LagMode(StrEnum):
    """What may be explained as lag."""

    CHECKPOINTS = "checkpoints"  # what the replica's KCL checkpoints have not reached
    NONE = "none"  # nothing: the replica should equal the primary now
    ANY = "any"  # every older or missing item, every extra item a primary delete explains


class _Mark(StrEnum):
    ENDED = "ended"
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class ReplicaProgress:
    """Per shard index: the checkpoint's version, or ended / not started."""

    mode: LagMode
    marks: Mapping[int, bytes | str] = field(default_factory=dict)
    newest_listed_shard: int = -1
    note: str = ""

    def applied(self, version: bytes) -> bool:
        """Has the replica applied the record with this version?"""
        if self.mode is LagMode.NONE:
            return True
        if self.mode is LagMode.ANY:
            return False
        try:
            index = Version.decode(version).shard_index
        except ValueError:
            return False
        mark = self.marks.get(index)
        if mark is None:
            # Unlisted and older than the newest shard: left the retention. Newer: not seen yet.
            return index <= self.newest_listed_shard
        if mark == _Mark.ENDED:
            return True
        if mark == _Mark.NOT_STARTED:
            return False
        assert isinstance(mark, bytes)
        return version <= mark

    def describe(self) -> dict[str, str]:
        """Per shard id, for reports: a version text, `ended` or `not_started`."""
        out: dict[str, str] = {}
        for index in sorted(self.marks):
            mark = self.marks[index]
            shard = f"shardId-{index:012d}"
            if isinstance(mark, bytes):
                out[shard] = str(Version.decode(mark))
            else:
                out[shard] = str(mark)
        return out


def fixed_progress(mode: LagMode, note: str = "") -> ReplicaProgress:
    """Progress that does not look at checkpoints (`--lag none` or `--lag any`)."""
    return ReplicaProgress(mode, note=note)


def progress_from_leases(
    leases: Iterable[Mapping[str, Any]], shards: Iterable[Mapping[str, Any]]
) -> ReplicaProgress:
    """Build progress from lease table items (low-level form) and ListShards' shards."""
    marks: dict[int, bytes | str] = {}
    leased: list[str] = []
    for lease in leases:
        shard_id = str(lease.get("leaseKey", {}).get("S", "")).rsplit(":", 1)[-1]
        try:
            index = shard_index(shard_id)
        except ValueError:
            logger.warning("lease %r is not a shard's: ignored", shard_id)
            continue
        leased.append(shard_id)
        checkpoint = str(lease.get("checkpoint", {}).get("S", "TRIM_HORIZON"))
        if checkpoint == SHARD_END:
            marks[index] = _Mark.ENDED
        elif checkpoint in NOT_STARTED_CHECKPOINTS or not checkpoint.isdigit():
            marks[index] = _Mark.NOT_STARTED
        else:
            sub = int(lease.get("checkpointSubSequenceNumber", {}).get("N", "0"))
            marks[index] = Version(index, int(checkpoint), sub).encode()
    parents: dict[str, list[str]] = {}
    newest = -1
    for shard in shards:
        shard_id = str(shard["ShardId"])
        index = shard_index(shard_id)
        newest = max(newest, index)
        parents[shard_id] = [
            p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
        ]
    done: set[str] = set()
    pending = [p for shard_id in leased for p in parents.get(shard_id, [])]
    while pending:
        ancestor = pending.pop()
        if ancestor not in done:
            done.add(ancestor)
            pending += parents.get(ancestor, [])
    for shard_id in parents:
        index = shard_index(shard_id)
        if index in marks:
            continue
        marks[index] = _Mark.ENDED if shard_id in done else _Mark.NOT_STARTED
    return ReplicaProgress(LagMode.CHECKPOINTS, marks, newest)


def read_progress(
    replica_dynamodb: Any, kinesis: Any, lease_table: str, stream: str
) -> ReplicaProgress:
    """Read the replica's checkpoints (consistently) and the stream's shards.

    Without a lease table (the replica's KCL application never ran) nothing can be
    explained as lag: the progress says so in its note.

    Raises:
        ClientError: the stream does not exist, or access is denied.
    """
    leases: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": lease_table, "ConsistentRead": True}
    try:
        while True:
            page = replica_dynamodb.scan(**request)
            leases += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except ClientError as exc:
        if classify(exc).code != "ResourceNotFoundException":
            raise
        return fixed_progress(
            LagMode.NONE,
            f"no lease table {lease_table!r}: the replica's KCL application has not run, so "
            "nothing is explained as lag",
        )
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        listed = kinesis.list_shards(**kwargs)
        shards += listed["Shards"]
        token = listed.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    return progress_from_leases(leases, shards)
