"""Record versions: a total order on one item's records that survives reshards.

An item lives in one shard at a time, and after SplitShard or MergeShards in a
child of that shard. Kinesis numbers shards in creation order (`shardId-000000000007`),
so a child's index is always above its parents'; sequence numbers only grow within
a shard. Ordering by (shard index, sequence number, subsequence number) therefore
puts one item's records in stream order, whatever the emulator's or AWS's
sequence numbers do across shards. Consumers check the first half of that claim
when they see a shard's parents (`check_lineage`).

The version is stored as DynamoDB binary, which compares byte-wise: 5 bytes of
shard index, 1 byte giving the sequence number's length, the sequence number's
big-endian bytes, 4 bytes of subsequence number. A 56-digit AWS sequence number
gives 34 bytes; the 128-digit maximum gives 64.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_SHARD_ID = re.compile(r"shardId-(\d{1,12})", re.ASCII)
_MAX_SUBSEQUENCE = 2**32 - 1


class LineageError(ValueError):
    """A child shard numbered below a parent: versions would order it wrongly."""


class Version(NamedTuple):
    """A record's place in its item's history."""

    shard_index: int
    sequence_number: int
    subsequence_number: int = 0

    def encode(self) -> bytes:
        """The binary form stored with the item; byte order equals version order."""
        sequence = self.sequence_number.to_bytes(
            max(1, (self.sequence_number.bit_length() + 7) // 8), "big"
        )
        return (
            self.shard_index.to_bytes(5, "big")
            + len(sequence).to_bytes(1, "big")
            + sequence
            + self.subsequence_number.to_bytes(4, "big")
        )

    @classmethod
    def decode(cls, raw: bytes) -> Version:
        """Read a stored version back (for tools that compare tables)."""
        if len(raw) < 11 or len(raw) != 10 + raw[5]:
            raise ValueError(f"not a lazy-replication version: {raw.hex()}")
        length = raw[5]
        return cls(
            int.from_bytes(raw[:5], "big"),
            int.from_bytes(raw[6 : 6 + length], "big"),
            int.from_bytes(raw[6 + length :], "big"),
        )

    def __str__(self) -> str:
        return f"shardId-{self.shard_index:012d}/{self.sequence_number}/{self.subsequence_number}"


def shard_index(shard_id: str) -> int:
    """7 for `shardId-000000000007`.

    Raises:
        ValueError: not a Kinesis shard id.
    """
    match = _SHARD_ID.fullmatch(shard_id)
    if match is None:
        raise ValueError(f"not a Kinesis shard id: {shard_id!r}")
    return int(match.group(1))


def version_of(shard_id: str, sequence_number: str, subsequence_number: int = 0) -> Version:
    """The version of the record at this position.

    Raises:
        ValueError: the shard id, sequence number or subsequence number is malformed.
    """
    if not sequence_number.isdigit() or not sequence_number.isascii() or len(sequence_number) > 128:
        raise ValueError(f"not a Kinesis sequence number: {sequence_number!r:.140}")
    if not 0 <= subsequence_number <= _MAX_SUBSEQUENCE:
        raise ValueError(f"subsequence number out of range: {subsequence_number}")
    return Version(shard_index(shard_id), int(sequence_number), subsequence_number)


def check_lineage(shard_id: str, parents: list[str | None]) -> None:
    """Refuse a shard numbered below one of its parents (the ordering relies on it).

    Raises:
        LineageError: naming the shard and the parent.
    """
    index = shard_index(shard_id)
    for parent in parents:
        if parent and shard_index(parent) >= index:
            raise LineageError(
                f"{shard_id} is a child of {parent} but not numbered above it: record "
                "versions would order them wrongly, so nothing is applied"
            )
