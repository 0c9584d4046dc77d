"""Checkpoints of the local mapping: in memory, optionally mirrored to a JSON file.

Lambda keeps a mapping's checkpoints itself, so disabling and re-enabling it resumes
where it stopped; the JSON file gives a restarted `lazyrep lambda run` the same. A
shard's entry says where to start without a checkpoint (`start`), the last record
processed or sent on (`sequence_number`), and whether it is fully done (`ended`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from emulators.esm_errors import StateFileError

logger = logging.getLogger(__name__)

STATE_VERSION = 1

PositionType = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AFTER_SEQUENCE_NUMBER"]


class Position(NamedTuple):
    """A GetShardIterator position: its type, and the timestamp or sequence number it needs."""

    type: PositionType
    timestamp_s: float | None = None
    sequence_number: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self._asdict().items() if v is not None}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Position:
        return cls(raw["type"], raw.get("timestamp_s"), raw.get("sequence_number"))


TRIM_HORIZON = Position("TRIM_HORIZON")


@dataclass(slots=True)
class ShardCheckpoint:
    start: Position
    sequence_number: str | None = None
    ended: bool = False

    def resume_position(self) -> Position:
        """Where reading resumes: after the checkpoint, else the shard's start."""
        if self.sequence_number is not None:
            return Position("AFTER_SEQUENCE_NUMBER", sequence_number=self.sequence_number)
        return self.start


class CheckpointStore:
    """Thread-safe per-shard checkpoints of one mapping; saved after every change if a
    path is set (atomically: a crash leaves the previous file, never half of one)."""

    def __init__(self, stream_arn: str, path: Path | None = None) -> None:
        self.stream_arn = stream_arn
        self.path = path
        self._shards: dict[str, ShardCheckpoint] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, stream_arn: str, path: Path | None) -> CheckpointStore:
        """A store for `stream_arn`, loaded from `path` if that file exists.

        Raises:
            StateFileError: the file is unreadable or belongs to another stream.
        """
        store = cls(stream_arn, path)
        if path is None or not path.exists():
            return store
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != STATE_VERSION:
                raise StateFileError(f"{path}: unknown state version {raw.get('version')!r}")
            shards = {
                shard_id: ShardCheckpoint(
                    Position.from_json(entry["start"]), entry.get("sequence_number"), entry["ended"]
                )
                for shard_id, entry in raw["shards"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFileError(f"{path}: unreadable mapping state ({exc})") from exc
        if raw.get("stream_arn") != stream_arn:
            raise StateFileError(
                f"{path} holds checkpoints of {raw.get('stream_arn')}, not {stream_arn}; "
                "use another --state-file or remove it"
            )
        store._shards = shards
        logger.info("resuming from %s (%d shards)", path, len(shards))
        return store

    def is_empty(self) -> bool:
        with self._lock:
            return not self._shards

    def known(self, shard_id: str) -> bool:
        with self._lock:
            return shard_id in self._shards

    def register(self, shard_id: str, start: Position, *, ended: bool = False) -> None:
        """Add a shard the first time it is seen; a known shard keeps its entry."""
        with self._lock:
            if shard_id in self._shards:
                return
            self._shards[shard_id] = ShardCheckpoint(start, ended=ended)
            self._save()

    def resume_position(self, shard_id: str) -> Position:
        with self._lock:
            return self._shards[shard_id].resume_position()

    def checkpoint(self, shard_id: str, sequence_number: str) -> None:
        with self._lock:
            self._shards[shard_id].sequence_number = sequence_number
            self._save()

    def mark_ended(self, shard_id: str) -> None:
        with self._lock:
            self._shards[shard_id].ended = True
            self._save()

    def ended(self) -> set[str]:
        with self._lock:
            return {shard_id for shard_id, c in self._shards.items() if c.ended}

    def snapshot(self) -> dict[str, ShardCheckpoint]:
        with self._lock:
            return {
                k: ShardCheckpoint(v.start, v.sequence_number, v.ended)
                for k, v in self._shards.items()
            }

    def _save(self) -> None:
        if self.path is None:
            return
        state = {
            "version": STATE_VERSION,
            "stream_arn": self.stream_arn,
            "shards": {
                shard_id: {
                    "start": c.start.to_json(),
                    "sequence_number": c.sequence_number,
                    "ended": c.ended,
                }
                for shard_id, c in sorted(self._shards.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.path)
