"""A fault-injecting HTTP/1.1 reverse proxy between AWS clients and local emulators.

Emulators never throttle, fail or drop connections; production does. Put this
proxy between boto3 / aiobotocore / the KCL (through nghttpx) and kinesalite or
the moto server to inject, per X-Amz-Target operation and seeded for
reproducibility: delays, throttling errors, 5xx, truthful PutRecords /
BatchWriteItem partial failures (the failed records really are not written) and
connection cuts before or after the server acted. Counters tell tests which
faults really happened. See docs/FAULTPROXY.md.

In-process: ``with FaultProxy(upstream=url, seed=1) as proxy:`` then
``proxy.set_rules([...])`` and ``endpoint_url=proxy.url``. As a process:
``python -m emulators.faultproxy --upstream URL --ready-file PATH``, driven over
``/__faultproxy__/`` on its own port (:class:`FaultProxyControl`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from emulators.faultproxy_aws import (
    Reply,
    crc32_of,
    error_reply,
    is_cbor,
    is_json,
    plan_partial_failure,
    service_of,
)
from emulators.faultproxy_control import FaultProxyControl, FaultProxyProcess
from emulators.faultproxy_http import (
    STREAM_LIMIT,
    HttpError,
    NoResponseError,
    Request,
    Response,
    encode_request,
    encode_response,
    read_request,
    read_response,
)
from emulators.faultproxy_rules import (
    PARTIAL_FAILURE_OPERATIONS,
    Decision,
    Fault,
    Rule,
    RuleBook,
    operation_name,
)
from emulators.faultproxy_stats import FaultStats, StatsRecorder

__all__ = [
    "CONTROL_PREFIX",
    "Fault",
    "FaultProxy",
    "FaultProxyControl",
    "FaultProxyProcess",
    "FaultStats",
    "Rule",
    "main",
]

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "/__faultproxy__/"


class _Cut(NamedTuple):
    """Drop the client connection instead of answering."""

    reset: bool


class _UpstreamDownError(Exception):
    """The emulator refused the connection."""


class _UpstreamBrokenError(Exception):
    """The emulator's connection broke mid-exchange."""


class _Upstream:
    """One keep-alive connection to the emulator, owned by one client connection.

    Pairing connections one to one keeps ordering per client connection and
    needs no pool: botocore's own pool decides how many there are.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, data: bytes, *, head_request: bool) -> Response:
        """Send one request and read its answer.

        A reused connection that the server had closed as idle is retried once
        on a new one: the server cannot have seen the request.

        Raises:
            _UpstreamDownError: connection refused.
            _UpstreamBrokenError: the exchange failed.
        """
        for attempt in range(2):
            if self._reader is not None and self._reader.at_eof():
                await self.close()
            reused = self._writer is not None
            reader, writer = await self._connection()
            try:
                writer.write(data)
                await writer.drain()
                response = await read_response(reader, head_request=head_request)
            except (NoResponseError, ConnectionResetError, BrokenPipeError) as exc:
                await self.close()
                if reused and attempt == 0:
                    logger.debug("upstream closed an idle connection (%s); retrying", exc)
                    continue
                raise _UpstreamBrokenError(str(exc) or type(exc).__name__) from exc
            except (HttpError, OSError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise _UpstreamBrokenError(str(exc) or type(exc).__name__) from exc
            if response.will_close:
                await self.close()
            return response
        raise AssertionError("unreachable")

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self._host, self._port, limit=STREAM_LIMIT
                )
            except OSError as exc:
                raise _UpstreamDownError(f"{self._host}:{self._port}: {exc}") from exc
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._reader, self._writer

    async def close(self) -> None:
        """Close the connection, if open."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _cut(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Drop a client connection: RST (SO_LINGER 0) or a plain FIN."""
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


def _response(reply: Reply) -> Response:
    return Response(reply.status, "", reply.headers, reply.body)


