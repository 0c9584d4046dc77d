"""The producer's knobs, validated once, with their units in their names."""

from __future__ import annotations

from dataclasses import dataclass

# Kinesis PutRecords: at most 500 records and 5 MiB per call.
PUT_RECORDS_MAX_RECORDS = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """How the producer batches, retries and bounds its memory.

    linger_ms: how long a record may wait for company before a batch is sent.
    max_batch_records / max_batch_bytes: the size threshold that sends a batch at once.
    max_buffered_records: pending records beyond which calls block (back-pressure).
    max_attempts: sends of one record before its action fails with `DeliveryError`.
    backoff_base_ms / backoff_max_ms: exponential backoff with full jitter between sends.
    max_in_flight: PutRecords calls under way at once (one item is never in two).
    """

    linger_ms: float = 5.0
    max_batch_records: int = PUT_RECORDS_MAX_RECORDS
    max_batch_bytes: int = PUT_RECORDS_MAX_BYTES
    max_buffered_records: int = 50_000
    max_attempts: int = 10
    backoff_base_ms: float = 50.0
    backoff_max_ms: float = 5_000.0
    max_in_flight: int = 4

    def __post_init__(self) -> None:
        _check("linger_ms", self.linger_ms, 0, 60_000)
        _check("max_batch_records", self.max_batch_records, 1, PUT_RECORDS_MAX_RECORDS)
        _check("max_batch_bytes", self.max_batch_bytes, 1024 * 1024 + 256, PUT_RECORDS_MAX_BYTES)
        _check("max_buffered_records", self.max_buffered_records, 1, 10_000_000)
        _check("max_attempts", self.max_attempts, 1, 1_000)
        _check("backoff_base_ms", self.backoff_base_ms, 0, 60_000)
        _check("backoff_max_ms", self.backoff_max_ms, self.backoff_base_ms, 600_000)
        _check("max_in_flight", self.max_in_flight, 1, 64)


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(
            f"ProducerConfig.{name} must be between {low:g} and {high:g}, got {value!r}"
        )
