"""`lazyrep verify --repair`: rewrite what lag cannot explain from the primary, guarded.

Most repairs go through the shared applier as a synthetic record carrying the
primary's version and action id, exactly the record the replica should have applied:
- missing, or behind (and the replica passed that version): a PutItem of the
  primary's item. The applier writes it only over an older or unversioned item, and
  not at all when the replica's tombstone says a newer delete happened, so a replica
  consumer running meanwhile is never overtaken.
- extra, with the primary's tombstone newer than the replica's copy: a DeleteItem at
  the tombstone's version (the applier writes the replica's tombstone first).
The applier skips a record whose version the item already holds (that is how it
stays idempotent), so a same-version divergence is rewritten by
`overwrite_same_version`: a put of the primary's item conditional on the replica
still holding exactly that version.

Not repaired, with the reason: an item the primary holds without a version (written
outside the binlog), a replica holding a newer version than the primary (the primary
is what is behind: replay the stream into it), an extra item no delete explains.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from binlog.applier import Applier, ApplierConfig, Outcome
from binlog.awserrors import classify
from binlog.envelope import Action, Envelope
from binlog.expressions import free_guard
from binlog.records import Position, SourcedRecord
from binlog.topology import ReplicaTarget, Topology
from binlog.version import Version
from lazyrep.verify_compare import Kind, Verdict, is_valid_version

ORIGIN = "lazyrep-verify-repair"
_UNEXPLAINED_EXTRA = (
    "no delete on the primary explains it: delete it by hand if it should not exist"
)


class RepairOutcome(StrEnum):
    """What a repair did to one item."""

    REPAIRED = "repaired"
    STALE = "skipped_stale"  # the replica moved on meanwhile: the next verify judges it
    NOT_REPAIRABLE = "not_repairable"
    FAILED = "failed"


class RepairResult(NamedTuple):
    """A repair's outcome and why."""

    outcome: RepairOutcome
    detail: str = ""


class Tombstone(NamedTuple):
    """The primary's record of an item's latest delete."""

    version: bytes
    action_id: str | None


def overwrite_same_version(
    client: Any, table: str, item: Mapping[str, Any], version_attribute: str, version: bytes
) -> bool:
    """Put `item` (which carries `version`) only if the replica's item still holds `version`.

    True if written; False if the replica's item changed meanwhile (nothing written).
    """
    guard = free_guard(None, None)
    try:
        client.put_item(
            TableName=table,
            Item=dict(item),
            ConditionExpression=f"{guard.version_name} = {guard.version_value}",
            ExpressionAttributeNames={guard.version_name: version_attribute},
            ExpressionAttributeValues={guard.version_value: {"B": version}},
        )
    except ClientError as exc:
        if classify(exc).code != "ConditionalCheckFailedException":
            raise
        return False
    return True


class Repairer:
    """Repairs one replica's items from the primary's (see the module docstring)."""

    def __init__(self, replica_client: Any, topology: Topology, replica: ReplicaTarget) -> None:
        self._client = replica_client
        self._replica = replica
        self._config = ApplierConfig.from_topology(topology, max_workers=1)
        self._applier = Applier(
            replica_client, topology.tables, table_map=replica.tables, config=self._config
        )

    def close(self) -> None:
        """Release the applier's threads."""
        self._applier.close()

    def repair(
        self,
        table: str,
        key: dict[str, Any],
        verdict: Verdict,
        primary_item: Mapping[str, Any] | None,
        replica_item: Mapping[str, Any] | None,
        tombstone: Tombstone | None,
    ) -> RepairResult:
        """Make the replica's item of `key` in primary table `table` what the primary says."""
        version_attribute = self._config.version_attribute
        pv = _version(primary_item, version_attribute)
        rv = _version(replica_item, version_attribute)
        if verdict.kind is Kind.EXTRA:
            if tombstone is None or (rv is not None and rv > tombstone.version):
                return RepairResult(RepairOutcome.NOT_REPAIRABLE, _UNEXPLAINED_EXTRA)
            action_id = tombstone.action_id or f"repair-{tombstone.version.hex()}"
            return self._apply(table, key, Action.DELETE, tombstone.version, action_id, None)
        if primary_item is None:
            return RepairResult(RepairOutcome.NOT_REPAIRABLE, "the primary no longer holds it")
        if pv is None:
            return RepairResult(
                RepairOutcome.NOT_REPAIRABLE,
                "the primary item has no version (written outside the binlog)",
            )
        if not is_valid_version(pv) or (rv is not None and not is_valid_version(rv)):
            return RepairResult(RepairOutcome.NOT_REPAIRABLE, "a version is malformed")
        if rv is not None and rv > pv:
            return RepairResult(
                RepairOutcome.NOT_REPAIRABLE,
                "the replica is newer than the primary: replay the stream into the primary",
            )
        if rv is not None and rv == pv:
            target = self._replica.replica_table(table)
            if overwrite_same_version(self._client, target, primary_item, version_attribute, pv):
                return RepairResult(RepairOutcome.REPAIRED, "rewritten at the same version")
            return RepairResult(RepairOutcome.STALE, "the replica's item changed meanwhile")
        content = {
            name: value
            for name, value in primary_item.items()
            if name not in (version_attribute, self._config.id_attribute)
        }
        action_id = primary_item.get(self._config.id_attribute, {}).get("S")
        return self._apply(table, key, Action.PUT, pv, action_id or f"repair-{pv.hex()}", content)

    def _apply(
        self,
        table: str,
        key: dict[str, Any],
        action: Action,
        version: bytes,
        action_id: str,
        item: dict[str, Any] | None,
    ) -> RepairResult:
        decoded = Version.decode(version)
        envelope = Envelope(
            id=action_id,
            time_ms=int(time.time() * 1000),
            action=action,
            table=table,
            key=key,
            item=item,
            origin=ORIGIN,
        )
        position = Position(
            f"shardId-{decoded.shard_index:012d}",
            str(decoded.sequence_number),
            decoded.subsequence_number,
        )
        result = self._applier.apply(SourcedRecord(envelope, position))
        if result.outcome is Outcome.APPLIED:
            return RepairResult(RepairOutcome.REPAIRED, f"{action.value} at {decoded}")
        if result.outcome is Outcome.STALE:
            return RepairResult(
                RepairOutcome.STALE, "the replica holds this version or a newer one"
            )
        return RepairResult(
            RepairOutcome.FAILED, f"{result.outcome.value}: {result.code} {result.message}".strip()
        )


def _version(item: Mapping[str, Any] | None, attribute: str) -> bytes | None:
    if item is None:
        return None
    raw = item.get(attribute, {}).get("B")
    return bytes(raw) if raw is not None else None
