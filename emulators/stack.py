"""The embedded local stack: kinesalite, nghttpx in front of it, and moto server.

Everything listens on 127.0.0.1 on ports picked at run time. Python clients reach the
emulators through the standard `AWS_ENDPOINT_URL_<SERVICE>` variables (`LocalStack.env`);
the KCL daemon's Kinesis client speaks only HTTP/2 cleartext, which kinesalite does not,
so it gets nghttpx's address (`Endpoints.kinesis_h2c`) in its properties file instead.
Why these emulators: docs/EMULATORS.md.

    with LocalStack.start() as stack:
        subprocess.run(cmd, env=stack.environ(), check=True)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from emulators.procs import ManagedProcess, free_port
from emulators.tools import (
    kinesalite_module,
    moto_server_command,
    nghttpx_binary,
    node_binary,
)

logger = logging.getLogger(__name__)

ENDPOINT_ENV: Mapping[str, str] = {
    "kinesis": "AWS_ENDPOINT_URL_KINESIS",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "s3": "AWS_ENDPOINT_URL_S3",
    "cloudwatch": "AWS_ENDPOINT_URL_CLOUDWATCH",
    "cloudformation": "AWS_ENDPOINT_URL_CLOUDFORMATION",
}
"""Endpoint attribute -> the standard variable boto3, aiobotocore and the AWS SDKs honour."""

KCL_KINESIS_ENV = "LAZYREP_KCL_KINESIS_ENDPOINT"
"""Carries the h2c Kinesis endpoint to `lazyrep kcl render` (no AWS variable fits it)."""

FAKE_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Set only where the environment has no value of its own: the emulators accept any keys."""

STATE_VERSION = 1

# kinesalite binds every interface when given only a port, so listen() is called here
# with the loopback host; 0 ms state transitions keep tests from polling CREATING/UPDATING.
_KINESALITE_JS = """
const [moduleDir, port, shardLimit] = process.argv.slice(1);
// Kinesis answers GetRecords at the end of a closed shard with ChildShards (since 2020);
// the KCL (2.3+) treats an end without them as invalid and retries for ever. kinesalite
// 3.3.3 predates the field: add it, from the shards whose parent is this one.
const path = require('path');
const crypto = require('crypto');
const kdb = require(path.join(moduleDir, 'db'));
const recordsFile = require.resolve(path.join(moduleDir, 'actions', 'getRecords'));
const getRecords = require(recordsFile);
require.cache[recordsFile].exports = function getRecordsWithChildShards(store, data, cb) {
  getRecords(store, data, function(err, result) {
    if (err || !result || result.NextShardIterator !== undefined) return cb(err, result);
    let streamName, shardId;
    try {
      const buffer = Buffer.from(data.ShardIterator, 'base64');
      const decipher = crypto.createDecipheriv(
        'aes-256-cbc', kdb.ITERATOR_PWD_KEY, kdb.ITERATOR_PWD_IV);
      const pieces = Buffer.concat([decipher.update(buffer.slice(8)), decipher.final()])
        .toString('utf8').split('/');
      streamName = pieces[1];
      shardId = pieces[2];
    } catch (e) {
      return cb(err, result);
    }
    store.getStream(streamName, function(streamErr, stream) {
      if (streamErr) return cb(err, result);
      result.ChildShards = stream.Shards
        .filter((s) => s.ParentShardId === shardId || s.AdjacentParentShardId === shardId)
        .map((s) => ({
          ShardId: s.ShardId,
          ParentShards: [s.ParentShardId, s.AdjacentParentShardId].filter(Boolean),
          HashKeyRange: s.HashKeyRange,
        }));
      cb(err, result);
    });
  });
};
const server = require(moduleDir)({
  createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: Number(shardLimit),
});
server.listen(Number(port), '127.0.0.1', () => {
  const a = server.address();
  console.log(`kinesalite listening on http://${a.address}:${a.port}`);
});
process.on('SIGTERM', () => process.exit(0));
"""

_PROBE_CONFIG = Config(
    connect_timeout=1, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}
)


class StackError(RuntimeError):
    """The local stack could not start, or its recorded state is unusable."""


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the running emulators."""

    kinesis: str
    """kinesalite itself (HTTP/1.1): for boto3 and aiobotocore."""
    kinesis_h2c: str
    """nghttpx in front of kinesalite (h2c and HTTP/1.1): for the KCL's `kinesisEndpoint`."""
    dynamodb: str
    sqs: str
    s3: str
    cloudwatch: str
    cloudformation: str = ""
    """moto's CloudFormation (it creates stacks' resources in moto, Kinesis streams included:
    describe those through this URL, not kinesalite's). Empty in state files of older stacks."""


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _probe_client(service: str, endpoint: str) -> Any:
    # Explicit fake keys and region: readiness must not depend on the caller's environment.
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
        config=_PROBE_CONFIG,
    )


