"""`ActionFuture`: the sync producer's handle on one action's outcome.

A `concurrent.futures.Future` allocates a Condition, a deque and a list each, and
at tens of thousands of pending actions the garbage collector's walks over them
cost more CPU than encoding the actions. This handle is one slotted object that
shares its producer's lock and makes an Event only if someone blocks on it.
It offers the Future methods applications use (result, exception, done,
add_done_callback) but not `concurrent.futures.wait`: use `Producer.flush()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PENDING = object()


class ActionFuture(Generic[T]):
    """The eventual result of one action (or of a batch): a value or an exception."""

    __slots__ = ("_callbacks", "_event", "_exception", "_lock", "_value")

    def __init__(self, lock: threading.RLock | threading.Lock) -> None:
        self._lock = lock
        self._value: object = _PENDING
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[ActionFuture[T]], None]] | None = None
        self._event: threading.Event | None = None

    def done(self) -> bool:
        """True once the action is acknowledged or has failed."""
        return self._value is not _PENDING or self._exception is not None

    def cancelled(self) -> bool:
        """Always False: a queued action cannot be taken back from the stream."""
        return False

    def result(self, timeout: float | None = None) -> T:
        """The value, waiting up to `timeout` seconds.

        Raises:
            DeliveryError: the action failed (whatever exception it failed with).
            TimeoutError: it is still pending after `timeout`.
        """
        self._wait(timeout)
        if self._exception is not None:
            raise self._exception
        return self._value  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the action failed with, or None (waits like `result`)."""
        self._wait(timeout)
        return self._exception

    def add_done_callback(self, fn: Callable[[ActionFuture[T]], None]) -> None:
        """Call `fn(self)` when done (at once if already done), in the settling thread."""
        with self._lock:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        self._run(fn)

    def set_result(self, value: T) -> None:
        """Settle with a value (producer internals)."""
        self._settle(value, None)

    def set_exception(self, exc: BaseException) -> None:
        """Settle with an exception (producer internals)."""
        self._settle(_PENDING, exc)

    def _settle(self, value: object, exc: BaseException | None) -> None:
        with self._lock:
            if self.done():
                return
            self._value = value
            self._exception = exc
            event, callbacks = self._event, self._callbacks
            self._callbacks = None
        if event is not None:
            event.set()
        for fn in callbacks or ():
            self._run(fn)

    def _wait(self, timeout: float | None) -> None:
        if self.done():
            return
        with self._lock:
            if self.done():
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            raise TimeoutError("the action is still pending")

    def _run(self, fn: Callable[[ActionFuture[T]], None]) -> None:
        try:
            fn(self)
        except Exception:
            logger.exception("an ActionFuture callback raised")
