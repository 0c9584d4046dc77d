"""Pure planning for the mapping: which shards may run, what goes in a batch, what expired.

No I/O and no clock here, so every rule is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

from emulators.esm_events import StreamRecord

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit: a batch stops growing before it."""
RECORD_OVERHEAD_BYTES = 600
"""A generous bound on one event record's JSON besides its base64 data and key."""


class ShardInfo(NamedTuple):
    """A shard as ListShards describes it: who its parents are and whether it is closed."""

    shard_id: str
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    closed: bool = False

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)


def ready_shards(
    shards: Sequence[ShardInfo], ended: Collection[str], running: Collection[str]
) -> list[str]:
    """Shards that may start now: not ended, not running, and every parent fully processed.

    A parent missing from the listing (trimmed past retention) counts as processed:
    its records are gone, so waiting for it would block the child forever.
    """
    listed = {s.shard_id for s in shards}
    return [
        s.shard_id
        for s in shards
        if s.shard_id not in ended
        and s.shard_id not in running
        and all(p in ended or p not in listed for p in s.parents)
    ]


def event_size(record: StreamRecord) -> int:
    """Upper bound of one record's share of the event JSON (base64 grows data by 4/3)."""
    return RECORD_OVERHEAD_BYTES + 4 * ((len(record.data) + 2) // 3) + len(record.partition_key)


def take_batch(
    buffer: Sequence[StreamRecord], batch_size: int, max_payload_bytes: int = MAX_PAYLOAD_BYTES
) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """Split `buffer` into the next batch and the rest: at most `batch_size` records and
    under the payload limit, but never empty (a single record always fits: 1 MiB max)."""
    size = 0
    count = 0
    for record in buffer[:batch_size]:
        size += event_size(record)
        if count and size > max_payload_bytes:
            break
        count += 1
    return list(buffer[:count]), list(buffer[count:])


def batch_is_due(
    *,
    buffered: int,
    batch_size: int,
    window_s: float,
    waited_s: float,
    shard_exhausted: bool,
    payload_full: bool = False,
) -> bool:
    """Whether to invoke now with what is buffered (Lambda: a full batch, the batching
    window expired, the 6 MB payload reached, or nothing more will come from the shard)."""
    if buffered == 0:
        return False
    return (
        buffered >= batch_size
        or payload_full
        or shard_exhausted
        or window_s <= 0
        or waited_s >= window_s
    )


def split_expired(
    records: Sequence[StreamRecord], now_s: float, max_age_s: int
) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """(expired, rest): the leading records older than MaximumRecordAgeInSeconds.

    Arrival times rise along a shard, so the expired records are a prefix; stopping at
    the first young record keeps the two parts contiguous ranges of the shard.
    """
    if max_age_s < 0:
        return [], list(records)
    cut = 0
    while cut < len(records) and now_s - records[cut].arrival_s > max_age_s:
        cut += 1
    return list(records[:cut]), list(records[cut:])


def bisect(records: Sequence[StreamRecord]) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """BisectBatchOnFunctionError's split: two halves, the first one the smaller if odd."""
    middle = len(records) // 2
    return list(records[:middle]), list(records[middle:])
