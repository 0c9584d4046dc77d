"""`Producer`: the boto3 facade, safe to share between threads.

Calls validate and encode in the caller's thread, then queue; `max_in_flight`
sender threads batch into PutRecords and settle each action's future.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from binlog.clients import client_config, kinesis_client
from binlog.topology import KeySchema, Topology
from producer.accumulator import (
    Accumulator,
    Pending,
    Resolved,
    outcomes_from_exception,
    outcomes_from_response,
)
from producer.actions import ActionEncoder, OutgoingRecord
from producer.config import ProducerConfig
from producer.futures import ActionFuture
from producer.results import (
    ActionResult,
    DeliveryError,
    FailedAction,
    ProducerClosedError,
)
from producer.target import resolve_target

if TYPE_CHECKING:
    from types_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)


class Producer:
    """Writes DynamoDB actions to the binlog stream with boto3.

    Each method returns an `ActionFuture` resolving to an `ActionResult` (shard id,
    sequence number), or raising `DeliveryError` once retries are spent. Callbacks
    run in a sender thread holding the producer's lock: keep them short.
    `flush()` waits for everything sent so far and raises `DeliveryError` for any
    failure since the previous flush; `close()` flushes and stops the senders.
    """

    def __init__(
        self,
        topology: Topology | str | Path | None = None,
        *,
        stream: str | None = None,
        tables: Mapping[str, KeySchema] | None = None,
        region: str | None = None,
        client: KinesisClient | None = None,
        session: boto3.Session | None = None,
        botocore_config: Config | None = None,
        config: ProducerConfig | None = None,
        origin: str | None = None,
    ) -> None:
        self._config = config or ProducerConfig()
        target = resolve_target(topology, stream=stream, tables=tables, region=region)
        self._stream_arg = target.stream_argument()
        self._client = client or kinesis_client(
            region=target.region,
            session=session,
            config=client_config(
                botocore_config, pool=self._config.max_in_flight + 2, parameter_validation=False
            ),
        )
        self._encoder = ActionEncoder(target.tables, origin)
        self._acc: Accumulator[ActionFuture[ActionResult]] = Accumulator(self._config)
        self._cond_lock = threading.RLock()
        self._cond = threading.Condition(self._cond_lock)
        self._failures: list[FailedAction] = []
        self._flushing = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._sender, name=f"lazyrep-producer-{i}", daemon=True)
            for i in range(self._config.max_in_flight)
        ]
        for thread in self._threads:
            thread.start()
        # Daemon senders would die with unflushed records at exit: flush them first.
        atexit.register(_close_at_exit, weakref.ref(self))

    def put_item(
        self,
        table: str,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> ActionFuture[ActionResult]:
        """Queue a PutItem; `typed=True` takes attribute-value JSON instead of plain values.

        Raises:
            ActionError: the action is invalid (nothing is sent).
            ProducerClosedError: the producer is closed.
        """
        record = self._encoder.put(
            table, item, condition=condition, names=names, values=values, typed=typed
        )
        return self._submit([record])[0]

    def delete_item(
        self,
        table: str,
        key: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> ActionFuture[ActionResult]:
        """Queue a DeleteItem (raises as `put_item` does)."""
        record = self._encoder.delete(
            table, key, condition=condition, names=names, values=values, typed=typed
        )
        return self._submit([record])[0]

    def update_item(
        self,
        table: str,
        key: Mapping[str, Any],
        update: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> ActionFuture[ActionResult]:
        """Queue an UpdateItem with its update expression (raises as `put_item` does)."""
        record = self._encoder.update(
            table, key, update, condition=condition, names=names, values=values, typed=typed
        )
        return self._submit([record])[0]

    def batch_write(
        self,
        table: str,
        *,
        puts: Iterable[Mapping[str, Any]] = (),
        deletes: Iterable[Mapping[str, Any]] = (),
        typed: bool = False,
    ) -> ActionFuture[list[ActionResult]]:
        """Queue puts then deletes as one record each, sent together where the limits allow.

        The future gives the results in the order given, or raises `DeliveryError`
        naming every action of the batch that failed.

        Raises:
            ActionError: any action is invalid, or two touch one item (nothing is sent).
        """
        records = self._encoder.batch(table, puts, deletes, typed=typed)
        return _gather(self._submit(records), self._cond_lock)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued action is acknowledged or has failed.

        Raises:
            DeliveryError: actions failed since the previous flush (each is named).
            TimeoutError: `timeout` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._acc.buffered:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(f"{self._acc.buffered} actions still pending")
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(failures)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender threads; later calls raise `ProducerClosedError`.

        Raises:
            DeliveryError: as `flush`.
        """
        with self._cond:
            if self._closed:
                return
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            for thread in self._threads:
                thread.join(timeout)

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Actions queued or in flight."""
        with self._cond:
            return self._acc.buffered

    def _submit(self, records: list[OutgoingRecord]) -> list[ActionFuture[ActionResult]]:
        lock = self._cond_lock
        futures: list[ActionFuture[ActionResult]] = [ActionFuture(lock) for _ in records]
        with self._cond:
            if self._closed:
                raise ProducerClosedError("the producer is closed")
            while self._acc.buffered >= self._config.max_buffered_records:
                self._cond.wait()
            now = time.monotonic()
            wake = False
            for record, future in zip(records, futures, strict=True):
                wake = self._acc.add(Pending(record, future, now)) or wake
            if wake:
                self._cond.notify()
        return futures

    def _sender(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    flushing = self._flushing > 0 or self._closed
                    batch = self._acc.next_batch(now, flushing=flushing)
                    if batch:
                        if self._acc.has_full_batch:
                            self._cond.notify()  # another sender can take the next one
                        break
                    if self._closed and not self._acc.buffered:
                        return
                    self._cond.wait(self._acc.wait_s(now, flushing=flushing))
            try:
                response = self._client.put_records(
                    Records=[
                        {"Data": p.record.data, "PartitionKey": p.record.partition_key}
                        for p in batch
                    ],
                    **self._stream_arg,  # type: ignore[arg-type]
                )
                outcomes = outcomes_from_response(response["Records"])  # type: ignore[arg-type]
            except Exception as exc:  # classified, then settled per record
                logger.warning("PutRecords of %d records failed: %s", len(batch), exc)
                outcomes = outcomes_from_exception(exc, len(batch))
            with self._cond:
                self._settle(self._acc.complete(batch, outcomes, time.monotonic()))
                self._cond.notify_all()

    def _settle(self, resolved: list[Resolved[ActionFuture[ActionResult]]]) -> None:
        for handle, result, failure in resolved:
            if failure is not None:
                self._failures.append(failure)
                handle.set_exception(DeliveryError([failure]))
            else:
                handle.set_result(result)  # type: ignore[arg-type]


def _gather(
    futures: list[ActionFuture[ActionResult]], lock: threading.RLock
) -> ActionFuture[list[ActionResult]]:
    """One future for a batch: results in order, or every failure of the batch."""
    combined: ActionFuture[list[ActionResult]] = ActionFuture(lock)
    remaining = [len(futures)]

    def done(_: ActionFuture[ActionResult]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        failures = [
            failure
            for future in futures
            if isinstance(error := future.exception(), DeliveryError)
            for failure in error.failures
        ]
        if failures:
            combined.set_exception(DeliveryError(failures))
        else:
            combined.set_result([future.result() for future in futures])

    for future in futures:
        future.add_done_callback(done)
    return combined


def _close_at_exit(ref: weakref.ref[Producer]) -> None:
    producer = ref()
    if producer is None or producer._closed:
        return
    try:
        producer.close(timeout=30)
    except Exception:
        logger.exception("lazy-replication producer: actions not delivered at exit")
