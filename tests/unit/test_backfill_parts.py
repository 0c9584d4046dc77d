"""backfill's pure parts: the WCU bucket, properties editing, tombstone keys, durations."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from binlog.applier import Applier
from binlog.envelope import Action, Envelope
from binlog.topology import KeyAttribute, KeySchema
from kcl_consumer.properties import parse_properties
from lazyrep.backfill import BackfillConfig, StartPosition
from lazyrep.backfill_copy import tombstone_key
from lazyrep.backfill_properties import set_keys, write_keys
from lazyrep.backfill_rate import WcuBucket
from lazyrep.cli_backfill import parse_duration

START = {"initialPositionInStreamExtended": "1700000000"}
UNSET = {"initialPositionInStream": "removed: the timestamp starts new leases"}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_bucket_spends_its_burst_then_holds_the_rate() -> None:
    t = FakeTime()
    bucket = WcuBucket(10, burst_s=0.5, clock=t.clock, sleep=t.sleep)
    for _ in range(5):  # the 5-WCU burst
        bucket.acquire(1)
    assert t.now == 0
    for _ in range(20):
        bucket.acquire(1)
    assert t.now == pytest.approx(2.0)  # 20 WCU at 10 WCU/s


def test_a_write_above_the_burst_borrows_and_the_next_ones_wait() -> None:
    t = FakeTime()
    bucket = WcuBucket(10, burst_s=0.1, clock=t.clock, sleep=t.sleep)
    bucket.acquire(30)  # a 30 KB item
    assert t.now == pytest.approx(2.9)
    bucket.acquire(1)
    assert t.now == pytest.approx(3.0)


def test_the_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate_wcu"):
        WcuBucket(0)
    with pytest.raises(ValueError, match="segments"):
        BackfillConfig(rate_wcu=1, segments=0)


def test_the_start_position_speaks_the_daemons_keys() -> None:
    position = StartPosition(noted_at=None, epoch_s=1_700_000_000)  # type: ignore[arg-type]
    assert position.properties() == START
    assert set(position.unset()) == {"initialPositionInStream"}  # the daemon refuses AT_TIMESTAMP
    assert position.start.isoformat() == "2023-11-14T22:13:20+00:00"


@pytest.mark.parametrize(
    ("text", "seconds"), [("900", 900), ("900s", 900), ("15m", 900), ("1.5h", 5400), ("0", 0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter, match="duration"):
        parse_duration("ten minutes")


def test_tombstone_keys_are_the_appliers() -> None:
    schema = KeySchema(KeyAttribute("pk", "S"), KeyAttribute("sk", "N"))
    key = {"pk": {"S": "a"}, "sk": {"N": "1.50"}}
    applier = Applier(None, {"orders": schema}, table_map={"orders": "orders-eu"})  # type: ignore[arg-type]
    envelope = Envelope("id", 0, Action.DELETE, "orders", key)
    assert tombstone_key("orders-eu", schema, key) == applier.item_identity(envelope)


PROPERTIES = (
    "# KCL properties\n"
    "executableName = python -m worker\n"
    "\n"
    "# A new lease starts at the oldest record.\n"
    "initialPositionInStream = TRIM_HORIZON\n"
    "streamName : shop\\\n"
    "    -binlog\n"
    "initialPositionInStream=LATEST\n"
    "! another comment\\\n"
    "maxRecords 100\n"
)


def test_set_keys_replaces_the_key_drops_repeats_and_appends_the_rest() -> None:
    result = set_keys(PROPERTIES, START, header="set by a test", remove=UNSET)
    kept = parse_properties(PROPERTIES)
    del kept["initialPositionInStream"]
    assert parse_properties(result) == kept | START
    assert result == (
        "# KCL properties\n"
        "executableName = python -m worker\n"
        "\n"
        "# A new lease starts at the oldest record.\n"
        "# removed: the timestamp starts new leases\n"
        "streamName : shop\\\n"
        "    -binlog\n"
        "! another comment\\\n"
        "maxRecords 100\n"
        "\n"
        "# set by a test\n"
        "initialPositionInStreamExtended = 1700000000\n"
    )


def test_set_keys_twice_is_set_keys_once() -> None:
    once = set_keys(PROPERTIES, START, header="h", remove=UNSET)
    assert set_keys(once, START, header="h", remove=UNSET) == once


def test_a_continued_value_of_the_key_is_replaced_whole_and_crlf_kept() -> None:
    text = "a = 1\r\ninitialPositionInStreamExtended = 12\\\r\n  34\r\nb = 2\r\n"
    result = set_keys(text, START)
    assert result == ("a = 1\r\ninitialPositionInStreamExtended = 1700000000\r\nb = 2\r\n")


def test_a_value_spanning_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="one properties line"):
        set_keys("", {"a": "1\n2"})
    with pytest.raises(ValueError, match="both set and remove"):
        set_keys("", {"a": "1"}, remove={"a": "gone"})


def test_write_keys_keeps_other_bytes_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "eu.properties"
    path.write_bytes(b"# caf\xe9\nstreamName = s\n")
    os.chmod(path, 0o640)
    write_keys(path, START)
    data = path.read_bytes()
    assert data.startswith(b"# caf\xe9\nstreamName = s\n")
    assert b"initialPositionInStreamExtended = 1700000000\n" in data
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert [p.name for p in tmp_path.iterdir()] == ["eu.properties"]
