"""A local Kinesis event source mapping: Lambda's poller, in-process, for any handler.

`EventSourceMapping` polls a stream on the local stack (or any Kinesis endpoint boto3
reaches) the way Lambda's mapping does and calls `handler(event, context)` with events
in AWS's exact shape. It discovers shards with ListShards, starts a shard only once its
parents are fully processed, runs one batch per shard at a time, and applies the
mapping's batching, partial-failure, bisect, retry, record-age and on-failure rules
(esm_batch.py). What it does not emulate: docs/ESM.md.

    settings = EsmSettings(function_response_types=("ReportBatchItemFailures",),
                           bisect_batch_on_function_error=True, maximum_retry_attempts=3)
    with EventSourceMapping("binlog", handle, settings) as esm:
        esm.drain(timeout_s=30)      # every shard at its tip, nothing in flight
        print(esm.stats())
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from binlog.clients import boto3_client, client_config
from emulators.esm_aws import KinesisSource, SqsDestination
from emulators.esm_errors import EsmConfigError, EsmError, QueueNotFoundError, StreamNotFoundError
from emulators.esm_events import ACCOUNT_ID, FunctionIdentity, Handler
from emulators.esm_plan import ShardInfo, ready_shards
from emulators.esm_settings import EsmSettings, StartingPosition
from emulators.esm_shard import PollerDeps, ShardPoller
from emulators.esm_state import TRIM_HORIZON, CheckpointStore, Position
from emulators.esm_stats import EsmStats, StatsRecorder

__all__ = [
    "EsmConfigError",
    "EsmError",
    "EsmSettings",
    "EventSourceMapping",
    "QueueNotFoundError",
    "StartingPosition",
    "StreamNotFoundError",
]

logger = logging.getLogger(__name__)


class EventSourceMapping:
    """Lambda's Kinesis event source mapping for one stream and one in-process handler.

    Clients default to boto3's (endpoints from AWS_ENDPOINT_URL_KINESIS / _SQS); pass
    your own to share a session or a botocore Config. With `state_file`, checkpoints
    survive a restart; without it they live as long as this object.
    """

    def __init__(
        self,
        stream_name: str,
        handler: Handler,
        settings: EsmSettings | None = None,
        *,
        region: str | None = None,
        kinesis: Any = None,
        sqs: Any = None,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream_name = stream_name
        self.handler = handler
        self.settings = settings or EsmSettings()
        # One connection per shard poller, plus discovery; botocore's own retries stay low
        # because the pollers back off and retry themselves.
        config = client_config(max_attempts=2, pool=64)
        self._kinesis = kinesis or boto3_client("kinesis", region=region, config=config)
        self._sqs = sqs
        self.region = region or str(self._kinesis.meta.region_name)
        self.state_file = state_file
        self._clock = clock
        self._source = KinesisSource(self._kinesis, stream_name)
        self._stats = StatsRecorder()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pollers: dict[str, ShardPoller] = {}
        self._shards: list[ShardInfo] = []
        self._discovered_at = float("-inf")
        self._coordinator: threading.Thread | None = None
        self._store: CheckpointStore | None = None
        self._deps: PollerDeps | None = None
        self._pinned: dict[str, str] = {}

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Check the stream (and destination), load checkpoints, start polling in the background.

        Raises:
            StreamNotFoundError: the stream does not exist.
            QueueNotFoundError: the on-failure queue does not exist.
            StateFileError: the state file is unreadable or for another stream.
            EsmIOError: Kinesis or SQS could not be reached.
        """
        if self.running:
            raise RuntimeError("the mapping is already running")
        stream_arn = self._source.stream_arn()
        destination = None
        if self.settings.on_failure_destination is not None:
            sqs = self._sqs or boto3_client("sqs", region=self.region, config=client_config())
            destination = SqsDestination(sqs, self.settings.on_failure_destination)
            destination.resolve()
        store = self._store
        if store is None or store.stream_arn != stream_arn:
            store = CheckpointStore.open(stream_arn, self.state_file)
        account = stream_arn.split(":")[4] or ACCOUNT_ID
        who = FunctionIdentity(self.settings.function_name, self.region, stream_arn, account)
        self._stop.clear()
        self._deps = PollerDeps(
            settings=self.settings,
            handler=self.handler,
            source=self._source,
            store=store,
            who=who,
            destination=destination,
            stats=self._stats,
            stop=self._stop,
            clock=self._clock,
            invoke_slots=(
                None
                if self.settings.max_concurrent_invocations is None
                else threading.Semaphore(self.settings.max_concurrent_invocations)
            ),
        )
        self._store = store
        self._register(self._source.list_shards(), first_start=store.is_empty())
        self._coordinator = threading.Thread(target=self._coordinate, name="esm", daemon=True)
        self._coordinator.start()
        logger.info(
            "event source mapping started",
            extra={"stream_arn": stream_arn, "function": who.function_arn},
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling; an invocation in progress finishes, later batches do not start.

        Records not checkpointed are delivered again by the next start (at least once).
        """
        self._stop.set()
        self._wake.set()
        if self._coordinator is not None:
            self._coordinator.join(timeout_s)
            self._coordinator = None
        with self._lock:
            pollers = list(self._pollers.values())
            self._pollers.clear()
        deadline = time.monotonic() + timeout_s
        for poller in pollers:
            poller.thread.join(max(0.0, deadline - time.monotonic()))
        if any(p.thread.is_alive() for p in pollers):
            logger.warning("some shard pollers did not stop within %.1f s", timeout_s)

    @property
    def running(self) -> bool:
        return self._coordinator is not None and self._coordinator.is_alive()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # waiting ---------------------------------------------------------------------------

    def drain(self, timeout_s: float = 30.0) -> EsmStats:
        """Block until every shard is at its tip (or ended) and nothing is in flight.

        Only polls and a shard discovery begun after the call count, so whatever was
        written before it has been delivered, retried or sent on when this returns.

        Raises:
            RuntimeError: the mapping is not running.
            TimeoutError: still busy after `timeout_s` (e.g. a poison record retried
                forever with MaximumRetryAttempts -1); the message says where.
        """
        if not self.running:
            raise RuntimeError("the mapping is not running; call start() first")
        t0 = time.monotonic()
        self._wake.set()
        deadline = t0 + timeout_s
        pause = min(0.01, self.settings.poll_interval_s)
        while not self._idle_since(t0):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mapping not idle after {timeout_s:g} s: {self._busy_summary()}"
                )
            time.sleep(pause)
        return self.stats()

    def run_until_idle(self, timeout_s: float = 30.0) -> EsmStats:
        """`start`, `drain`, `stop`: process what the stream holds now, then return.

        Raises:
            TimeoutError: see `drain` (the mapping is stopped either way).
        """
        self.start()
        try:
            self.drain(timeout_s)
        finally:
            self.stop()
        return self.stats()

    def stats(self) -> EsmStats:
        """Counters so far, and each shard's state, checkpoint and lag."""
        checkpoints: dict[str, str | None] = {}
        if self._store is not None:
            checkpoints = {k: v.sequence_number for k, v in self._store.snapshot().items()}
        return self._stats.snapshot(checkpoints)

    # internals -------------------------------------------------------------------------

    def _register(self, shards: list[ShardInfo], *, first_start: bool) -> None:
        """Give each newly seen shard its start position.

        On the first start, shards get the configured StartingPosition; LATEST takes a
        real LATEST iterator now for every open shard (a closed one can get no new
        records, so it is done) and records the start time for restarts. Shards found
        later, or after a restart, are children of processed shards: TRIM_HORIZON.
        """
        assert self._store is not None
        settings = self.settings
        for shard in shards:
            if self._store.known(shard.shard_id):
                continue
            if not first_start or settings.starting_position is StartingPosition.TRIM_HORIZON:
                self._store.register(shard.shard_id, TRIM_HORIZON)
            elif settings.starting_position is StartingPosition.AT_TIMESTAMP:
                assert settings.starting_position_timestamp is not None
                at = settings.starting_position_timestamp.timestamp()
                self._store.register(shard.shard_id, Position("AT_TIMESTAMP", timestamp_s=at))
            elif shard.closed:
                self._store.register(shard.shard_id, TRIM_HORIZON, ended=True)
            else:
                self._pinned[shard.shard_id] = self._source.latest_iterator(shard.shard_id)
                now = Position("AT_TIMESTAMP", timestamp_s=self._clock())
                self._store.register(shard.shard_id, now)

    def _coordinate(self) -> None:
        """Discover shards and start the ready ones until stopped."""
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()
            try:
                shards = self._source.list_shards()
                self._register(shards, first_start=False)
                self._launch_ready(shards)
            except EsmError as exc:
                failures += 1
                self._stats.error(f"ListShards: {exc}")
                logger.warning("shard discovery failed: %s", exc)
                self._stop.wait(self.settings.backoff_s(failures))
                continue
            except Exception as exc:
                failures += 1
                self._stats.error(f"discovery: {type(exc).__name__}: {exc}")
                logger.exception("shard discovery failed")
                self._stop.wait(self.settings.backoff_s(failures))
                continue
            failures = 0
            with self._lock:
                self._shards = shards
                self._discovered_at = started
            self._wake.wait(self.settings.shard_discovery_interval_s)

    def _launch_ready(self, shards: list[ShardInfo]) -> None:
        assert self._store is not None
        assert self._deps is not None
        ended = self._store.ended()
        with self._lock:
            running = set(self._pollers)
            for shard_id in ready_shards(shards, ended, running):
                if self._stop.is_set():
                    return
                poller = ShardPoller(
                    shard_id,
                    self._deps,
                    on_end=lambda _shard: self._wake.set(),
                    pinned_iterator=self._pinned.pop(shard_id, None),
                )
                self._pollers[shard_id] = poller
                poller.start()
            for shard in shards:
                if shard.shard_id in ended:
                    self._stats.shard_state(shard.shard_id, "ended")
                elif shard.shard_id not in self._pollers:
                    self._stats.shard_state(shard.shard_id, "waiting")

    def _idle_since(self, t0: float) -> bool:
        assert self._store is not None
        ended = self._store.ended()
        with self._lock:
            if self._discovered_at < t0:
                return False
            for shard in self._shards:
                if shard.shard_id in ended:
                    continue
                poller = self._pollers.get(shard.shard_id)
                if poller is None or not poller.idle_since(t0):
                    return False
            return True

    def _busy_summary(self) -> str:
        stats = self.stats()
        busy = [
            f"{s.shard_id} {s.state} at {s.checkpoint}" for s in stats.shards if s.state != "ended"
        ]
        note = f"; last error: {stats.last_error}" if stats.last_error else ""
        return f"retries {stats.retries}, shards: {', '.join(busy) or 'none'}{note}"
