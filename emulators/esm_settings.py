"""Settings of the local event source mapping, named after CreateEventSourceMapping's.

The AWS-named fields carry AWS's ranges and defaults, so a setting that works here is
one `aws lambda create-event-source-mapping` accepts; the `*_s` fields below them tune
the emulator only (poll and discovery intervals, backoff) and have no AWS counterpart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"

MAX_BATCH_SIZE = 10_000
MAX_BATCHING_WINDOW_S = 300
MAX_RETRY_ATTEMPTS = 10_000
MIN_RECORD_AGE_S = 60
MAX_RECORD_AGE_S = 604_800
MAX_PARALLELIZATION_FACTOR = 10


class StartingPosition(StrEnum):
    """Where a mapping starts reading a shard it has no checkpoint for."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


@dataclass(frozen=True, slots=True)
class EsmSettings:
    """One Kinesis event source mapping: AWS's parameters, then the emulator's knobs.

    Raises:
        ValueError: a field is out of AWS's range (the message names the field).
    """

    batch_size: int = 100
    maximum_batching_window_in_seconds: float = 0.0
    starting_position: StartingPosition = StartingPosition.TRIM_HORIZON
    starting_position_timestamp: datetime | None = None
    parallelization_factor: int = 1
    function_response_types: tuple[str, ...] = ()
    bisect_batch_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    """-1: retry until the records expire (AWS's default)."""
    maximum_record_age_in_seconds: int = -1
    """-1: no age limit (AWS's default); otherwise 60 to 604,800."""
    on_failure_destination: str | None = None
    """DestinationConfig.OnFailure.Destination: an SQS queue ARN, URL or name."""
    function_name: str = "lazyrep-applier"
    function_timeout_s: float = 60.0
    """An invocation that runs longer counts as failed (Lambda would have stopped it)."""
    function_memory_mb: int = 128

    poll_interval_s: float = 1.0
    """Pause after an empty GetRecords: Lambda polls an idle shard once a second."""
    shard_discovery_interval_s: float = 1.0
    """How often ListShards runs to find the children of a SplitShard or MergeShards."""
    retry_backoff_s: float = 0.1
    """First pause before a retry; doubles per retry up to `retry_backoff_max_s`."""
    retry_backoff_max_s: float = 2.0
    max_concurrent_invocations: int | None = None
    """Cap on handler calls running at once over all shards (None: one per shard)."""

    def __post_init__(self) -> None:
        _int_range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _float_range(
            "maximum_batching_window_in_seconds",
            self.maximum_batching_window_in_seconds,
            0,
            MAX_BATCHING_WINDOW_S,
        )
        object.__setattr__(self, "starting_position", _position(self.starting_position))
        at_timestamp = self.starting_position is StartingPosition.AT_TIMESTAMP
        if at_timestamp and self.starting_position_timestamp is None:
            raise ValueError("starting_position_timestamp is required with AT_TIMESTAMP")
        if not at_timestamp and self.starting_position_timestamp is not None:
            raise ValueError("starting_position_timestamp is only valid with AT_TIMESTAMP")
        if (ts := self.starting_position_timestamp) is not None and ts.tzinfo is None:
            raise ValueError("starting_position_timestamp must be timezone-aware")
        _int_range("parallelization_factor", self.parallelization_factor, 1, 1)
        unknown = set(self.function_response_types) - {REPORT_BATCH_ITEM_FAILURES}
        if unknown:
            raise ValueError(
                f"function_response_types: {sorted(unknown)} unknown "
                f"(allowed: {REPORT_BATCH_ITEM_FAILURES})"
            )
        _int_range("maximum_retry_attempts", self.maximum_retry_attempts, -1, MAX_RETRY_ATTEMPTS)
        age = self.maximum_record_age_in_seconds
        if age != -1:
            _int_range("maximum_record_age_in_seconds", age, MIN_RECORD_AGE_S, MAX_RECORD_AGE_S)
        if self.on_failure_destination is not None:
            _check_destination(self.on_failure_destination)
        if not self.function_name or len(self.function_name) > 64:
            raise ValueError("function_name must be 1-64 characters")
        _float_range("function_timeout_s", self.function_timeout_s, 0.001, 900)
        _int_range("function_memory_mb", self.function_memory_mb, 128, 10_240)
        _float_range("poll_interval_s", self.poll_interval_s, 0.001, 60)
        _float_range("shard_discovery_interval_s", self.shard_discovery_interval_s, 0.001, 600)
        _float_range("retry_backoff_s", self.retry_backoff_s, 0, 60)
        _float_range("retry_backoff_max_s", self.retry_backoff_max_s, self.retry_backoff_s, 600)
        if self.max_concurrent_invocations is not None:
            _int_range("max_concurrent_invocations", self.max_concurrent_invocations, 1, 10_000)

    @property
    def report_batch_item_failures(self) -> bool:
        """Whether the handler's `batchItemFailures` are honoured (else ignored, as AWS does)."""
        return REPORT_BATCH_ITEM_FAILURES in self.function_response_types

    def backoff_s(self, retry: int) -> float:
        """Pause before retry number `retry` (1-based): exponential, capped."""
        delay: float = self.retry_backoff_s * 2.0 ** max(0, retry - 1)
        return min(self.retry_backoff_max_s, delay)

    @classmethod
    def from_api(cls, params: Mapping[str, Any], **emulator: Any) -> EsmSettings:
        """Settings from CreateEventSourceMapping's parameters (as in IaC or the CLI's JSON).

        `EventSourceArn` and `Enabled` are accepted and ignored; the emulator's own knobs
        come as keyword arguments.

        Raises:
            ValueError: an unknown parameter, or a value out of range.
        """
        unknown = (
            set(params) - set(_API_FIELDS) - {"EventSourceArn", "Enabled", "DestinationConfig"}
        )
        if unknown:
            raise ValueError(f"unsupported event source mapping parameters: {sorted(unknown)}")
        values: dict[str, Any] = {
            field: params[api] for api, field in _API_FIELDS.items() if api in params
        }
        if "function_response_types" in values:
            values["function_response_types"] = tuple(values["function_response_types"])
        if isinstance(ts := values.get("starting_position_timestamp"), int | float):
            values["starting_position_timestamp"] = datetime.fromtimestamp(ts).astimezone()
        destination = params.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination:
            values["on_failure_destination"] = destination
        return cls(**values, **emulator)