def _json_reply(status: int, doc: object) -> Reply:
    body = json.dumps(doc, indent=None, sort_keys=True).encode("utf-8")
    return Reply(status, (("Content-Type", "application/json"),), body)


def _parse_upstream(upstream: str) -> tuple[str, int]:
    parts = urlsplit(upstream)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream must be an http://host:port URL; got {upstream!r}")
    return parts.hostname, parts.port or 80


class _Engine:
    """The proxy itself, loop-bound; shared by the in-thread and the process modes."""

    def __init__(self, upstream: str, seed: int) -> None:
        self.upstream = upstream
        self._host, self._port = _parse_upstream(upstream)
        self.book = RuleBook(seed=seed)
        self.stats = StatsRecorder()
        self.url: str | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> str:
        """Listen; returns the proxy's URL."""
        self._server = await asyncio.start_server(self._on_client, host, port, limit=STREAM_LIMIT)
        bound_host, bound_port = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        logger.info("faultproxy %s -> %s", self.url, self.upstream)
        return self.url

    async def close(self) -> None:
        """Stop listening and drop every client connection."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream = _Upstream(self._host, self._port)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve(reader, writer, upstream)
        except (ConnectionError, HttpError, asyncio.IncompleteReadError) as exc:
            logger.debug("client connection ended: %r", exc)
        except asyncio.CancelledError:
            # Only close() cancels us. Ending normally keeps Python 3.11's
            # StreamReaderProtocol from logging the cancellation as an error.
            logger.debug("client connection dropped at shutdown")
        finally:
            self._tasks.discard(task)
            await upstream.close()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: _Upstream
    ) -> None:
        while True:
            request = await read_request(reader, writer)
            if request is None:
                return
            if request.path.startswith(CONTROL_PREFIX):
                outcome: Response | _Cut = _response(self._control(request))
            else:
                outcome = await self._proxy(request, upstream)
            if isinstance(outcome, _Cut):
                _cut(writer, reset=outcome.reset)
                return
            writer.write(
                encode_response(
                    outcome.status,
                    outcome.reason,
                    outcome.headers,
                    outcome.body,
                    close=not request.keep_alive,
                    head_request=request.method == "HEAD",
                )
            )
            await writer.drain()
            if not request.keep_alive:
                return

    async def _forward(
        self, request: Request, upstream: _Upstream, body: bytes | None = None
    ) -> Response | _Cut:
        try:
            return await upstream.exchange(
                encode_request(request, body), head_request=request.method == "HEAD"
            )
        except _UpstreamDownError as exc:
            logger.warning("upstream %s unavailable: %s", self.upstream, exc)
            return _response(
                _json_reply(502, {"__type": "FaultProxyUpstreamUnavailable", "message": str(exc)})
            )
        except _UpstreamBrokenError as exc:
            # Mirror what the client would have seen talking to the emulator directly.
            logger.warning("upstream %s broke mid-exchange: %s", self.upstream, exc)
            return _Cut(reset=True)

    async def _proxy(self, request: Request, upstream: _Upstream) -> Response | _Cut:
        target = request.header("x-amz-target") or ""
        content_type = request.header("content-type")
        self.stats.request(target)
        splittable = operation_name(target) in PARTIAL_FAILURE_OPERATIONS and is_json(content_type)
        decision = self.book.decide(target, splittable=splittable)
        if decision is None:
            return await self._forward(request, upstream)
        rule = decision.rule
        self.stats.fault(rule.fault, target)
        logger.debug("rule %d: %s on %s", decision.position, rule.fault.value, target or "-")
        if rule.delay_ms and rule.fault is not Fault.DELAY_RESPONSE:
            await asyncio.sleep(rule.delay_ms / 1000)
        match rule.fault:
            case Fault.PASS | Fault.DELAY:
                return await self._forward(request, upstream)
            case Fault.DELAY_RESPONSE:
                outcome = await self._forward(request, upstream)
                await asyncio.sleep(rule.delay_ms / 1000)
                return outcome
            case Fault.THROTTLE:
                code = rule.error_code or "ProvisionedThroughputExceededException"
                return _response(error_reply(target, code, cbor=is_cbor(content_type)))
            case Fault.SERVER_ERROR:
                code = rule.error_code or (
                    "InternalServerError" if service_of(target).crc32 else "InternalFailure"
                )
                return _response(error_reply(target, code, cbor=is_cbor(content_type)))
            case Fault.CUT_BEFORE:
                return _Cut(rule.reset)
            case Fault.CUT_AFTER:
                outcome = await self._forward(request, upstream)
                return outcome if isinstance(outcome, _Cut) else _Cut(rule.reset)
            case Fault.PARTIAL_FAILURE:
                return await self._partial(request, target, decision, upstream)
        raise AssertionError(f"unhandled fault {rule.fault}")

    async def _partial(
        self, request: Request, target: str, decision: Decision, upstream: _Upstream
    ) -> Response | _Cut:
        plan = plan_partial_failure(target, request.body, decision.rule, decision.rng)
        if plan is None:
            return await self._forward(request, upstream)
        if plan.forward_body is None:
            self.stats.records_failed(target, len(plan.failed))
            return _response(plan.local_reply(target))
        outcome = await self._forward(request, upstream, plan.forward_body)
        if isinstance(outcome, _Cut) or outcome.status != 200:
            # The server refused the shortened request as a whole: pass that on as is.
            return outcome
        try:
            body = plan.splice(outcome.body)
        except ValueError:
            # Never let the client believe removed records were written.
            logger.exception("cannot splice %s answer", target)
            return _response(error_reply(target, "InternalFailure"))
        self.stats.records_failed(target, len(plan.failed))
        headers = tuple(
            (k, crc32_of(body)) if k.lower() == "x-amz-crc32" else (k, v)
            for k, v in outcome.headers
        )
        return Response(outcome.status, outcome.reason, headers, body)

    def _control(self, request: Request) -> Reply:
        route = request.path[len(CONTROL_PREFIX) :].partition("?")[0].strip("/")
        method = request.method
        if route == "stats" and method == "GET":
            return _json_reply(200, self.stats.snapshot().to_json())
        if route == "stats" and method == "DELETE":
            self.stats.reset()
            return _json_reply(200, {})
        if route == "rules" and method == "GET":
            return _json_reply(200, self._rules_json())
        if route == "rules" and method in ("POST", "PUT"):
            try:
                rules, seed = _parse_rules_doc(json.loads(request.body or b"[]"))
                self.book.set_rules(rules, seed=seed)
            except (ValueError, TypeError) as exc:
                return _json_reply(400, {"error": str(exc)})
            logger.info("rules set: %s", [r.fault.value for r in self.book.rules])
            return _json_reply(200, self._rules_json())
        if route == "rules" and method == "DELETE":
            self.book.clear()
            return _json_reply(200, self._rules_json())
        if route == "health" and method == "GET":
            return _json_reply(200, {"url": self.url, "upstream": self.upstream})
        if route in ("stats", "rules", "health"):
            return _json_reply(405, {"error": f"{method} not allowed on {route}"})
        return _json_reply(404, {"error": f"no control route {route!r}"})

    def _rules_json(self) -> dict[str, Any]:
        return {
            "seed": self.book.seed,
            "rules": [r.to_json() for r in self.book.rules],
            "remaining": self.book.remaining(),
        }


def _parse_rules_doc(doc: object) -> tuple[list[Rule], int | None]:
    """Accept ``[rule, ...]`` or ``{"rules": [...], "seed": N}``.

    Raises:
        ValueError: any other shape, or an invalid rule.
    """
    seed: int | None = None
    if isinstance(doc, Mapping):
        unknown = sorted(set(doc) - {"rules", "seed"})
        if unknown:
            raise ValueError(f"unknown keys {', '.join(unknown)}; allowed: rules, seed")
        seed = doc.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        doc = doc.get("rules", [])
    if not isinstance(doc, list):
        raise ValueError("rules must be a JSON list of rule objects")  # noqa: TRY004 - bad input
    return [Rule.from_json(r) for r in doc], seed


class FaultProxy:
    """The proxy on a background thread with its own event loop.

    Thread-safe: rules and counters may be changed and read from any thread
    while requests flow.
    """

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rules: Iterable[Rule | Mapping[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Raises: ValueError: upstream is not an http:// URL or a rule is invalid."""
        self._engine = _Engine(upstream, seed)
        self._engine.book.set_rules(rules)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``endpoint_url``.

        Raises:
            RuntimeError: not started.
        """
        if self._engine.url is None or self._thread is None:
            raise RuntimeError("FaultProxy is not started")
        return self._engine.url

    @property
    def upstream(self) -> str:
        """The emulator URL requests are forwarded to."""
        return self._engine.upstream

    def start(self) -> str:
        """Bind and serve on a background thread; returns the URL.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("FaultProxy is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            try:
                await self._engine.start(self._host, self._port)
            except BaseException as exc:
                failure.append(exc)
                raise
            finally:
                ready.set()
            await self._stopping.wait()
            await self._engine.close()

        def target() -> None:
            try:
                asyncio.run(run())
            except BaseException:
                if not failure:
                    logger.exception("faultproxy thread failed")

        self._thread = threading.Thread(target=target, name="faultproxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.url

    def stop(self) -> None:
        """Drop every connection, stop serving and join the thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None
        self._engine.url = None

    def __enter__(self) -> FaultProxy:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_rules(
        self, rules: Iterable[Rule | Mapping[str, Any]], *, seed: int | None = None
    ) -> None:
        """Replace every rule (counts and generators re-armed; ``seed`` re-seeds).

        Raises:
            ValueError: a rule is invalid; the old rules stay then.
        """
        self._engine.book.set_rules(rules, seed=seed)

    def clear(self) -> None:
        """Remove every rule: pass everything through."""
        self._engine.book.clear()

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The current rules, in order."""
        return self._engine.book.rules

    @property
    def stats(self) -> FaultStats:
        """A snapshot of the counters."""
        return self._engine.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._engine.stats.reset()


def _load_rules_arg(value: str | None) -> tuple[list[Rule], int | None]:
    if value is None:
        return [], None
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    return _parse_rules_doc(json.loads(text))


def _write_ready_file(path: str, url: str) -> None:
    """Write atomically, so a watcher never reads half a URL."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".faultproxy-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(url + "\n")
    os.replace(tmp, path)


async def _serve_process(args: argparse.Namespace, rules: Sequence[Rule], seed: int) -> None:
    engine = _Engine(args.upstream, seed)
    engine.book.set_rules(rules)
    url = await engine.start(args.host, args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(url, flush=True)
    if args.ready_file:
        _write_ready_file(args.ready_file, url)
    await stopping.wait()
    logger.info("faultproxy stopping")
    await engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy as a process until SIGTERM/SIGINT; prints its URL on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.faultproxy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--upstream", required=True, help="emulator URL, http://host:port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=0, help="seed of every rule's generator")
    parser.add_argument("--rules", help="initial rules: JSON text, or @FILE")
    parser.add_argument("--ready-file", help="write the URL here once listening")
    parser.add_argument("--log-level", default="INFO", help="stderr log level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        rules, rules_seed = _load_rules_arg(args.rules)
        _parse_upstream(args.upstream)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    asyncio.run(_serve_process(args, rules, args.seed if rules_seed is None else rules_seed))
    return 0


if __name__ == "__main__":
    # Run the imported module's main so that loggers are named emulators.faultproxy*.
    from emulators.faultproxy import main as _main

    sys.exit(_main())
