"""Checkpoints of the local mapping, and how a restart resumes from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.esm_errors import StateFileError
from emulators.esm_state import TRIM_HORIZON, CheckpointStore, Position

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"


def test_a_shard_resumes_after_its_checkpoint_else_at_its_start() -> None:
    store = CheckpointStore(ARN)
    store.register("a", Position("AT_TIMESTAMP", timestamp_s=12.5))
    assert store.resume_position("a") == Position("AT_TIMESTAMP", timestamp_s=12.5)
    store.checkpoint("a", "42")
    assert store.resume_position("a") == Position("AFTER_SEQUENCE_NUMBER", sequence_number="42")


def test_register_keeps_a_known_shards_entry() -> None:
    store = CheckpointStore(ARN)
    store.register("a", TRIM_HORIZON)
    store.checkpoint("a", "7")
    store.register("a", Position("LATEST"))
    assert store.resume_position("a").sequence_number == "7"


def test_the_file_round_trips(tmp_path: Path) -> None:
    # GIVEN a store that checkpointed one shard and finished another
    path = tmp_path / "state" / "esm.json"
    store = CheckpointStore.open(ARN, path)
    store.register("a", TRIM_HORIZON)
    store.register("b", Position("AT_TIMESTAMP", timestamp_s=1.0))
    store.checkpoint("a", "99")
    store.mark_ended("b")
    # WHEN another process opens the file
    again = CheckpointStore.open(ARN, path)
    # THEN it resumes exactly there
    assert again.resume_position("a") == Position("AFTER_SEQUENCE_NUMBER", sequence_number="99")
    assert again.ended() == {"b"}
    assert not list(path.parent.glob(".*.tmp"))


def test_a_file_of_another_stream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "esm.json"
    CheckpointStore.open(ARN, path).register("a", TRIM_HORIZON)
    with pytest.raises(StateFileError, match="not arn:aws:kinesis:us-east-1:000000000000:stream/t"):
        CheckpointStore.open(ARN.replace("/s", "/t"), path)


@pytest.mark.parametrize("content", ["not json", "[]", json.dumps({"version": 9, "shards": {}})])
def test_an_unreadable_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "esm.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=str(path)):
        CheckpointStore.open(ARN, path)
