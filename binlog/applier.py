"""The idempotent, ordered applier shared by the primary Lambda, the lazy replicas and replay.

Every write carries the record's version (binlog/version.py) and envelope id and
is conditional on the item holding an older version and another id, so a
redelivered, replayed or producer-duplicated record is "skipped as stale" instead
of applied twice; ADD and list_append therefore never double-apply. Deleted items
leave a tombstone (its version) in a side table for the stream's retention, and
creating an item checks that tombstone before and after writing, so replaying an
old range cannot resurrect a deleted item. A user condition that fails is a
recorded no-op. `apply_batch` reads what the first record of each item needs to
know in a few BatchGetItem requests first, when the batch holds enough items, so
a creation skips its failing guarded write and its first tombstone read; the
second tombstone read of the creations that end their item's records in the batch
is one BatchGetItem for them all, after the batch's writes. See docs/APPLIER.md
for the technique and its costs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError, ParamValidationError

from binlog.applier_prefetch import BatchGetConfig, TableRead, batch_get
from binlog.awserrors import classify
from binlog.envelope import Action, Envelope
from binlog.expressions import (
    Guard,
    free_guard,
    merge_update,
    missing,
    newer_than_stored,
    tombstone_older,
    unversioned,
    used,
    with_user_condition,
)
from binlog.partition import canonical_key
from binlog.records import SourcedRecord
from binlog.topology import KeySchema, Topology

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

TOMBSTONE_KEY = "k"
TOMBSTONE_EXPIRES = "expires"
# On a tombstone: the delete that wrote it had no user condition, so once it is
# applied the item is gone (or newer). Tombstones without it prove nothing more.
TOMBSTONE_UNCONDITIONAL = "u"
_MAX_RACES = 5


class Outcome(StrEnum):
    """What applying one record did."""

    APPLIED = "applied"
    STALE = "skipped_stale"  # already applied, older than the item, or a producer duplicate
    CONDITION_FAILED = "condition_failed"  # the user's condition was false: a no-op
    PARKED = "parked"  # a permanent error: belongs in the dead-letter store
    RETRY = "retry"  # a transient error outlasted the retries: deliver again later
    NOT_ATTEMPTED = "not_attempted"  # an earlier record of the same item needs a retry


class ApplyResult(NamedTuple):
    """The outcome of one record, with the error that decided it, if any."""

    outcome: Outcome
    code: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ApplierConfig:
    """Attribute and table names, tombstone lifetime, concurrency.

    version_attribute / id_attribute: stored on every item the applier writes; tools
    that compare tables read them. tombstone_table: keyed by `k` (binary), one per
    region, TTL on `expires`. tombstone_ttl_s: at least the stream's retention.
    max_workers: items applied at once (one item's records always in order).
    prefetch_min_items: `apply_batch` prefetches items and tombstones with
    BatchGetItem when at least this many items' first records are puts or updates
    (for one item, usually an update of an existing one, it would add a request to
    the one the update needs); 0 never prefetches.
    tombstone_namespace: prefixes tombstone keys; empty for the live consumers. A
    `lazyrep replay --force` keeps its own (containing `/`, which no table name does),
    so it never reads or writes the live consumers' tombstones.
    """

    version_attribute: str = "_lr_version"
    id_attribute: str = "_lr_id"
    tombstone_table: str = "lazyrep-tombstones"
    tombstone_ttl_s: int = 8 * 24 * 3600
    max_workers: int = 16
    tombstone_namespace: str = ""
    prefetch_min_items: int = 2
    prefetch: BatchGetConfig = field(default_factory=BatchGetConfig)

    def __post_init__(self) -> None:
        for name in ("version_attribute", "id_attribute", "tombstone_table"):
            if not getattr(self, name):
                raise ValueError(f"ApplierConfig.{name} must not be empty")
        if self.version_attribute == self.id_attribute:
            raise ValueError("ApplierConfig.version_attribute and id_attribute must differ")
        if not 3600 <= self.tombstone_ttl_s <= 400 * 24 * 3600:
            raise ValueError("ApplierConfig.tombstone_ttl_s must be between 3600 and 34560000")
        if not 1 <= self.max_workers <= 256:
            raise ValueError("ApplierConfig.max_workers must be between 1 and 256")
        if not 0 <= self.prefetch_min_items <= 100_000:
            raise ValueError("ApplierConfig.prefetch_min_items must be between 0 and 100000")

    @classmethod
    def from_topology(cls, topology: Topology, *, max_workers: int = 16) -> ApplierConfig:
        """The names the topology sets, and tombstones kept for retention plus margin."""
        names = topology.applier
        return cls(
            names.version_attribute,
            names.id_attribute,
            names.tombstone_table,
            topology.tombstone_ttl_s,
            max_workers,
        )


class _RaceError(Exception):
    """The item appeared or vanished between two steps: start the record again."""


class _Created(NamedTuple):
    """A creation whose second tombstone read waits for the batch's (apply_batch)."""

    envelope: Envelope
    guard: Guard
    version: bytes


class _Facts(NamedTuple):
    """What the prefetch read about an item, for its first record in a batch only."""

    exists: bool
    version: bytes | None  # None: the item is missing or carries no version
    id: str | None
    tombstone: bytes  # the tombstone's version, b"" if there is none


class Applier:
    """Applies decoded records to DynamoDB tables through one boto3 client.

    `tables` are the primary tables with their key schemas; `table_map` renames
    them for a replica or a restore target (unlisted tables keep their name).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        tables: Mapping[str, KeySchema],
        *,
        table_map: Mapping[str, str] | None = None,
        config: ApplierConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Any: requests are built as plain dicts; the stubs' TypedDicts add nothing here.
        self._client: Any = client
        self._tables = dict(tables)
        self._map = dict(table_map or {})
        self.config = config or ApplierConfig()
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def target_table(self, table: str) -> str:
        """The table a record of `table` is written to."""
        return self._map.get(table, table)

    def item_identity(self, envelope: Envelope) -> bytes:
        """Bytes naming the target item: records with equal identity are applied in order."""
        schema = self._tables[envelope.table]
        return (
            self.target_table(envelope.table).encode() + b"\n" + canonical_key(schema, envelope.key)
        )

    def apply_batch(self, records: Sequence[SourcedRecord]) -> list[ApplyResult]:
        """Apply records given in stream order: items concurrently, each item in order.

        After a RETRY, later records of that item are NOT_ATTEMPTED (redeliver them).
        """
        if not records:
            return []
        groups: dict[bytes, list[int]] = {}
        for index, record in enumerate(records):
            groups.setdefault(self.item_identity(record.envelope), []).append(index)
        results: list[ApplyResult | None] = [None] * len(records)
        facts = self._prefetch(records, groups)
        # Batched like the prefetch: a creation that is its item's last record here has
        # its second tombstone read in one BatchGetItem with the others, after all writes.
        created: dict[int, _Created] | None = {} if facts else None

        def run(group: tuple[bytes, list[int]]) -> None:
            identity, indexes = group
            for position, index in enumerate(indexes):
                # Only the item's first record: later ones follow writes made since.
                known = facts.get(identity) if position == 0 else None
                deferred: list[_Created] | None = None
                if created is not None and position == len(indexes) - 1:
                    deferred = []
                result = self._apply(records[index], known, deferred)
                if deferred and created is not None:
                    created[index] = deferred[-1]  # one item per group: no two threads share
                results[index] = result
                if result.outcome is Outcome.RETRY:
                    for later in indexes[position + 1 :]:
                        results[later] = ApplyResult(Outcome.NOT_ATTEMPTED)
                    return

        try:
            if len(groups) == 1 or self.config.max_workers == 1:
                for group in groups.items():
                    run(group)
            else:
                futures = [self._executor().submit(run, group) for group in groups.items()]
                wait(futures)  # every group done before the checks below
                for future in futures:
                    future.result()  # the first error, if one raised
        finally:
            # Even when an error is on its way out: creations written must be checked.
            if created:
                for index, result in self._recheck_created(created).items():
                    results[index] = result
        return [r if r is not None else ApplyResult(Outcome.NOT_ATTEMPTED) for r in results]

    def close(self) -> None:
        """Stop the worker threads (an applier is usually kept for the process's life)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        # One pool for the applier's life: callers (one per shard) share it.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.config.max_workers, thread_name_prefix="lazyrep-apply"
                )
            return self._pool

    def apply(self, record: SourcedRecord) -> ApplyResult:
        """Apply one record; never raises for AWS errors (they become PARKED or RETRY)."""
        return self._apply(record, None, None)

    def _apply(
        self, record: SourcedRecord, facts: _Facts | None, deferred: list[_Created] | None
    ) -> ApplyResult:
        """One record. A creation appends itself to `deferred` (when given) instead of
        reading its tombstone a second time: the caller must do that read."""
        envelope = record.envelope
        try:
            version = record.position.version.encode()
        except ValueError as exc:
            return ApplyResult(Outcome.PARKED, "bad_position", str(exc))
        for _ in range(_MAX_RACES):
            try:
                if envelope.action is Action.DELETE:
                    return self._delete(envelope, version)
                return self._write(envelope, version, facts, deferred)
            except _RaceError:
                facts = None  # what was read before is out of date: read it all again
                continue
            except Exception as exc:
                return _failed(exc)
        return ApplyResult(Outcome.RETRY, "Race", "the item kept changing under concurrent writers")

    # -- puts and updates ------------------------------------------------------------------

    def _write(
        self,
        envelope: Envelope,
        version: bytes,
        facts: _Facts | None,
        deferred: list[_Created] | None = None,
    ) -> ApplyResult:
        """Fast path: the item exists and is older. Otherwise judge it, or create it.

        With prefetched `facts`, a missing item goes straight to the creation (whose
        conditions and second tombstone read hold whatever happened since the read),
        and a write the item's version already supersedes is skipped as stale.
        """
        guard = free_guard(envelope.names, envelope.values)
        request = self._request(envelope, guard, version)
        if facts is not None:
            if not facts.exists:
                return self._create(envelope, guard, version, request, facts.tombstone, deferred)
            if facts.version is not None and facts.id != envelope.id and facts.version >= version:
                # Versions of a live item only grow, and an item deleted since left a
                # tombstone at least as new: the guarded write would fail and be judged
                # stale. The same id goes the long way (see _redelivered).
                return ApplyResult(Outcome.STALE)
        old = self._conditional_write(envelope, guard, version, request, newer_than_stored(guard))
        if old is None:
            return ApplyResult(Outcome.APPLIED)
        if old and self.config.version_attribute not in old:
            # Written by someone else, without a version: any record is newer.
            old = self._conditional_write(envelope, guard, version, request, unversioned(guard))
            if old is None:
                return ApplyResult(Outcome.APPLIED)
            if old and self.config.version_attribute not in old:
                return ApplyResult(Outcome.CONDITION_FAILED)
        if old:  # DynamoDB returns the old item only when there is one
            if old.get(self.config.id_attribute, {}).get("S") == envelope.id:
                return self._redelivered(envelope, guard, old)
            return self._judge(old, version, envelope.id)
        return self._create(envelope, guard, version, request, None, deferred)

    def _conditional_write(
        self,
        envelope: Envelope,
        guard: Guard,
        version: bytes,
        request: dict[str, Any],
        guard_condition: str,
    ) -> dict[str, Any] | None:
        """Write under `guard_condition` and the user's: None if written, else the old item.

        The old item is `{}` when there is none (DynamoDB returns it only if it exists).
        """
        condition = with_user_condition(guard_condition, envelope.condition)
        attempt = dict(request, ConditionExpression=condition)
        attempt["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self._attach(attempt, condition, envelope, guard, version)
        try:
            if envelope.action is Action.PUT:
                self._client.put_item(**attempt)
            else:
                self._client.update_item(**attempt)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
            return old
        return None

    def _redelivered(self, envelope: Envelope, guard: Guard, old: Mapping[str, Any]) -> ApplyResult:
        """The item holds this very record (or its producer duplicate): stale, and...

        ...a creation that crashed after its write and before its second tombstone read
        may have left the item resurrected: a newer delete, applied meanwhile by another
        applier while the item was missing, wrote its tombstone after our first read.
        So read the tombstone again and take the item back if it holds a newer
        UNCONDITIONAL delete: that delete, once applied, leaves the item gone or newer.
        A conditional delete whose condition failed also leaves a newer tombstone over
        a live item, rightly, so those are left alone (see docs/APPLIER.md).
        """
        stored = old.get(self.config.version_attribute, {}).get("B")
        if stored is not None:
            tombstone, unconditional = self._tombstone(envelope)
            if unconditional and tombstone > bytes(stored):
                self._take_back(envelope, guard, bytes(stored))
        return ApplyResult(Outcome.STALE)

    def _create(
        self,
        envelope: Envelope,
        guard: Guard,
        version: bytes,
        request: dict[str, Any],
        tombstone: bytes | None = None,
        deferred: list[_Created] | None = None,
    ) -> ApplyResult:
        """The item is missing: create it unless a newer delete left a tombstone.

        Look at the tombstone, create the item only if it is still missing, then look
        again: a delete applied meanwhile by another applier (a replay running beside
        the live consumer) has written its tombstone before deleting, so it shows here,
        and the item just created is taken back. No transaction: they cost twice the
        capacity, and emulators do not isolate them. `tombstone`, prefetched, stands in
        for the first read: anything written since is what the second read is for.
        With `deferred`, the second read is left to the caller (`_recheck_created`).
        """
        if tombstone is None:
            tombstone = self._tombstone(envelope)[0]
        if tombstone >= version:
            return ApplyResult(Outcome.STALE)
        old = self._conditional_write(envelope, guard, version, request, missing(guard))
        if old is not None:
            if old or not envelope.condition:
                raise _RaceError  # the item appeared meanwhile: judge it by its version
            return ApplyResult(Outcome.CONDITION_FAILED)
        if deferred is not None:
            deferred.append(_Created(envelope, guard, version))
            return ApplyResult(Outcome.APPLIED)
        return self._after_create(envelope, guard, version, self._tombstone(envelope)[0])

    def _after_create(
        self, envelope: Envelope, guard: Guard, version: bytes, tombstone: bytes
    ) -> ApplyResult:
        """The second look: a newer delete's tombstone takes back the item just created."""
        if tombstone > version:
            self._take_back(envelope, guard, version)
            return ApplyResult(Outcome.STALE)
        return ApplyResult(Outcome.APPLIED)

    def _recheck_created(self, created: Mapping[int, _Created]) -> dict[int, ApplyResult]:
        """The second tombstone read of a batch's creations: one BatchGetItem per 100.

        Each item is the last of its records in the batch, so nothing later here writes
        it. A key the batch read leaves unread, or a failed batch read, falls back to one
        GetItem per creation; a creation whose check fails is retried, and its
        redelivery finds its own id and looks again (`_redelivered`).
        """
        tombstones = self.config.tombstone_table
        version_name = self.config.version_attribute
        by_key = {
            bytes(self._tombstone_key(c.envelope)[TOMBSTONE_KEY]["B"]): index
            for index, c in created.items()
        }
        seen: dict[int, bytes] = {}
        try:
            result = batch_get(
                self._client,
                {tombstones: [{TOMBSTONE_KEY: {"B": key}} for key in by_key]},
                {tombstones: TableRead("#k, #v", {"#k": TOMBSTONE_KEY, "#v": version_name})},
                config=self.config.prefetch,
            )
        except Exception as exc:  # one GetItem each below reports the errors
            logger.warning("tombstone read of %d creations failed: %r", len(created), exc)
        else:
            unread = {bytes(k[TOMBSTONE_KEY]["B"]) for k in result.unread.get(tombstones, [])}
            for found in result.found.get(tombstones, []):
                seen[by_key[bytes(found[TOMBSTONE_KEY]["B"])]] = bytes(
                    found.get(version_name, {}).get("B", b"")
                )
            for key, index in by_key.items():
                if key not in unread:
                    seen.setdefault(index, b"")  # read, and no tombstone
        results: dict[int, ApplyResult] = {}
        fatal: Exception | None = None
        for index, c in created.items():
            try:
                tombstone = seen[index] if index in seen else self._tombstone(c.envelope)[0]
                results[index] = self._after_create(c.envelope, c.guard, c.version, tombstone)
            except Exception as exc:
                try:
                    results[index] = _failed(exc)
                except Exception as error:  # raised once the others are checked
                    fatal = fatal or error
        if fatal is not None:
            raise fatal
        return results

    def _tombstone(self, envelope: Envelope) -> tuple[bytes, bool]:
        """The version of the item's tombstone, or b"" (older than any version), and
        whether its delete was unconditional."""
        response = self._client.get_item(
            TableName=self.config.tombstone_table,
            Key=self._tombstone_key(envelope),
            ConsistentRead=True,
            ProjectionExpression="#v, #u",
            ExpressionAttributeNames={
                "#v": self.config.version_attribute,
                "#u": TOMBSTONE_UNCONDITIONAL,
            },
        )
        found = response.get("Item", {})
        stored = found.get(self.config.version_attribute, {}).get("B", b"")
        return bytes(stored), bool(found.get(TOMBSTONE_UNCONDITIONAL, {}).get("BOOL", False))

    def _take_back(self, envelope: Envelope, guard: Guard, version: bytes) -> None:
        """Delete the item this record created, if nothing newer has written it since."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.delete_item(
                TableName=self.target_table(envelope.table),
                Key=envelope.key,
                ConditionExpression=f"{guard.version_name} = {guard.version_value}",
                ExpressionAttributeNames={guard.version_name: self.config.version_attribute},
                ExpressionAttributeValues={guard.version_value: {"B": version}},
            )

    # -- deletes ---------------------------------------------------------------------------

    def _delete(self, envelope: Envelope, version: bytes) -> ApplyResult:
        """Tombstone first, then the item: a crash in between is repaired by redelivery."""
        guard = free_guard(envelope.names, envelope.values)
        tombstone = self._tombstone_item(envelope, version)
        t_names = {
            guard.version_name: self.config.version_attribute,
            guard.id_name: self.config.id_attribute,
        }
        t_values = {guard.version_value: {"B": version}, guard.id_value: {"S": envelope.id}}
        try:
            previous = self._client.put_item(
                TableName=self.config.tombstone_table,
                Item=tombstone,
                ConditionExpression=tombstone_older(guard),
                ExpressionAttributeNames=t_names,
                ExpressionAttributeValues=t_values,
                ReturnValues="ALL_OLD",
            ).get("Attributes", {})
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            return ApplyResult(Outcome.STALE)
        # This very delete wrote the tombstone before (a redelivery after a crash, or not).
        again = previous.get(self.config.id_attribute, {}).get("S") == envelope.id
        condition = with_user_condition(
            f"{missing(guard)} OR ({newer_than_stored(guard)}) OR ({unversioned(guard)})",
            envelope.condition,
        )
        request: dict[str, Any] = {
            "TableName": self.target_table(envelope.table),
            "Key": envelope.key,
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnValues": "ALL_OLD",
        }
        self._attach(request, condition, envelope, guard, version)
        try:
            deleted = self._client.delete_item(**request).get("Attributes")
            return ApplyResult(Outcome.STALE if again and not deleted else Outcome.APPLIED)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            old_item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
        if old_item is None:
            return ApplyResult(Outcome.CONDITION_FAILED)
        return self._judge(old_item, version, envelope.id)

    # -- prefetch --------------------------------------------------------------------------

    def _prefetch(
        self, records: Sequence[SourcedRecord], groups: Mapping[bytes, list[int]]
    ) -> dict[bytes, _Facts]:
        """Facts for the items whose first record in the batch is a put or an update.

        One strongly consistent BatchGetItem per 100 keys reads each item (key, version
        and id only) and its tombstone. An item with a read left unprocessed gets no
        facts and goes the way `apply` goes; so does everything if the prefetch fails: it only
        saves requests, the guarded writes decide.
        """
        minimum = self.config.prefetch_min_items
        firsts = {
            identity: records[indexes[0]].envelope
            for identity, indexes in groups.items()
            if records[indexes[0]].envelope.action is not Action.DELETE
        }
        if minimum == 0 or len(firsts) < minimum:
            return {}
        try:
            return self._read_facts(firsts)
        except Exception as exc:  # an optimisation only: the per-record path reports errors
            logger.warning("prefetch of %d items failed, applying without: %r", len(firsts), exc)
            return {}

    def _read_facts(self, firsts: Mapping[bytes, Envelope]) -> dict[bytes, _Facts]:
        version_name, id_name = self.config.version_attribute, self.config.id_attribute
        tombstones = self.config.tombstone_table
        keys: dict[str, list[Mapping[str, Any]]] = {tombstones: []}
        reads = {
            tombstones: TableRead("#k, #v", {"#k": TOMBSTONE_KEY, "#v": version_name}),
        }
        schemas: dict[str, KeySchema] = {}
        by_tombstone: dict[bytes, bytes] = {}
        for identity, envelope in firsts.items():
            table = self.target_table(envelope.table)
            if table not in schemas:
                schema = schemas[table] = self._tables[envelope.table]
                names = {f"#a{n}": a.name for n, a in enumerate(schema.attributes)}
                names.update({"#v": version_name, "#i": id_name})
                reads[table] = TableRead(", ".join(names), names)
                keys[table] = []
            keys[table].append({a.name: envelope.key[a.name] for a in schemas[table].attributes})
            tombstone_key = self._tombstone_key(envelope)
            keys[tombstones].append(tombstone_key)
            by_tombstone[bytes(tombstone_key[TOMBSTONE_KEY]["B"])] = identity
        result = batch_get(self._client, keys, reads, config=self.config.prefetch)

        unknown: set[bytes] = set()
        for table, unread in result.unread.items():
            for key in unread:
                if table == tombstones:
                    unknown.add(by_tombstone[bytes(key[TOMBSTONE_KEY]["B"])])
                else:
                    unknown.add(table.encode() + b"\n" + canonical_key(schemas[table], key))
        tombstone_of: dict[bytes, bytes] = {}
        for found in result.found.get(tombstones, []):
            identity = by_tombstone[bytes(found[TOMBSTONE_KEY]["B"])]
            tombstone_of[identity] = bytes(found.get(version_name, {}).get("B", b""))
        items: dict[bytes, Mapping[str, Any]] = {}
        for table, schema in schemas.items():
            for found in result.found.get(table, []):
                items[table.encode() + b"\n" + canonical_key(schema, found)] = found
        facts: dict[bytes, _Facts] = {}
        for identity in firsts:
            if identity in unknown:
                continue
            stored = items.get(identity)
            if stored is None:
                facts[identity] = _Facts(False, None, None, tombstone_of.get(identity, b""))
                continue
            version = stored.get(version_name, {}).get("B")
            facts[identity] = _Facts(
                True,
                None if version is None else bytes(version),
                stored.get(id_name, {}).get("S"),
                tombstone_of.get(identity, b""),
            )
        return facts

    # -- pieces ----------------------------------------------------------------------------

    def _request(self, envelope: Envelope, guard: Guard, version: bytes) -> dict[str, Any]:
        table = self.target_table(envelope.table)
        if envelope.action is Action.PUT:
            item = dict(envelope.item or {})
            item[self.config.version_attribute] = {"B": version}
            item[self.config.id_attribute] = {"S": envelope.id}
            return {"TableName": table, "Item": item}
        return {
            "TableName": table,
            "Key": envelope.key,
            "UpdateExpression": merge_update(envelope.update or "", guard),
        }

    def _attach(
        self,
        request: dict[str, Any],
        condition: str,
        envelope: Envelope,
        guard: Guard,
        version: bytes,
    ) -> None:
        """Names and values the request's expressions use: the user's and our guard's."""
        schema = self._tables[envelope.table]
        names = dict(envelope.names or {})
        names.update(
            {
                guard.key_name: schema.partition.name,
                guard.version_name: self.config.version_attribute,
                guard.id_name: self.config.id_attribute,
            }
        )
        values = dict(envelope.values or {})
        values.update({guard.version_value: {"B": version}, guard.id_value: {"S": envelope.id}})
        parts = [condition, request.get("UpdateExpression")]
        request["ExpressionAttributeNames"] = used(parts, names)
        chosen = used(parts, values)
        if chosen:
            request["ExpressionAttributeValues"] = chosen
        else:
            request.pop("ExpressionAttributeValues", None)

    def _tombstone_key(self, envelope: Envelope) -> dict[str, Any]:
        namespace = self.config.tombstone_namespace.encode()
        return {TOMBSTONE_KEY: {"B": namespace + self.item_identity(envelope)}}

    def _tombstone_item(self, envelope: Envelope, version: bytes) -> dict[str, Any]:
        item = self._tombstone_key(envelope)
        item[self.config.version_attribute] = {"B": version}
        item[self.config.id_attribute] = {"S": envelope.id}
        item[TOMBSTONE_EXPIRES] = {"N": str(int(self._clock()) + self.config.tombstone_ttl_s)}
        if not envelope.condition:
            item[TOMBSTONE_UNCONDITIONAL] = {"BOOL": True}
        return item

    def _judge(self, old: Mapping[str, Any], version: bytes, envelope_id: str) -> ApplyResult:
        """The write's condition failed on an existing item: stale, or the user's condition."""
        stored = old.get(self.config.version_attribute, {}).get("B")
        stored_id = old.get(self.config.id_attribute, {}).get("S")
        if stored_id == envelope_id or (stored is not None and bytes(stored) >= version):
            return ApplyResult(Outcome.STALE)
        return ApplyResult(Outcome.CONDITION_FAILED)


def _failed(exc: Exception) -> ApplyResult:
    """An error while applying: PARKED if no retry can help, else RETRY.

    Raises:
        Exception: `exc` itself when it is not retriable and not about the record
            (credentials, configuration): every record would fail alike.
    """
    if isinstance(exc, ParamValidationError):  # a record botocore refuses: no retry helps
        return ApplyResult(Outcome.PARKED, "ParamValidationError", str(exc))
    failure = classify(exc)
    if isinstance(exc, ClientError):
        outcome = Outcome.RETRY if failure.retriable else Outcome.PARKED
        return ApplyResult(outcome, failure.code, failure.message)
    if not failure.retriable:  # connection errors and the like are retriable
        raise exc
    return ApplyResult(Outcome.RETRY, failure.code, failure.message)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
