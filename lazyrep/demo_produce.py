"""The demo's writers: the sync (boto3) and async (aiobotocore) SDKs, paced, in threads.

Each writer owns its items (lazyrep.workload), so the order of one item's actions is
the order its writer issued them; writers keep to `rate_per_s / writers` actions a
second so the primary can keep up and its latency means something.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from binlog.errors import ActionError
from binlog.topology import Topology
from lazyrep.workload import Op
from producer import ActionResult, AsyncProducer, Producer


@dataclass
class Production:
    """The writers' shared counters, and the last sequence number written to each shard."""

    produced: int = 0
    last_sequence: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # the demo gave up

    def sent(self, actions: int) -> None:
        """Count actions the SDK accepted."""
        with self.lock:
            self.produced += actions

    def landed(self, shard_id: str, sequence_number: str) -> None:
        """A record is in the stream at this position."""
        with self.lock:
            number = int(sequence_number)
            if number > self.last_sequence.get(shard_id, -1):
                self.last_sequence[shard_id] = number

    def results(self, value: ActionResult | list[ActionResult]) -> None:
        """Every record of an SDK call landed."""
        for result in value if isinstance(value, list) else [value]:
            self.landed(result.shard_id, result.sequence_number)


def _pause(started: float, sent: int, rate_per_s: float) -> float:
    """Seconds to wait so that a writer's `sent` actions keep to its rate."""
    return max(0.0, started + sent / rate_per_s - time.monotonic())


def run_sync(
    topology: Topology, plans: list[list[Op]], rate_per_s: float, state: Production
) -> None:
    """One boto3 thread per plan, through one `Producer`; `rate_per_s` per writer."""
    with Producer(topology) as producer:

        def write(ops: list[Op]) -> None:
            futures = []
            started, sent = time.monotonic(), 0
            for op in ops:
                if state.stop.is_set():
                    break
                futures.append(getattr(producer, op.method)(op.table, **op.kwargs))
                sent += len(op.actions)
                state.sent(len(op.actions))
                time.sleep(_pause(started, sent, rate_per_s))
            for future in futures:
                state.results(future.result())

        threads = [threading.Thread(target=write, args=(ops,)) for ops in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def run_async(
    topology: Topology, plans: list[list[Op]], rate_per_s: float, state: Production
) -> None:
    """One asyncio task per plan, through one `AsyncProducer`; `rate_per_s` per writer."""

    async def main() -> None:
        async with AsyncProducer(topology) as producer:

            async def write(ops: list[Op]) -> None:
                futures = []
                started, sent = time.monotonic(), 0
                for op in ops:
                    if state.stop.is_set():
                        break
                    futures.append(await getattr(producer, op.method)(op.table, **op.kwargs))
                    sent += len(op.actions)
                    state.sent(len(op.actions))
                    await asyncio.sleep(_pause(started, sent, rate_per_s))
                for future in futures:
                    state.results(await future)

            await asyncio.gather(*(write(ops) for ops in plans))

    asyncio.run(main())


def start_writers(
    topology: Topology, plans: list[list[Op]], rate_per_s: float, state: Production
) -> list[threading.Thread]:
    """Half the plans on boto3 threads, half on aiobotocore tasks, `rate_per_s` in all."""
    half = len(plans) // 2
    per_writer = rate_per_s / len(plans)
    runs: list[tuple[str, Callable[[], None]]] = [
        ("boto3 writers", lambda: run_sync(topology, plans[:half], per_writer, state)),
        ("aiobotocore writers", lambda: run_async(topology, plans[half:], per_writer, state)),
    ]

    def guarded(name: str, run: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                run()
            except Exception as exc:  # reported by the demo, which then fails
                state.errors.append(f"{name}: {type(exc).__name__}: {exc}")

        return target

    # Daemon threads: Ctrl-C ends the demo without waiting for the writers to finish.
    threads = [
        threading.Thread(target=guarded(name, run), name=name, daemon=True) for name, run in runs
    ]
    for thread in threads:
        thread.start()
    return threads


def refused_examples(topology: Topology) -> list[tuple[str, str, str]]:
    """Invalid actions the SDK refuses before sending: (what, reason, message)."""
    attempts: list[tuple[str, Callable[[Producer], Any]]] = [
        ("a float", lambda p: p.put_item("users", {"user_id": "u", "score": 1.5})),
        ("an unknown table", lambda p: p.put_item("payments", {"id": "p1"})),
        ("a missing key attribute", lambda p: p.put_item("orders", {"customer_id": "c"})),
        (
            "an item over 400 KB",
            lambda p: p.put_item("users", {"user_id": "u", "bio": "x" * 410_000}),
        ),
        (
            "an undefined placeholder",
            lambda p: p.update_item("users", {"user_id": "u"}, "SET a = :a"),
        ),
    ]
    refused = []
    with Producer(topology) as producer:
        for what, attempt in attempts:
            try:
                attempt(producer)
            except ActionError as exc:
                refused.append((what, exc.reason.value, exc.detail))
            else:  # pragma: no cover - would mean the SDK let an invalid action through
                refused.append((what, "ACCEPTED", "the SDK sent it"))
    return refused
