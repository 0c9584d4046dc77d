"""`lazyrep rewind`'s input checks (pure: no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lazyrep.errors_cli import CliError
from lazyrep.rewind import RewindRequest, parse_time
from lazyrep.status_leases import Lease


def test_parse_time_takes_z_and_offsets() -> None:
    assert parse_time("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [("2024-05-01T12:00:00", "needs a time zone"), ("soon", "is not an ISO 8601 time")],
)
def test_parse_time_refuses(text: str, message: str) -> None:
    with pytest.raises(CliError, match=message) as caught:
        parse_time(text)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "exactly one"),
        ({"to_sequence": "1", "to_time": datetime.now(UTC)}, "exactly one"),
        ({"to_sequence": "-1"}, "not a sequence number"),
        ({"to_sequence": "1", "observe_s": 301}, "--observe"),
    ],
)
def test_request_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(CliError, match=message):
        RewindRequest("s", "app", "shardId-000000000000", **kw)  # type: ignore[arg-type]


def test_lease_from_kcl_item() -> None:
    lease = Lease.from_item(
        {
            "leaseKey": {"S": "123:stream:1:shardId-000000000003"},
            "checkpoint": {"S": "4955"},
            "checkpointSubSequenceNumber": {"N": "2"},
            "leaseOwner": {"S": "w-1"},
            "leaseCounter": {"N": "9"},
        }
    )
    assert lease.shard_id == "shardId-000000000003"
    assert lease.describe() == "checkpoint 4955/2, owner w-1, leaseCounter 9"
    assert Lease.from_item({"leaseKey": {"S": "x"}}).describe() == (
        "checkpoint none, owner none, leaseCounter none"
    )
