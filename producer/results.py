"""What an action becomes: a position in the stream, or a typed failure naming it."""

from __future__ import annotations

from typing import NamedTuple

from binlog.attrvalue import Item
from binlog.envelope import Action
from binlog.errors import LazyRepError


class ActionResult(NamedTuple):
    """Where one action landed: replay can start from `shard_id` at `sequence_number`."""

    envelope_id: str
    action: Action
    table: str
    shard_id: str
    sequence_number: str


class FailedAction(NamedTuple):
    """An action the producer gave up on, with the last error it saw."""

    envelope_id: str
    action: Action
    table: str
    key: Item
    error_code: str
    message: str
    attempts: int


class DeliveryError(LazyRepError):
    """Actions that were not written to the stream: nothing is dropped silently.

    Raised by an action's future, by `flush()` and by `close()` (for every failure
    since the previous flush), and by `batch_write`'s future for its own actions.
    """

    def __init__(self, failures: list[FailedAction]) -> None:
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{first.action.value} on {first.table} {first.key} failed after {first.attempts} "
            f"attempt(s): {first.error_code}: {first.message}{more}"
        )
        self.failures = failures


class ProducerClosedError(LazyRepError):
    """An action was given to a producer after `close()`."""
