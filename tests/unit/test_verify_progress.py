"""The replica's progress from KCL leases and shard lineage: what lag can explain."""

from __future__ import annotations

from typing import Any

from binlog.version import Version
from lazyrep.verify_progress import LagMode, fixed_progress, progress_from_leases


def lease(shard: int, checkpoint: str, sub: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "leaseKey": {"S": f"shardId-{shard:012d}"},
        "checkpoint": {"S": checkpoint},
    }
    if sub is not None:
        item["checkpointSubSequenceNumber"] = {"N": str(sub)}
    return item


def shard(index: int, *parents: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ShardId": f"shardId-{index:012d}"}
    if parents:
        out["ParentShardId"] = f"shardId-{parents[0]:012d}"
    if len(parents) > 1:
        out["AdjacentParentShardId"] = f"shardId-{parents[1]:012d}"
    return out


def v(index: int, seq: int, sub: int = 0) -> bytes:
    return Version(index, seq, sub).encode()


def test_a_checkpoint_marks_what_is_applied_in_its_shard() -> None:
    progress = progress_from_leases([lease(0, "100"), lease(1, "5", sub=2)], [shard(0), shard(1)])
    assert progress.applied(v(0, 100))
    assert progress.applied(v(0, 99))
    assert not progress.applied(v(0, 101))
    assert progress.applied(v(1, 5, 2))
    assert not progress.applied(v(1, 5, 3))
    assert progress.describe()["shardId-000000000000"] == "shardId-000000000000/100/0"


def test_shard_end_and_start_sentinels() -> None:
    progress = progress_from_leases(
        [lease(0, "SHARD_END"), lease(1, "AT_TIMESTAMP"), lease(2, "TRIM_HORIZON")],
        [shard(0), shard(1), shard(2)],
    )
    assert progress.applied(v(0, 10**40))
    assert not progress.applied(v(1, 1))
    assert not progress.applied(v(2, 1))


def test_ancestors_of_leased_shards_are_done_and_unleased_children_not_started() -> None:
    # 0 split into 2 and 3 (0's lease cleaned up); 1 split into 4 and 5, not reached yet.
    shards = [shard(0), shard(1), shard(2, 0), shard(3, 0), shard(4, 1), shard(5, 1)]
    progress = progress_from_leases([lease(2, "7"), lease(3, "9"), lease(1, "50")], shards)
    assert progress.applied(v(0, 10**30))
    assert not progress.applied(v(4, 1))
    assert not progress.applied(v(5, 1))
    assert progress.describe()["shardId-000000000000"] == "ended"
    assert progress.describe()["shardId-000000000004"] == "not_started"


def test_shards_gone_from_the_stream_are_done_and_unknown_new_ones_are_not() -> None:
    progress = progress_from_leases([lease(3, "1")], [shard(3)])
    assert progress.applied(v(1, 5))  # older than every listed shard: left the retention
    assert not progress.applied(v(7, 5))  # newer than the listing: not seen yet


def test_a_merge_marks_both_parents_done() -> None:
    progress = progress_from_leases([lease(2, "1")], [shard(0), shard(1), shard(2, 0, 1)])
    assert progress.applied(v(0, 99))
    assert progress.applied(v(1, 99))


def test_multi_stream_lease_keys_and_foreign_leases() -> None:
    leases = [
        {"leaseKey": {"S": "123:stream:1:shardId-000000000000"}, "checkpoint": {"S": "10"}},
        {"leaseKey": {"S": "not-a-shard"}, "checkpoint": {"S": "10"}},
    ]
    progress = progress_from_leases(leases, [shard(0)])
    assert progress.applied(v(0, 10))
    assert not progress.applied(v(0, 11))


def test_fixed_modes() -> None:
    assert fixed_progress(LagMode.NONE).applied(v(0, 1))
    assert not fixed_progress(LagMode.ANY).applied(v(0, 1))
    assert not progress_from_leases([], []).applied(b"not a version")
