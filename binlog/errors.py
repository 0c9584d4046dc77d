"""One root exception for the project, with a `retriable` flag subclasses set.

Callers decide what to do from the type and the flag, never from message text
(aiokafka's errors.py pattern). `ClientError` is translated at the I/O edge only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class LazyRepError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: ClassVar[bool] = False


class Reason(StrEnum):
    """Why a record or an action was refused; stable codes for logs, metrics and dead letters."""

    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    BAD_VALUE = "bad_value"
    FLOAT_VALUE = "float_value"
    KEY_MISMATCH = "key_mismatch"
    UNKNOWN_TABLE = "unknown_table"
    ITEM_TOO_LARGE = "item_too_large"
    RECORD_TOO_LARGE = "record_too_large"
    TOO_DEEP = "too_deep"
    BAD_EXPRESSION = "bad_expression"
    DUPLICATE_KEY = "duplicate_key"


class RecordError(LazyRepError, ValueError):
    """A stream record that cannot be decoded into an envelope; consumers park it.

    `reason` is a stable code; `detail` says exactly what is wrong and where.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ActionError(RecordError):
    """An action the SDK refuses before sending anything (same reasons as `RecordError`)."""


class TopologyError(LazyRepError, ValueError):
    """A mistake in the topology file, naming the field and what it allows."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TransientError(LazyRepError):
    """A failure worth retrying: throttling, 5xx, a dropped connection."""

    retriable = True


class PermanentError(LazyRepError):
    """A failure that retrying cannot fix: validation, missing resource, access denied."""
