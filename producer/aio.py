"""`AsyncProducer`: the aiobotocore facade, safe to share between tasks of one loop.

The same methods as `Producer`, as coroutines: awaiting one validates, encodes
and queues the action (waiting only for back-pressure) and returns an
`asyncio.Future` of its `ActionResult`; `max_in_flight` sender tasks do the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from binlog.clients import aio_client_config
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
from producer.results import ActionResult, DeliveryError, FailedAction, ProducerClosedError
from producer.target import resolve_target

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient

logger = logging.getLogger(__name__)

AsyncActionFuture = asyncio.Future[ActionResult]


class AsyncProducer:
    """Writes DynamoDB actions to the binlog stream with aiobotocore.

    Use `async with AsyncProducer(...) as producer:`; each method returns an
    `asyncio.Future` resolving to an `ActionResult` or raising `DeliveryError`.
    """

    def __init__(
        self,
        topology: Topology | str | Path | None = None,
        *,
        stream: str | None = None,
        tables: Mapping[str, KeySchema] | None = None,
        region: str | None = None,
        client: KinesisClient | None = None,
        session: AioSession | None = None,
        botocore_config: AioConfig | None = None,
        config: ProducerConfig | None = None,
        origin: str | None = None,
    ) -> None:
        self._config = config or ProducerConfig()
        self._target = resolve_target(topology, stream=stream, tables=tables, region=region)
        self._stream_arg = self._target.stream_argument()
        self._client = client
        self._session = session
        self._botocore_config = botocore_config
        self._encoder = ActionEncoder(self._target.tables, origin)
        self._acc: Accumulator[AsyncActionFuture] = Accumulator(self._config)
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()
        self._failures: list[FailedAction] = []
        self._flushing = 0
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._exit_stack = AsyncExitStack()

    async def start(self) -> AsyncProducer:
        """Open the client (unless one was given) and start the sender tasks."""
        if self._tasks:
            return self
        if self._client is None:
            session = self._session or get_session()
            config = aio_client_config(
                self._botocore_config,
                pool=self._config.max_in_flight + 2,
                parameter_validation=False,
            )
            self._client = await self._exit_stack.enter_async_context(
                session.create_client("kinesis", region_name=self._target.region, config=config)
            )
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"lazyrep-producer-{i}")
            for i in range(self._config.max_in_flight)
        ]
        return self

    async def put_item(
        self,
        table: str,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> AsyncActionFuture:
        """Queue a PutItem (see `Producer.put_item`)."""
        record = self._encoder.put(
            table, item, condition=condition, names=names, values=values, typed=typed
        )
        return (await self._submit([record]))[0]

    async def delete_item(
        self,
        table: str,
        key: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> AsyncActionFuture:
        """Queue a DeleteItem (see `Producer.delete_item`)."""
        record = self._encoder.delete(
            table, key, condition=condition, names=names, values=values, typed=typed
        )
        return (await self._submit([record]))[0]

    async def update_item(
        self,
        table: str,
        key: Mapping[str, Any],
        update: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> AsyncActionFuture:
        """Queue an UpdateItem (see `Producer.update_item`)."""
        record = self._encoder.update(
            table, key, update, condition=condition, names=names, values=values, typed=typed
        )
        return (await self._submit([record]))[0]

    async def batch_write(
        self,
        table: str,
        *,
        puts: Iterable[Mapping[str, Any]] = (),
        deletes: Iterable[Mapping[str, Any]] = (),
        typed: bool = False,
    ) -> asyncio.Future[list[ActionResult]]:
        """Queue a batch (see `Producer.batch_write`)."""
        records = self._encoder.batch(table, puts, deletes, typed=typed)
        return _gather(await self._submit(records))

    async def flush(self) -> None:
        """Wait until every queued action is settled (raises as `Producer.flush`)."""
        self._flushing += 1
        self._wakeup.set()
        try:
            while self._acc.buffered:
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._flushing -= 1
        failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(failures)

    async def close(self) -> None:
        """Flush, stop the senders and close the client (raises as `flush`)."""
        if self._closed:
            return
        try:
            if self._tasks:
                await self.flush()
        finally:
            self._closed = True
            self._wakeup.set()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._exit_stack.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        """Actions queued or in flight."""
        return self._acc.buffered

    async def _submit(self, records: list[OutgoingRecord]) -> list[AsyncActionFuture]:
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        if not self._tasks:
            await self.start()
        while self._acc.buffered >= self._config.max_buffered_records:
            self._changed.clear()
            await self._changed.wait()
        loop = asyncio.get_running_loop()
        futures: list[AsyncActionFuture] = [loop.create_future() for _ in records]
        now = time.monotonic()
        wake = False
        for record, future in zip(records, futures, strict=True):
            wake = self._acc.add(Pending(record, future, now)) or wake
        if wake:
            self._wakeup.set()
        return futures

    async def _sender(self) -> None:
        client = self._client
        if client is None:  # pragma: no cover - start() sets it before creating senders
            raise RuntimeError("the producer has no client")
        while True:
            now = time.monotonic()
            flushing = self._flushing > 0
            batch = self._acc.next_batch(now, flushing=flushing)
            if not batch:
                wait = self._acc.wait_s(now, flushing=flushing)
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            try:
                response = await client.put_records(
                    Records=[
                        {"Data": p.record.data, "PartitionKey": p.record.partition_key}
                        for p in batch
                    ],
                    **self._stream_arg,  # type: ignore[arg-type]
                )
                outcomes = outcomes_from_response(response["Records"])  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified, then settled per record
                logger.warning("PutRecords of %d records failed: %s", len(batch), exc)
                outcomes = outcomes_from_exception(exc, len(batch))
            self._settle(self._acc.complete(batch, outcomes, time.monotonic()))
            self._wakeup.set()
            self._changed.set()

    def _settle(self, resolved: list[Resolved[AsyncActionFuture]]) -> None:
        for handle, result, failure in resolved:
            if handle.done():  # the caller cancelled it; the record was still sent
                continue
            if failure is not None:
                self._failures.append(failure)
                handle.set_exception(DeliveryError([failure]))
            else:
                handle.set_result(result)  # type: ignore[arg-type]


def _gather(futures: list[AsyncActionFuture]) -> asyncio.Future[list[ActionResult]]:
    """One future for a batch: results in order, or every failure of the batch."""
    combined: asyncio.Future[list[ActionResult]] = asyncio.get_running_loop().create_future()
    remaining = [len(futures)]

    def done(_: AsyncActionFuture) -> None:
        remaining[0] -= 1
        if remaining[0] or combined.done():
            return
        failures = [
            failure
            for future in futures
            if not future.cancelled() and isinstance(error := future.exception(), DeliveryError)
            for failure in error.failures
        ]
        if failures:
            combined.set_exception(DeliveryError(failures))
        else:
            combined.set_result([future.result() for future in futures])

    for future in futures:
        future.add_done_callback(done)
    return combined
