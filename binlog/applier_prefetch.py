"""Strongly consistent BatchGetItem of many keys, for the applier's prefetch.

The applier reads, before a batch, what each item's first record needs to know
(does the item exist, its version and id, its tombstone's version) in a few
BatchGetItem requests instead of one failed conditional write and one GetItem
per record. BatchGetItem takes 100 keys per request and may return some of them
as `UnprocessedKeys` (throttling, 16 MB of response) without an error, and
botocore's retries do not resend those: this module does, with backoff, and
reports the keys it never read so the caller can treat them as unknown.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

MAX_KEYS_PER_REQUEST = 100  # BatchGetItem's limit, over all tables of one request

Key = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TableRead:
    """What to read from one table: a projection and the names it uses."""

    projection: str
    names: Mapping[str, str]


class BatchGetResult(NamedTuple):
    """Items found, per table, and keys never processed after every attempt."""

    found: dict[str, list[dict[str, Any]]]
    unread: dict[str, list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class BatchGetConfig:
    """Tries of unprocessed keys and the backoff between them (full jitter)."""

    attempts: int = 6
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.attempts <= 20:
            raise ValueError("BatchGetConfig.attempts must be between 1 and 20")
        if not 0 <= self.backoff_base_s <= self.backoff_max_s <= 60:
            raise ValueError(
                "BatchGetConfig.backoff_base_s and backoff_max_s must satisfy"
                " 0 <= backoff_base_s <= backoff_max_s <= 60"
            )


def batch_get(
    client: Any,
    keys: Mapping[str, Sequence[Key]],
    reads: Mapping[str, TableRead],
    *,
    config: BatchGetConfig | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchGetResult:
    """Read every key (no duplicates within a table) with ConsistentRead.

    Raises:
        botocore.exceptions.ClientError: a request failed after botocore's retries.
    """
    config = config or BatchGetConfig()
    found: dict[str, list[dict[str, Any]]] = {table: [] for table in keys}
    pending: list[tuple[str, Key]] = [(table, key) for table, ks in keys.items() for key in ks]
    for attempt in range(config.attempts):
        if not pending:
            break
        if attempt:
            ceiling = min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1))
            sleep(random.uniform(0, ceiling))
        unprocessed: list[tuple[str, Key]] = []
        for start in range(0, len(pending), MAX_KEYS_PER_REQUEST):
            chunk = pending[start : start + MAX_KEYS_PER_REQUEST]
            request: dict[str, dict[str, Any]] = {}
            for table, key in chunk:
                if table not in request:
                    read = reads[table]
                    request[table] = {
                        "Keys": [],
                        "ConsistentRead": True,
                        "ProjectionExpression": read.projection,
                        "ExpressionAttributeNames": dict(read.names),
                    }
                request[table]["Keys"].append(key)
            response = client.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found.setdefault(table, []).extend(items)
            for table, rest in (response.get("UnprocessedKeys") or {}).items():
                unprocessed.extend((table, key) for key in rest.get("Keys", []))
        pending = unprocessed
    unread: dict[str, list[dict[str, Any]]] = {}
    for table, key in pending:
        unread.setdefault(table, []).append(dict(key))
    return BatchGetResult(found, unread)
