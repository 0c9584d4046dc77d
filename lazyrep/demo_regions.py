"""Each replica region's DynamoDB as its own moto server, beside the local stack's.

On AWS every region is its own DynamoDB; on the local stack one moto server answers
for all of them, one request at a time, so the replicas' catch-up writes would queue
behind the primary's (and the demo's primary latency would measure moto's queue).
The demo gives each replica region its own moto server: the primary keeps the stack's,
each replica worker gets its region's through AWS_ENDPOINT_URL_DYNAMODB (its lease,
status and replica tables live there), and everything else (Kinesis, SQS, CloudWatch)
stays on the stack.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3

from emulators.procs import ManagedProcess, free_port
from emulators.stack import StackError
from emulators.tools import moto_server_command

READY_TIMEOUT_S = 30.0
ATTEMPTS = 3


class RegionalDynamo:
    """One moto server per region; a context manager that stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.endpoints: dict[str, str] = {}
        self.processes: list[ManagedProcess] = []

    def start(self, regions: Iterable[str]) -> Self:
        """Start a moto server for each region and wait until it answers.

        Raises:
            MissingToolError: moto[server] is not installed.
            StackError: a server did not answer within 30 s, three times.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for region in dict.fromkeys(regions):
            for attempt in range(1, ATTEMPTS + 1):
                port = free_port()
                process = ManagedProcess.spawn(
                    f"moto-{region}",
                    [*moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
                    env=env,
                    log_file=self._log_dir / f"moto-{region}.log",
                    cwd=self._log_dir,
                )
                endpoint = f"http://127.0.0.1:{port}"
                if _ready(process, endpoint):
                    self.processes.append(process)
                    self.endpoints[region] = endpoint
                    break
                process.stop()
                if attempt == ATTEMPTS:
                    self.stop()
                    raise StackError(f"moto for {region} did not start: {process.log_tail()}")
        return self

    def client(self, service: str, region: str, **kwargs: Any) -> Any:
        """A client of `region`: its own server for DynamoDB, else the environment's."""
        endpoint = self.endpoints.get(region) if service == "dynamodb" else None
        if endpoint is None:
            return boto3.session.Session().client(service, region_name=region, **kwargs)  # type: ignore[call-overload]
        return boto3.session.Session().client(  # type: ignore[call-overload]
            service, region_name=region, endpoint_url=endpoint, **kwargs
        )

    def environ(self, region: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with DynamoDB pointed at `region`'s server."""
        env = dict(os.environ if base is None else base)
        if region in self.endpoints:
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoints[region]
        return env

    @property
    def groups(self) -> list[int]:
        """The servers' process groups."""
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Stop every server."""
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ready(process: ManagedProcess, endpoint: str) -> bool:
    client = boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the emulator takes any keys
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process.is_running():
            return False
        with contextlib.suppress(Exception):
            client.list_tables()
            return True
        time.sleep(0.1)
    return False