def _kinesis_probe(endpoint: str) -> Callable[[], object]:
    client = _probe_client("kinesis", endpoint)
    probe: Callable[[], object] = client.list_streams
    return probe


def _moto_probe(endpoint: str) -> Callable[[], object]:
    clients = {s: _probe_client(s, endpoint) for s in ("dynamodb", "sqs", "s3", "cloudwatch")}

    def probe() -> object:
        return (
            clients["dynamodb"].list_tables(),
            clients["sqs"].list_queues(),
            clients["s3"].list_buckets(),
            clients["cloudwatch"].list_metrics(),
        )

    return probe


class LocalStack:
    """A running set of emulators; a context manager that stops them on exit.

    Use `LocalStack.start()` to launch one, or `LocalStack.load()` to reach one that
    `lazyrep local up` left running.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        processes: list[ManagedProcess],
        log_dir: Path,
        *,
        owns_log_dir: bool,
    ) -> None:
        self.endpoints = endpoints
        self.processes = processes
        self.log_dir = log_dir
        self._owns_log_dir = owns_log_dir

    @classmethod
    def start(
        cls,
        *,
        log_dir: Path | None = None,
        ready_timeout_s: float = 30.0,
        shard_limit: int = 10_000,
        attempts: int = 3,
    ) -> Self:
        """Start kinesalite, nghttpx and moto server and wait until each answers an API call.

        Raises:
            MissingToolError: a tool is not installed (the message names the fix).
            StackError: an emulator exited or did not answer within `ready_timeout_s`.
        """
        # Locate every tool before starting anything, so a missing one costs nothing.
        node, kinesalite, nghttpx = node_binary(), kinesalite_module(), nghttpx_binary()
        moto = moto_server_command()
        owns_log_dir = log_dir is None
        logs = Path(tempfile.mkdtemp(prefix="lazyrep-stack-")) if log_dir is None else log_dir
        logs.mkdir(parents=True, exist_ok=True)
        # The emulators get none of the caller's AWS settings (keys, profiles, endpoints).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        started: list[ManagedProcess] = []
        begun = time.monotonic()

        def launch(
            name: str, argv_for: Callable[[int], list[str]], probe_for: Callable[[str], Any]
        ) -> tuple[ManagedProcess, int, Callable[[], object]]:
            port = free_port()
            proc = ManagedProcess.spawn(
                name, argv_for(port), env=env, log_file=logs / f"{name}.log", cwd=logs
            )
            started.append(proc)
            return proc, port, probe_for(_url(port))

        def ready(
            name: str, argv_for: Callable[[int], list[str]], probe_for: Callable[[str], Any]
        ) -> int:
            for attempt in range(1, attempts + 1):
                proc, port, probe = launch(name, argv_for, probe_for)
                if _wait_ready(proc, probe, ready_timeout_s):
                    return port
                # Most likely a port taken between free_port() and bind(): try another.
                logger.warning("%s attempt %d failed: %s", name, attempt, proc.log_tail(500))
                proc.stop()
                started.remove(proc)
            raise StackError(f"{name} did not start; log tail:\n{proc.log_tail()}")

        try:
            moto_proc, moto_port, moto_probe = launch(
                "moto", lambda p: [*moto, "-H", "127.0.0.1", "-p", str(p)], _moto_probe
            )
            kinesis_port = ready(
                "kinesalite",
                lambda p: [node, "-e", _KINESALITE_JS, str(kinesalite), str(p), str(shard_limit)],
                _kinesis_probe,
            )
            h2c_port = ready(
                "nghttpx", lambda p: _nghttpx_argv(nghttpx, p, kinesis_port), _kinesis_probe
            )
            if not _wait_ready(moto_proc, moto_probe, ready_timeout_s):
                started.remove(moto_proc)
                moto_proc.stop()
                moto_port = ready(
                    "moto", lambda p: [*moto, "-H", "127.0.0.1", "-p", str(p)], _moto_probe
                )
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            if owns_log_dir:
                shutil.rmtree(logs, ignore_errors=True)
            raise
        moto_url = _url(moto_port)
        endpoints = Endpoints(
            kinesis=_url(kinesis_port),
            kinesis_h2c=_url(h2c_port),
            dynamodb=moto_url,
            sqs=moto_url,
            s3=moto_url,
            cloudwatch=moto_url,
            cloudformation=moto_url,
        )
        logger.info("local stack ready in %.1f s: %s", time.monotonic() - begun, endpoints)
        return cls(endpoints, started, logs, owns_log_dir=owns_log_dir)

    @property
    def env(self) -> dict[str, str]:
        """Variables that point AWS SDKs at this stack (plus fake keys and region if unset)."""
        values = {
            var: getattr(self.endpoints, attr)
            for attr, var in ENDPOINT_ENV.items()
            if getattr(self.endpoints, attr)
        }
        values[KCL_KINESIS_ENV] = self.endpoints.kinesis_h2c
        for var, default in FAKE_ENV.items():
            if not os.environ.get(var):
                values[var] = default
        return values

    @property
    def region(self) -> str:
        """The region clients will use: the environment's, else the fake default."""
        return os.environ.get("AWS_DEFAULT_REGION") or FAKE_ENV["AWS_DEFAULT_REGION"]

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return `base` (default: os.environ) with this stack's variables applied."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged

    def export_lines(self) -> list[str]:
        """Return `export NAME=value` lines for a POSIX shell's eval."""
        return [f"export {name}={shlex.quote(value)}" for name, value in sorted(self.env.items())]

    def is_running(self) -> bool:
        """Return whether every emulator process is still alive."""
        return bool(self.processes) and all(p.is_running() for p in self.processes)

    def stop(self) -> None:
        """Stop every emulator (process groups: SIGTERM, then SIGKILL after a grace period)."""
        for proc in reversed(self.processes):
            proc.stop()
        if self._owns_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def save(self, state_file: Path) -> None:
        """Record endpoints and processes so `lazyrep local env/down` can find this stack."""
        state = {
            "version": STATE_VERSION,
            "endpoints": asdict(self.endpoints),
            "processes": [p.to_json() for p in self.processes],
            "log_dir": str(self.log_dir),
        }
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(state_file)

    @classmethod
    def load(cls, state_file: Path) -> Self:
        """Return the stack recorded in `state_file` (running or not: see `is_running`).

        Raises:
            FileNotFoundError: no stack was recorded there.
            StackError: the file is not a state file this version understands.
        """
        raw = state_file.read_text()
        try:
            state = json.loads(raw)
            if state.get("version") != STATE_VERSION:
                raise StackError(f"{state_file}: unknown state version {state.get('version')}")
            endpoints = Endpoints(**state["endpoints"])
            processes = [ManagedProcess.from_json(p) for p in state["processes"]]
            log_dir = Path(state["log_dir"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{state_file}: unreadable local stack state ({exc})") from exc
        return cls(endpoints, processes, log_dir, owns_log_dir=False)


def _nghttpx_argv(nghttpx: str, port: int, backend_port: int) -> list[str]:
    """nghttpx serving h2c (and HTTP/1.1) on `port` for an HTTP/1.1 server on `backend_port`."""
    return [
        nghttpx,
        "--conf=/dev/null",  # never read the system's /etc/nghttpx/nghttpx.conf
        "--single-process",  # one process to stop, no forked workers
        f"--frontend=127.0.0.1,{port};no-tls",
        f"--backend=127.0.0.1,{backend_port}",
        "--workers=1",
    ]


@contextlib.contextmanager
def h2c_front(backend: str, log_dir: Path, *, ready_timeout_s: float = 30.0) -> Iterator[str]:
    """An h2c front for another HTTP/1.1 Kinesis endpoint (a fault proxy before kinesalite):
    the KCL's Kinesis client speaks HTTP/2 only. Yields its URL; stops it on exit.

    Raises:
        MissingToolError: nghttpx is not installed.
        StackError: it did not answer ListStreams within `ready_timeout_s`.
    """
    backend_port = urlsplit(backend).port
    if backend_port is None:
        raise ValueError(f"h2c_front needs a backend URL with a port, got {backend!r}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = ManagedProcess.spawn(
        "nghttpx-front",
        _nghttpx_argv(nghttpx_binary(), port, backend_port),
        env=env,
        log_file=log_dir / f"nghttpx-front-{port}.log",
        cwd=log_dir,
    )
    try:
        if not _wait_ready(proc, _kinesis_probe(_url(port)), ready_timeout_s):
            raise StackError(f"nghttpx in front of {backend} did not start:\n{proc.log_tail()}")
        yield _url(port)
    finally:
        proc.stop()


def _wait_ready(proc: ManagedProcess, probe: Callable[[], object], timeout_s: float) -> bool:
    """Poll `probe` until it succeeds; False if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not proc.is_running():
            return False
        with contextlib.suppress(Exception):
            probe()
            return True
        time.sleep(0.05)
    return False
