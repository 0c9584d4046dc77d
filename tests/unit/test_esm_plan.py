"""Pure planning of the local mapping: lineage, batching, ages, bisection; and its settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from emulators.esm_events import StreamRecord
from emulators.esm_plan import (
    ShardInfo,
    batch_is_due,
    bisect,
    event_size,
    ready_shards,
    split_expired,
    take_batch,
)
from emulators.esm_settings import EsmSettings, StartingPosition

SPLIT = [
    ShardInfo("p", closed=True),
    ShardInfo("c1", "p"),
    ShardInfo("c2", "p"),
]
MERGE = [
    ShardInfo("a", closed=True),
    ShardInfo("b", closed=True),
    ShardInfo("m", "a", "b"),
]


def rec(i: int, *, size: int = 1, arrival_s: float = 0.0) -> StreamRecord:
    return StreamRecord(str(i), "k", b"x" * size, arrival_s)


def test_children_wait_for_their_parent() -> None:
    assert ready_shards(SPLIT, ended=set(), running=set()) == ["p"]
    assert ready_shards(SPLIT, ended=set(), running={"p"}) == []
    assert ready_shards(SPLIT, ended={"p"}, running=set()) == ["c1", "c2"]


def test_a_merged_shard_waits_for_both_parents() -> None:
    assert ready_shards(MERGE, ended=set(), running=set()) == ["a", "b"]
    assert ready_shards(MERGE, ended={"a"}, running={"b"}) == []
    assert ready_shards(MERGE, ended={"a", "b"}, running=set()) == ["m"]


def test_a_parent_trimmed_from_the_stream_does_not_block_its_children() -> None:
    assert ready_shards(SPLIT[1:], ended=set(), running=set()) == ["c1", "c2"]


def test_take_batch_respects_batch_size() -> None:
    batch, rest = take_batch([rec(i) for i in range(5)], 3)
    assert ([r.sequence_number for r in batch], len(rest)) == (["0", "1", "2"], 2)


def test_take_batch_stays_under_the_payload_limit_but_never_empty() -> None:
    big = [rec(i, size=1_000_000) for i in range(6)]
    batch, rest = take_batch(big, 10_000)
    assert len(batch) == 4  # 4 x 1.33 MB of base64 fit in 6 MiB, 5 do not
    assert sum(event_size(r) for r in batch) <= 6 * 1024 * 1024
    assert len(rest) == 2
    batch, _ = take_batch(big, 10_000, max_payload_bytes=10)
    assert len(batch) == 1


@pytest.mark.parametrize(
    ("kwargs", "due"),
    [
        ({"buffered": 0, "window_s": 0.0, "waited_s": 9.0, "shard_exhausted": True}, False),
        ({"buffered": 1, "window_s": 0.0, "waited_s": 0.0, "shard_exhausted": False}, True),
        ({"buffered": 1, "window_s": 5.0, "waited_s": 1.0, "shard_exhausted": False}, False),
        ({"buffered": 1, "window_s": 5.0, "waited_s": 5.0, "shard_exhausted": False}, True),
        ({"buffered": 10, "window_s": 5.0, "waited_s": 0.0, "shard_exhausted": False}, True),
        ({"buffered": 1, "window_s": 5.0, "waited_s": 0.0, "shard_exhausted": True}, True),
    ],
)
def test_batch_is_due(kwargs: dict[str, Any], due: bool) -> None:
    assert batch_is_due(batch_size=10, **kwargs) is due


def test_split_expired_takes_the_old_prefix() -> None:
    batch = [rec(i, arrival_s=100.0 + i) for i in range(4)]
    expired, rest = split_expired(batch, now_s=161.5, max_age_s=60)
    assert [r.sequence_number for r in expired] == ["0", "1"]
    assert [r.sequence_number for r in rest] == ["2", "3"]
    assert split_expired(batch, now_s=1e9, max_age_s=-1) == ([], batch)


def test_bisect_halves() -> None:
    first, second = bisect([rec(i) for i in range(5)])
    assert ([r.sequence_number for r in first], [r.sequence_number for r in second]) == (
        ["0", "1"],
        ["2", "3", "4"],
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"maximum_batching_window_in_seconds": 301}, "maximum_batching_window_in_seconds"),
        ({"starting_position": "EARLIEST"}, "starting_position"),
        ({"starting_position": "AT_TIMESTAMP"}, "starting_position_timestamp"),
        ({"parallelization_factor": 2}, "parallelization_factor"),
        ({"function_response_types": ("Bogus",)}, "function_response_types"),
        ({"maximum_retry_attempts": -2}, "maximum_retry_attempts"),
        ({"maximum_record_age_in_seconds": 59}, "maximum_record_age_in_seconds"),
        ({"on_failure_destination": "arn:aws:sns:us-east-1:1:t"}, "on_failure_destination"),
        ({"poll_interval_s": 0}, "poll_interval_s"),
    ],
)
def test_settings_name_the_field_out_of_range(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EsmSettings(**kwargs)


def test_settings_from_the_aws_api_parameters() -> None:
    settings = EsmSettings.from_api(
        {
            "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            "FunctionName": "applier",
            "BatchSize": 500,
            "StartingPosition": "AT_TIMESTAMP",
            "StartingPositionTimestamp": 1700000000,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 5,
            "MaximumRecordAgeInSeconds": 3600,
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:1:dlq"}},
        },
        poll_interval_s=0.01,
    )
    assert settings.batch_size == 500
    assert settings.starting_position is StartingPosition.AT_TIMESTAMP
    assert settings.starting_position_timestamp == datetime.fromtimestamp(1700000000, UTC)
    assert settings.report_batch_item_failures
    assert settings.bisect_batch_on_function_error
    assert (settings.maximum_retry_attempts, settings.maximum_record_age_in_seconds) == (5, 3600)
    assert settings.on_failure_destination == "arn:aws:sqs:us-east-1:1:dlq"
    assert settings.poll_interval_s == 0.01
    with pytest.raises(ValueError, match="TumblingWindowInSeconds"):
        EsmSettings.from_api({"TumblingWindowInSeconds": 60})


def test_backoff_doubles_up_to_its_cap() -> None:
    settings = EsmSettings(retry_backoff_s=0.1, retry_backoff_max_s=0.5)
    assert [settings.backoff_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
