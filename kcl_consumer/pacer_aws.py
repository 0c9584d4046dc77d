"""The pacer's one AWS call: the stream's retention, read at the worker's start."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from binlog.awserrors import classify
from binlog.errors import PermanentError, TransientError
from kcl_consumer.pacer_config import PacerConfig, check_deadline_fits

if TYPE_CHECKING:
    from types_boto3_kinesis import KinesisClient


def read_retention_s(client: KinesisClient, stream: str) -> float:
    """The stream's retention in seconds (DescribeStreamSummary's RetentionPeriodHours).

    `stream` is a stream name or ARN.

    Raises:
        TransientError: throttled, or the service failed; try again.
        PermanentError: no such stream, access denied, or another lasting error.
    """
    key = "StreamARN" if stream.startswith("arn:") else "StreamName"
    try:
        summary = client.describe_stream_summary(**{key: stream})
    except (ClientError, BotoCoreError) as exc:
        failure = classify(exc)
        error = TransientError if failure.retriable else PermanentError
        raise error(
            f"reading the retention of stream {stream!r}: {failure.code}: {failure.message}"
        ) from exc
    return float(summary["StreamDescriptionSummary"]["RetentionPeriodHours"]) * 3600.0


def verified_config(config: PacerConfig, client: KinesisClient, stream: str) -> PacerConfig:
    """Read the stream's retention, refuse a deadline that does not fit it, return the config.

    The returned config carries the retention actually configured on the stream.

    Raises:
        DeadlineError: the deadline does not fit (the message says what to change).
        TransientError / PermanentError: as `read_retention_s`.
    """
    retention_s = read_retention_s(client, stream)
    check_deadline_fits(config, retention_s)
    if retention_s == config.retention_s:
        return config
    return dataclasses.replace(config, retention_s=retention_s)
