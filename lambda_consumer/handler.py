"""The Lambda entry point: `lambda_consumer.handler.handle` behind a Kinesis event source mapping.

Thin on purpose: JSON logs (Powertools Logger), CloudWatch metrics in embedded metric
format (Powertools Metrics, one document on stdout per invocation), and the consumer
built once per container. The work is in lambda_consumer/consumer.py.
Setup and the mapping's settings: docs/LAMBDA.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from lambda_consumer.consumer import BatchReport, Consumer, build_consumer
from lambda_consumer.events import PartialBatchResponse, stream_records
from lambda_consumer.settings import ConsumerSettings

SERVICE = "lazyrep-primary"
NAMESPACE = "LazyReplication"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE,
    service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE,
)
if "AWS_LAMBDA_RUNTIME_API" in os.environ:
    # In Lambda, the libraries' loggers write through the same JSON formatter; elsewhere
    # (tests, the local event source mapping) whoever runs the process configures logging.
    copy_config_to_registered_loggers(source_logger=logger, include={"binlog", "lambda_consumer"})

_consumer: Consumer | None = None
_lock = threading.Lock()
_metrics_lock = threading.Lock()


def use(consumer: Consumer | None) -> None:
    """Serve invocations with this consumer (tests, the local mapping); None: build on next use."""
    global _consumer  # noqa: PLW0603 - the container's one consumer
    with _lock:
        _consumer = consumer


def current_consumer() -> Consumer:
    """The container's consumer, built from the environment at the first invocation.

    Raises:
        ValueError, TopologyError: the settings or the topology file are wrong.
    """
    global _consumer  # noqa: PLW0603 - built once per container
    with _lock:
        if _consumer is None:
            _consumer = build_consumer(ConsumerSettings.resolve())
        return _consumer


def handle(event: Mapping[str, Any], context: Any) -> PartialBatchResponse:
    """Apply a Kinesis batch; report the first record to deliver again, if any.

    An exception (a malformed event, a misconfiguration, a bug) fails the whole
    invocation, and Lambda retries the batch as the mapping's settings say.
    Concurrent calls (an in-process mapping's shards) are safe.
    """
    logger.thread_safe_append_keys(request_id=getattr(context, "aws_request_id", None))
    batch = event.get("Records")
    size = len(batch) if isinstance(batch, list) else 0
    try:
        report = current_consumer().process(stream_records(event))
    except Exception:
        logger.exception("batch failed as a whole; Lambda delivers it again")
        _publish(size, None)
        raise
    _publish(size, report)
    if report.failed or report.parked:
        logger.warning("batch done with records parked or delivered again", extra=report.summary())
    else:
        logger.info("batch done", extra=report.summary())
    return report.response()


def _publish(batch_size: int, report: BatchReport | None) -> None:
    """One EMF document per invocation (the same metric names as the KCL consumer's).

    Powertools keeps one metric set per process: the lock keeps concurrent
    invocations from publishing each other's values.
    """
    with _metrics_lock:
        metrics.add_metric("BatchSize", MetricUnit.Count, batch_size)
        if report is not None:
            for name, value in (
                ("RecordsApplied", report.applied),
                ("RecordsSkippedStale", report.stale),
                ("RecordsConditionFailed", report.condition_failed),
                ("RecordsParked", report.parked),
                ("RecordsRetried", report.retried),
                ("DeadLetterFailures", report.dead_letter_failures),
            ):
                metrics.add_metric(name, MetricUnit.Count, value)
            if report.iterator_age_ms is not None:
                metrics.add_metric("IteratorAgeMs", MetricUnit.Milliseconds, report.iterator_age_ms)
        metrics.flush_metrics()
        # With POWERTOOLS_METRICS_DISABLED, flush neither prints nor clears: the set
        # would grow for the life of a long-running local mapping.
        metrics.clear_metrics()
