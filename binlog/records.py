"""A decoded record with where it came from: what the appliers take."""

from __future__ import annotations

from typing import NamedTuple

from binlog.envelope import Envelope
from binlog.version import Version, version_of


class Position(NamedTuple):
    """A record's place in the stream; replay and checkpoints speak in these."""

    shard_id: str
    sequence_number: str
    subsequence_number: int = 0

    @property
    def version(self) -> Version:
        """The version this record gives the item it writes (see binlog/version.py)."""
        return version_of(self.shard_id, self.sequence_number, self.subsequence_number)


class SourcedRecord(NamedTuple):
    """An envelope, its position, and when Kinesis received it (epoch ms)."""

    envelope: Envelope
    position: Position
    arrival_ms: int | None = None
