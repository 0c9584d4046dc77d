"""Replay planning without AWS: options, tables, shard lineage, starts, bounds, the state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binlog.errors import LazyRepError
from lazyrep.errors_cli import EXIT_FAILURE, EXIT_USAGE, describe
from lazyrep.replay_plan import (
    ReplayInputError,
    ReplayRequest,
    ShardInfo,
    ShardProgress,
    ShardStart,
    ShardStatus,
    StartKind,
    blocked,
    check_sequence_in_shard,
    choose_tables,
    descendants,
    hash_key,
    iso,
    lineage_order,
    lost_window,
    parse_table_map,
    parse_tables,
    parse_time,
    plan_shards,
    ready,
)
from lazyrep.replay_run import ReplayError
from lazyrep.replay_state import ReplayState, default_state_path, resume_command

HALF = 2**127
NOW = datetime(2026, 1, 31, 4, 0, tzinfo=UTC)


def shard(
    index: int,
    parents: tuple[int, ...] = (),
    span: tuple[int, int] = (0, 2**128 - 1),
    start: int = 100,
    end: int | None = None,
) -> ShardInfo:
    return ShardInfo(
        f"shardId-{index:012d}",
        tuple(f"shardId-{p:012d}" for p in parents),
        span,
        str(start * 10**20),
        None if end is None else str(end * 10**20),
    )


# Shard 0 split into 2 and 3; shard 1 and 3 merged into 4.
STREAM = [
    shard(4, (1, 3), (HALF // 2, 2**128 - 1), start=400),
    shard(3, (0,), (HALF // 2, HALF - 1), start=300, end=399),
    shard(2, (0,), (0, HALF // 2 - 1), start=200),
    shard(1, (), (HALF, 2**128 - 1), start=100, end=399),
    shard(0, (), (0, HALF - 1), start=100, end=199),
]


def ids(plans: list[object]) -> list[str]:
    return [p.shard_id[-1] for p in plans]  # type: ignore[attr-defined]


# -- options ---------------------------------------------------------------------------------


def test_times_are_iso_with_utc_by_default_or_relative() -> None:
    assert parse_time("2026-01-31T04:00:00Z", option="--from-time") == NOW
    assert parse_time("2026-01-31T05:00:00+01:00", option="--from-time") == NOW
    assert parse_time("2026-01-31T04:00", option="--from-time") == NOW  # no zone: UTC
    assert parse_time("-90m", option="--from-time", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("-1.5h", option="--from-time", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_time("-2d", option="--from-time", now=NOW) == NOW - timedelta(days=2)
    with pytest.raises(ReplayInputError, match=r"--to-time 'yesterday' is not a time"):
        parse_time("yesterday", option="--to-time")
    assert iso(NOW) == "2026-01-31T04:00:00.000Z"


def test_table_maps_and_table_lists() -> None:
    assert parse_table_map(["orders=orders-r", "users = users2,carts=carts3"]) == {
        "orders": "orders-r",
        "users": "users2",
        "carts": "carts3",
    }
    assert parse_tables(["a,b", "b", " c "]) == ("a", "b", "c")
    with pytest.raises(ReplayInputError, match="give primary=target"):
        parse_table_map(["orders"])
    with pytest.raises(ReplayInputError, match="not a DynamoDB table name"):
        parse_table_map(["orders=a b"])
    with pytest.raises(ReplayInputError, match="names table 'orders' twice"):
        parse_table_map(["orders=orders-x", "orders=orders-y"])


def test_choosing_tables() -> None:
    known = ["users", "orders", "carts"]
    tables, other = choose_tables(known, ("orders",), {"orders": "orders-r"})
    assert [(t.primary, t.target) for t in tables] == [("orders", "orders-r")]
    assert other == ("users", "carts")
    tables, other = choose_tables(known, (), {})
    assert [t.target for t in tables] == known
    assert other == ()
    with pytest.raises(ReplayInputError, match="--tables: unknown table 'nope'"):
        choose_tables(known, ("nope",), {})
    with pytest.raises(ReplayInputError, match="--map: unknown table 'nope'"):
        choose_tables(known, (), {"nope": "x"})
    with pytest.raises(ReplayInputError, match="would both be written to 'users'"):
        choose_tables(known, (), {"orders": "users"})


def test_request_validation() -> None:
    with pytest.raises(ReplayInputError, match="--from-sequence needs --shard"):
        ReplayRequest("t.toml", StartKind.SEQUENCE, from_sequence="1")
    with pytest.raises(ReplayInputError, match="--to-sequence needs --shard"):
        ReplayRequest("t.toml", StartKind.TRIM_HORIZON, to_sequence="1")
    with pytest.raises(ReplayInputError, match="at most one of --to-sequence and --to-time"):
        ReplayRequest("t.toml", StartKind.TRIM_HORIZON, shard="s", to_sequence="1", to_time=NOW)
    with pytest.raises(ReplayInputError, match="not a Kinesis sequence number"):
        ReplayRequest("t.toml", StartKind.SEQUENCE, shard="s", from_sequence="12x")
    with pytest.raises(ReplayInputError, match="is before --from-sequence"):
        ReplayRequest("t.toml", StartKind.SEQUENCE, shard="s", from_sequence="5", to_sequence="4")
    with pytest.raises(ReplayInputError, match="is before --from-time"):
        ReplayRequest("t.toml", StartKind.TIME, from_time=NOW, to_time=NOW - timedelta(seconds=1))


def test_request_round_trips_through_json() -> None:
    request = ReplayRequest(
        "/x/t.toml",
        StartKind.TIME,
        from_time=NOW,
        to_time=NOW + timedelta(hours=1),
        tables=("users", "orders"),
        table_map=(("orders", "orders-r"),),
        target_region="eu-west-1",
        force=True,
    )
    assert ReplayRequest.from_json(json.loads(json.dumps(request.to_json()))) == request
    with pytest.raises(ReplayInputError, match="damaged"):
        ReplayRequest.from_json({"start": "sideways"})


def test_input_errors_exit_2_and_replay_failures_exit_1() -> None:
    assert describe(ReplayInputError("bad")) == ("bad", EXIT_USAGE)
    assert describe(ReplayError("DynamoDB kept failing")) == (
        "DynamoDB kept failing",
        EXIT_FAILURE,
    )
    assert isinstance(ReplayInputError("x"), LazyRepError)


# -- shards ----------------------------------------------------------------------------------


def test_lineage_order_puts_parents_first() -> None:
    assert ids(lineage_order(STREAM)) == ["0", "1", "2", "3", "4"]
    assert descendants(STREAM, "shardId-000000000000") == {
        "shardId-000000000002",
        "shardId-000000000003",
        "shardId-000000000004",
    }
    assert descendants(STREAM, "shardId-000000000004") == set()


@given(st.permutations(STREAM))
def test_lineage_order_does_not_depend_on_listing_order(shards: list[ShardInfo]) -> None:
    ordered = [s.shard_id for s in lineage_order(shards)]
    for s in shards:
        for parent in s.parents:
            assert ordered.index(parent) < ordered.index(s.shard_id)


def test_all_shards_from_a_time() -> None:
    request = ReplayRequest("t", StartKind.TIME, from_time=NOW)
    plans, done = plan_shards(STREAM, request)
    assert ids(plans) == ["0", "1", "2", "3", "4"]
    assert done == {}
    assert all(p.start == ShardStart("AT_TIMESTAMP", time=NOW) for p in plans)
    assert all(p.hash_range is None and p.role == "shard" for p in plans)
    assert plans[4].parents == ("shardId-000000000001", "shardId-000000000003")
    assert [p.closed for p in plans] == [True, True, False, True, False]


def test_from_a_sequence_number_takes_the_descendants_with_the_shards_keys_only() -> None:
    request = ReplayRequest(
        "t", StartKind.AFTER, shard="shardId-000000000000", from_sequence=str(150 * 10**20)
    )
    plans, _ = plan_shards(STREAM, request)
    assert ids(plans) == ["0", "2", "3", "4"]
    origin, *rest = plans
    assert origin.start == ShardStart("AFTER_SEQUENCE_NUMBER", sequence=str(150 * 10**20))
    assert origin.hash_range is None
    assert origin.role == "origin"
    assert all(p.start == ShardStart("TRIM_HORIZON") for p in rest)
    assert all(p.hash_range == (0, HALF - 1) and p.role == "descendant" for p in rest)
    # Shard 4's other parent (1) is not replayed, so it does not wait for it.
    assert rest[2].parents == ("shardId-000000000003",)


def test_to_a_sequence_number_reads_that_shard_only() -> None:
    request = ReplayRequest(
        "t",
        StartKind.TRIM_HORIZON,
        shard="shardId-000000000000",
        to_sequence=str(190 * 10**20),
    )
    plans, _ = plan_shards(STREAM, request)
    assert ids(plans) == ["0"]
    assert plans[0].stop_sequence == str(190 * 10**20)


def test_sequence_numbers_outside_the_shard_are_refused() -> None:
    with pytest.raises(ReplayInputError, match="is not in shardId-000000000000: its sequence"):
        plan_shards(
            STREAM,
            ReplayRequest("t", StartKind.SEQUENCE, shard="shardId-000000000000", from_sequence="1"),
        )
    with pytest.raises(ReplayInputError, match="--to-sequence"):
        check_sequence_in_shard(STREAM[4], str(250 * 10**20), "--to-sequence")
    check_sequence_in_shard(STREAM[2], str(10**40), "--from-sequence")  # open: no end
    with pytest.raises(ReplayInputError, match="--shard shardId-000000000009 is not a shard"):
        plan_shards(
            STREAM,
            ReplayRequest("t", StartKind.TRIM_HORIZON, shard="shardId-000000000009"),
        )


def test_resuming_skips_finished_shards_and_starts_after_the_saved_positions() -> None:
    request = ReplayRequest("t", StartKind.TRIM_HORIZON)
    progress = {
        "shardId-000000000000": ShardProgress(ShardStatus.ENDED, str(198 * 10**20), 9),
        "shardId-000000000001": ShardProgress(ShardStatus.PENDING, str(123 * 10**20), 3),
    }
    plans, done = plan_shards(STREAM, request, progress)
    assert done == {"shardId-000000000000": ShardStatus.ENDED}
    assert ids(plans) == ["1", "2", "3", "4"]
    assert plans[0].start == ShardStart("AFTER_SEQUENCE_NUMBER", sequence=str(123 * 10**20))
    assert plans[1].start == ShardStart("TRIM_HORIZON")
    assert ready(plans[1], done)  # its parent ended in the earlier run
    assert not ready(plans[3], done)
    assert blocked(plans[1], {"shardId-000000000000": ShardStatus.CUT})
    assert not blocked(plans[1], done)


def test_hash_keys_are_md5_of_the_partition_key() -> None:
    # Kinesis: MD5("a") = 0cc175b9c0f1b6a831c399e269772661
    assert hash_key("a") == 0x0CC175B9C0F1B6A831C399E269772661


def test_lost_window_of_a_timestamp() -> None:
    day = timedelta(hours=24)
    old = NOW - 3 * day
    assert lost_window(from_time=NOW - 2 * day, now=NOW, retention_hours=24, created=old) == (
        NOW - 2 * day,
        NOW - day,
    )
    # A stream younger than its retention has lost nothing, whatever the time asked.
    assert (
        lost_window(
            from_time=NOW - 2 * day, now=NOW, retention_hours=24, created=NOW - timedelta(hours=3)
        )
        is None
    )
    assert lost_window(from_time=NOW - day / 2, now=NOW, retention_hours=24, created=old) is None
    # Created after the time asked, but long enough ago: lost since the creation.
    created = NOW - 2 * day
    assert lost_window(from_time=NOW - 5 * day, now=NOW, retention_hours=24, created=created) == (
        created,
        NOW - day,
    )


# -- the state file --------------------------------------------------------------------------


def test_state_file_round_trip_and_resume_command(tmp_path: Path) -> None:
    request = ReplayRequest("/t.toml", StartKind.TRIM_HORIZON, force=True)
    path = default_state_path(tmp_path, "binlog", NOW, "abcdef123456")
    assert path == tmp_path / "replay" / "binlog-20260131T040000Z-abcdef.json"
    state = ReplayState(
        path, request, stream="binlog", stop_time=NOW, run_id="abcdef123456", created_at=NOW
    )
    state.advance("shardId-000000000000", "123", 5)
    state.advance("shardId-000000000000", "456", 2)
    state.finish_shard("shardId-000000000001", ShardStatus.CUT)
    state.note_not_applied([{"shard_id": "shardId-000000000000", "reason": "not_json"}])
    state.set_status("interrupted")
    loaded = ReplayState.load(path)
    assert loaded.request == request
    assert loaded.stop_time == NOW
    assert loaded.run_id == "abcdef123456"
    assert loaded.status == "interrupted"
    assert loaded.shards == {
        "shardId-000000000000": ShardProgress(ShardStatus.PENDING, "456", 7),
        "shardId-000000000001": ShardProgress(ShardStatus.CUT, None, 0),
    }
    doc = json.loads(path.read_text())
    assert doc["resume"] == resume_command(path) == f"lazyrep replay --resume {path}"
    assert doc["not_applied"] == [{"shard_id": "shardId-000000000000", "reason": "not_json"}]
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_resume_command_quotes_the_path(tmp_path: Path) -> None:
    path = tmp_path / "a b" / "s.json"
    assert resume_command(path) == f"lazyrep replay --resume '{path}'"


def test_damaged_state_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayInputError, match="no such file"):
        ReplayState.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ReplayInputError, match="not a readable replay state file"):
        ReplayState.load(bad)
    bad.write_text('{"format": "other"}')
    with pytest.raises(ReplayInputError, match="not a replay state file"):
        ReplayState.load(bad)
    bad.write_text('{"format": "lazyrep-replay-state/1", "shards": {"s": {"status": "odd"}}}')
    with pytest.raises(ReplayInputError, match="damaged"):
        ReplayState.load(bad)
