"""`lazyrep rewind`: move a KCL application's checkpoint for one shard back.

The KCL cannot start a lease at a sequence number, so the lease item itself is edited:
`checkpoint` becomes the record just before the first record to apply again (the KCL
resumes after its checkpoint; lazyrep.rewind_locate), `checkpointSubSequenceNumber`
0, any `pendingCheckpoint*` goes, and `leaseCounter` is bumped, all in one UpdateItem
conditional on the `leaseCounter` read: a worker that renewed or checkpointed meanwhile
makes the update fail rather than be overwritten (or overwrite us). Moving the counter
also makes the holder's next renewal fail, so a worker still holding the lease (with
--force) loses it without checkpointing, and the next owner (the same worker, once its
lease discovery finds the lease still names it) starts a new record processor after the
new checkpoint.

The counter moves by 2, never by 1: when a KCL renewal fails its condition, the KCL
(DynamoDBLeaseRefresher.renewLease, KCL 3.1.3) reads the lease back and, if it still
names the worker and its counter is exactly the worker's own + 1, takes the failure for
its own write whose reply was lost ("Detected spurious renewal failure ... but
recovered") and keeps the lease: the worker would go on from its in-memory position and
its next checkpoint would overwrite the rewind. Measured over the real daemon
(tests/e2e/test_operator_e2e.py).

A lease counts as held when it has an owner and its `leaseCounter` moves while we
watch (`observe_s`; KCL workers renew every failoverTimeMillis / 3, 10 s / 3 by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from binlog.awserrors import classify
from lazyrep.errors_cli import EXIT_FAILURE, CliError
from lazyrep.rewind_locate import (
    TRIM_HORIZON,
    Found,
    checkpoint_before,
    record_at_sequence,
    record_at_time,
)
from lazyrep.status_leases import Lease

DEFAULT_OBSERVE_S = 10.0
COUNTER_STEP = 2
"""How far a rewind moves leaseCounter: more than 1, or the holder's KCL would take the
change for its own renewal and keep its lease (see the module docstring)."""
_PENDING = ("pendingCheckpoint", "pendingCheckpointSubSequenceNumber", "pendingCheckpointState")


class LeaseHeldError(CliError):
    """A worker holds the lease and --force was not given."""


@dataclass(frozen=True, slots=True)
class RewindRequest:
    """What to rewind: one shard of one KCL application, to a sequence number or a time."""

    stream: str
    application_name: str
    shard_id: str
    to_sequence: str | None = None
    to_time: datetime | None = None
    force: bool = False
    observe_s: float = DEFAULT_OBSERVE_S

    def __post_init__(self) -> None:
        if (self.to_sequence is None) == (self.to_time is None):
            raise CliError("give exactly one of --to-sequence and --to-time")
        if self.to_sequence is not None and not self.to_sequence.isdigit():
            raise CliError(f"--to-sequence {self.to_sequence!r} is not a sequence number")
        if self.to_time is not None and self.to_time.tzinfo is None:
            raise CliError("--to-time needs a time zone, e.g. 2024-05-01T12:00:00Z")
        if not 0 <= self.observe_s <= 300:
            raise CliError("--observe must be between 0 and 300 seconds")


@dataclass(frozen=True, slots=True)
class RewindResult:
    """The lease before and after, and the first record the KCL will apply again."""

    before: Lease
    after: Lease
    first_again: Found


def parse_time(text: str) -> datetime:
    """ISO 8601 with a zone (`Z` or an offset).

    Raises:
        CliError: not such a time.
    """
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"--to-time {text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise CliError(f"--to-time {text!r} needs a time zone, e.g. {text}Z")
    return when.astimezone(UTC)


def read_lease(dynamodb: Any, table: str, shard_id: str) -> Lease:
    """The shard's lease (consistent read).

    Raises:
        CliError: no lease table, or no lease for the shard.
    """
    try:
        item = dynamodb.get_item(
            TableName=table, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True
        ).get("Item")
    except ClientError as exc:
        if classify(exc).code == "ResourceNotFoundException":
            raise CliError(
                f"no lease table {table!r}: the replica's KCL application has not run"
            ) from exc
        raise
    if item is None:
        raise CliError(
            f"no lease for shard {shard_id} in {table!r}: the KCL has not created it yet, or "
            "removed it after the shard ended"
        )
    return Lease.from_item(item)


def _is_back(new: str, current: str | None) -> bool:
    if new == TRIM_HORIZON or current is None or not current.isdigit():
        return True
    return int(new) <= int(current)


def rewind(
    request: RewindRequest,
    *,
    kinesis: Any,
    dynamodb: Any,
    retention_hours: float,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_before: Callable[[Lease], None] = lambda lease: None,
) -> RewindResult:
    """Find the position, check the lease, and move the checkpoint.

    Raises:
        CliError: bad input (exit 2): unknown shard position, a time beyond retention,
            no lease; LeaseHeldError without --force; a forward move without --force;
            the lease changed under us (exit 1).
    """
    table, shard = request.application_name, request.shard_id
    if request.to_sequence is not None:
        target = record_at_sequence(kinesis, request.stream, shard, request.to_sequence)
    else:
        assert request.to_time is not None
        target = record_at_time(
            kinesis,
            request.stream,
            shard,
            request.to_time,
            retention_hours=retention_hours,
            now=now(),
        )
    checkpoint = checkpoint_before(
        kinesis, request.stream, shard, target, retention_hours=retention_hours
    )
    before = read_lease(dynamodb, table, shard)
    on_before(before)
    if before.owner and request.observe_s > 0:
        sleep(request.observe_s)
        seen = read_lease(dynamodb, table, shard)
        moved = seen.counter != before.counter
        before = seen
    else:
        moved = before.owner is not None  # an owner we did not watch: assume it is live
    if moved and not request.force:
        how = (
            f"its leaseCounter moved in {request.observe_s:g} s"
            if request.observe_s > 0
            else "not watched (--observe 0)"
        )
        raise LeaseHeldError(
            f"shard {shard}'s lease is held by {before.owner} ({how}): stop that worker, or "
            "pass --force (it then loses the lease without checkpointing and the next owner "
            "starts after the new checkpoint)"
        )
    if not _is_back(checkpoint, before.checkpoint) and not request.force:
        raise CliError(
            f"the new checkpoint {checkpoint} is after the current one {before.checkpoint}: "
            "that would skip records; rewind only moves back (--force to do it anyway)"
        )
    after = _write(dynamodb, table, before, checkpoint)
    return RewindResult(before, after, target)


def _write(dynamodb: Any, table: str, before: Lease, checkpoint: str) -> Lease:
    names = {"#cp": "checkpoint", "#sub": "checkpointSubSequenceNumber", "#c": "leaseCounter"}
    step = {"N": str(COUNTER_STEP)}
    values: dict[str, Any] = {":cp": {"S": checkpoint}, ":zero": {"N": "0"}, ":step": step}
    if before.counter is None:
        condition = "attribute_not_exists(#c)"
        counter = "#c = :step"
    else:
        condition = "#c = :c"
        values[":c"] = {"N": str(before.counter)}
        counter = "#c = #c + :step"
    remove = []
    for i, name in enumerate(_PENDING):
        names[f"#p{i}"] = name
        remove.append(f"#p{i}")
    try:
        reply = dynamodb.update_item(
            TableName=table,
            Key={"leaseKey": {"S": before.lease_key}},
            UpdateExpression=f"SET #cp = :cp, #sub = :zero, {counter} REMOVE {', '.join(remove)}",
            ConditionExpression=f"attribute_exists(leaseKey) AND {condition}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except ClientError as exc:
        if classify(exc).code == "ConditionalCheckFailedException":
            raise CliError(
                f"the lease of shard {before.shard_id} changed while rewinding (a worker renewed, "
                "checkpointed or took it): nothing written; run again",
                EXIT_FAILURE,
            ) from exc
        raise
    return Lease.from_item(reply["Attributes"])
