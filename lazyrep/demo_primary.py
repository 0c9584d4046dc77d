"""The demo's primary path: the local event source mapping calling the real Lambda handler,
metered from the outside (latency, WCU per second, what was parked and why).

The handler is `lambda_consumer.handler.handle`, unchanged; the meter wraps it as the
mapping's function and wraps the consumer's dead-letter store, so the counts come from
what the handler returned and what it parked, not from its logs.
"""

from __future__ import annotations

import base64
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binlog.awserrors import Failure
from binlog.capacity import write_units
from binlog.codec import decode
from binlog.deadletter import DeadLetter, DeadLetterStore, dead_letter_store
from binlog.errors import RecordError
from binlog.topology import Topology
from emulators.esm import EventSourceMapping
from emulators.esm_events import Handler
from emulators.esm_settings import EsmSettings


class CountingStore:
    """A dead-letter store that counts what it parked, by reason, then passes it on."""

    def __init__(self, inner: DeadLetterStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.parked: Counter[str] = Counter()

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        """Park through the real store; count the letters it accepted."""
        results = self._inner.park(letters)
        with self._lock:
            for letter, failure in zip(letters, results, strict=True):
                if failure is None:
                    self.parked[letter.reason] += 1
        return results


@dataclass(frozen=True, slots=True)
class PrimaryFigures:
    """The primary path so far."""

    done: int  # records the handler finished (applied, no-op, or parked)
    parked: int
    parked_reasons: dict[str, int]
    invocations: int
    lag_ms: int  # the mapping's IteratorAge: the newest finished record's age, 0 at the tip
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    peak_wcu: float
    total_wcu: float


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(bins: dict[int, float], start_s: float, end_s: float, amount: float) -> None:
    """Add `amount`, spread evenly over [start_s, end_s], into one-second bins."""
    if amount <= 0:
        return
    if end_s - start_s < 1e-6:
        bins[int(start_s)] = bins.get(int(start_s), 0.0) + amount
        return
    rate = amount / (end_s - start_s)
    second = int(start_s)
    while second < end_s:
        low, high = max(start_s, second), min(end_s, second + 1)
        if high > low:
            bins[second] = bins.get(second, 0.0) + rate * (high - low)
        second += 1


class PrimaryMeter:
    """The mapping's function: calls the handler, then records what it finished.

    A record is finished when its invocation returned and it is before the first record
    reported in `batchItemFailures` (the mapping delivers that one and the rest again).
    Latency: from the record's ApproximateArrivalTimestamp to its invocation's return.
    WCU: `binlog.capacity.write_units` of each finished record, spread over its invocation.
    """

    def __init__(self, handler: Handler, topology: Topology, store: CountingStore) -> None:
        self._handler = handler
        self._topology = topology
        self._store = store
        self._lock = threading.Lock()
        self._latencies_ms: list[float] = []
        self._wcu_bins: dict[int, float] = {}
        self._done = 0
        self._invocations = 0

    def __call__(self, event: dict[str, Any], context: Any, /) -> Mapping[str, Any] | None:
        started = time.time()
        response = self._handler(event, context)
        finished = time.time()
        records = event.get("Records") or []
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        latencies: list[float] = []
        wcu = 0.0
        names = self._topology.applier
        for record in records:
            kinesis = record["kinesis"]
            if kinesis["sequenceNumber"] in failed:
                break  # this one and the rest of the shard's batch come again
            latencies.append(1000 * (finished - float(kinesis["approximateArrivalTimestamp"])))
            try:
                envelope = decode(base64.b64decode(kinesis["data"]), self._topology.tables)
            except RecordError:
                continue  # parked: no table write
            wcu += write_units(
                envelope, version_attribute=names.version_attribute, id_attribute=names.id_attribute
            )
        with self._lock:
            self._invocations += 1
            self._done += len(latencies)
            self._latencies_ms.extend(latencies)
            spread(self._wcu_bins, started, finished, wcu)
        return response

    def figures(self, lag_ms: int) -> PrimaryFigures:
        """A snapshot of the counts (percentiles over every record so far)."""
        with self._lock:
            latencies = list(self._latencies_ms)
            bins = dict(self._wcu_bins)
            done, invocations = self._done, self._invocations
        reasons = dict(self._store.parked)
        return PrimaryFigures(
            done=done,
            parked=sum(reasons.values()),
            parked_reasons=reasons,
            invocations=invocations,
            lag_ms=lag_ms,
            latency_p50_ms=percentile(latencies, 0.50),
            latency_p99_ms=percentile(latencies, 0.99),
            peak_wcu=max(bins.values(), default=0.0),
            total_wcu=sum(bins.values()),
        )


class PrimaryPath:
    """The mapping and the metered handler, running in background threads."""

    def __init__(self, topology: Topology, topology_path: Path) -> None:
        if topology.dead_letter is None:
            raise ValueError("the demo topology needs a [dead_letter] store")
        os.environ["LAZYREP_TOPOLOGY"] = str(topology_path)
        # In Lambda the handler's JSON logs and EMF metrics go to stdout; here the demo's
        # display does, so keep only its errors.
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
        from lambda_consumer import handler  # noqa: PLC0415 - reads the variables above
        from lambda_consumer.consumer import build_consumer  # noqa: PLC0415
        from lambda_consumer.settings import ConsumerSettings  # noqa: PLC0415

        self.store = CountingStore(dead_letter_store(topology.dead_letter))
        consumer = build_consumer(
            ConsumerSettings.resolve(topology_path=str(topology_path)), dead_letters=self.store
        )
        handler.use(consumer)
        self.meter = PrimaryMeter(handler.handle, topology, self.store)
        settings = EsmSettings(
            batch_size=200,
            function_response_types=("ReportBatchItemFailures",),
            bisect_batch_on_function_error=True,
            poll_interval_s=0.2,
            shard_discovery_interval_s=5.0,
        )
        self.mapping = EventSourceMapping(
            topology.stream.name, self.meter, settings, region=topology.stream.region
        )

    def start(self) -> None:
        """Start polling (the stream must exist)."""
        self.mapping.start()

    def stop(self) -> None:
        """Stop polling; an invocation under way finishes first."""
        self.mapping.stop()
        from lambda_consumer import handler  # noqa: PLC0415

        handler.use(None)

    def figures(self) -> PrimaryFigures:
        """The counts so far, with the mapping's lag."""
        stats = self.mapping.stats()
        lag = max((s.iterator_age_ms or 0 for s in stats.shards), default=0)
        return self.meter.figures(lag)
