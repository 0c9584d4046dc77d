"""The rogue writer's records are refused by the codec, each with the reason the demo expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from binlog.codec import decode
from binlog.deadletter import UNAUTHORIZED_TABLE
from binlog.errors import Reason, RecordError
from binlog.topology import load_topology
from lazyrep.demo_rogue import RogueRecord, rogue_records

TOPOLOGY = Path(__file__).resolve().parents[2] / "lazyrep" / "demo_topology.toml"


@pytest.mark.parametrize("record", rogue_records(), ids=lambda r: r.what)
def test_each_rogue_record_is_refused_with_its_reason(record: RogueRecord) -> None:
    tables = load_topology(TOPOLOGY).tables
    with pytest.raises(RecordError) as refused:
        decode(record.data, tables)
    # consumers park the codec's unknown_table as unauthorized_table (a table not theirs)
    reason = refused.value.reason
    parked = UNAUTHORIZED_TABLE if reason is Reason.UNKNOWN_TABLE else reason.value
    assert parked == record.reason
    assert len(record.data) < 1024 * 1024  # every one fits a Kinesis record


def test_rogue_records_have_distinct_partition_keys() -> None:
    records = rogue_records()
    assert len({r.partition_key for r in records}) == len(records) == 6