_API_FIELDS: Mapping[str, str] = {
    "FunctionName": "function_name",
    "BatchSize": "batch_size",
    "MaximumBatchingWindowInSeconds": "maximum_batching_window_in_seconds",
    "StartingPosition": "starting_position",
    "StartingPositionTimestamp": "starting_position_timestamp",
    "ParallelizationFactor": "parallelization_factor",
    "FunctionResponseTypes": "function_response_types",
    "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "MaximumRecordAgeInSeconds": "maximum_record_age_in_seconds",
}


def _position(value: object) -> StartingPosition:
    try:
        return StartingPosition(str(value))
    except ValueError:
        allowed = ", ".join(p.value for p in StartingPosition)
        raise ValueError(f"starting_position: {value!r} unknown (allowed: {allowed})") from None


def _int_range(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        if low == high:
            note = " (only ParallelizationFactor 1 is emulated)" if name.startswith("par") else ""
            raise ValueError(f"{name} must be {low}, got {value!r}{note}")
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _float_range(name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not low <= float(value) <= high:  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")


def _check_destination(destination: str) -> None:
    if destination.startswith("arn:"):
        parts = destination.split(":")
        if len(parts) != 6 or parts[2] != "sqs" or not parts[5]:
            raise ValueError(
                f"on_failure_destination: {destination!r} is not an SQS queue ARN "
                "(only SQS destinations are emulated)"
            )
    elif not destination.strip():
        raise ValueError("on_failure_destination must be a queue ARN, URL or name")
