"""Errors of the local event source mapping; `retriable` says whether polling goes on."""

from __future__ import annotations

from typing import ClassVar

from binlog.errors import LazyRepError


class EsmError(LazyRepError):
    """Root of the mapping's errors."""


class EsmConfigError(EsmError):
    """The mapping cannot run as configured (message says what to fix)."""


class StreamNotFoundError(EsmConfigError):
    """The event source stream does not exist at the Kinesis endpoint."""


class QueueNotFoundError(EsmConfigError):
    """The on-failure destination queue does not exist at the SQS endpoint."""


class StateFileError(EsmConfigError):
    """The checkpoint file is unreadable or belongs to another stream."""


class EsmIOError(EsmError):
    """A Kinesis or SQS call failed in a way a later attempt may not (throttling, 5xx,
    connection errors): the poller backs off and tries again."""

    retriable: ClassVar[bool] = True
