"""The binlog envelope: one action on one item, as it travels in one stream record."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FORMAT_VERSION = 1

# Kinesis: a record's data plus partition key may total 1 MiB.
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256

Item = dict[str, dict[str, Any]]


class Action(StrEnum):
    """The DynamoDB write an envelope carries (BatchWrite is split into these)."""

    PUT = "PutItem"
    DELETE = "DeleteItem"
    UPDATE = "UpdateItem"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One action on one item, values in boto3's low-level form (binary as `bytes`).

    `id` identifies the action across producer retries: a record seen twice with the
    same id is one action delivered twice. `time_ms` is the producer's clock.
    """

    id: str
    time_ms: int
    action: Action
    table: str
    key: Item
    item: Item | None = None
    update: str | None = None
    condition: str | None = None
    names: dict[str, str] | None = None
    values: Item | None = None
    origin: str | None = None
