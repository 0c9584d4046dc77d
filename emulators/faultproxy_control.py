"""Drive a fault proxy running as a separate process (e.g. between nghttpx and kinesalite).

:class:`FaultProxyControl` has the same rule and counter methods as the
in-process ``FaultProxy``, over the proxy's ``/__faultproxy__/`` routes;
:class:`FaultProxyProcess` starts ``python -m emulators.faultproxy`` and waits
for its ready file.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from emulators.faultproxy_rules import Rule, as_rule
from emulators.faultproxy_stats import FaultStats

_PREFIX = "/__faultproxy__/"


class FaultProxyControl:
    """Client of a running proxy's control routes."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"url must be http://host:port; got {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port
        self._timeout_s = timeout_s

    def _call(self, method: str, route: str, doc: object = None) -> Any:
        body = None if doc is None else json.dumps(doc).encode("utf-8")
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, _PREFIX + route, body=body, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if response.status == 400:
            raise ValueError(payload.get("error", payload))
        if response.status != 200:
            raise RuntimeError(f"{method} {route}: HTTP {response.status} {payload!r}")
        return payload

    def set_rules(
        self, rules: Iterable[Rule | Mapping[str, Any]], *, seed: int | None = None
    ) -> None:
        """Replace every rule of the remote proxy.

        Raises:
            ValueError: a rule is invalid (checked locally and by the proxy).
        """
        doc: dict[str, Any] = {"rules": [as_rule(r).to_json() for r in rules]}
        if seed is not None:
            doc["seed"] = seed
        self._call("POST", "rules", doc)

    def clear(self) -> None:
        """Remove every rule."""
        self._call("DELETE", "rules")

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The remote proxy's rules."""
        return tuple(Rule.from_json(r) for r in self._call("GET", "rules")["rules"])

    @property
    def stats(self) -> FaultStats:
        """A snapshot of the remote counters."""
        return FaultStats.from_json(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the remote counters."""
        self._call("DELETE", "stats")


class FaultProxyProcess:
    """``python -m emulators.faultproxy`` as a child process, stopped with SIGTERM."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rules: Iterable[Rule | Mapping[str, Any]] = (),
        port: int = 0,
        startup_timeout_s: float = 15.0,
        stderr: IO[Any] | int | None = None,
    ) -> None:
        self.upstream = upstream
        self._seed = seed
        self._rules = [as_rule(r).to_json() for r in rules]
        self._port = port
        self._startup_timeout_s = startup_timeout_s
        self._stderr = stderr
        self._process: subprocess.Popen[bytes] | None = None
        self._control: FaultProxyControl | None = None

    @property
    def control(self) -> FaultProxyControl:
        """The control client. Raises: RuntimeError: not started."""
        if self._control is None:
            raise RuntimeError("FaultProxyProcess is not started")
        return self._control

    @property
    def url(self) -> str:
        """The proxy's URL. Raises: RuntimeError: not started."""
        return self.control.url

    @property
    def pid(self) -> int:
        """The child's process id. Raises: RuntimeError: not started."""
        if self._process is None:
            raise RuntimeError("FaultProxyProcess is not started")
        return self._process.pid

    def start(self) -> str:
        """Start the child and wait until it listens; returns its URL.

        Raises:
            RuntimeError: it exited or did not get ready in time.
        """
        if self._process is not None:
            raise RuntimeError("FaultProxyProcess is already started")
        root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with tempfile.TemporaryDirectory(prefix="faultproxy-") as tmp:
            ready = Path(tmp) / "ready"
            argv = [
                sys.executable,
                "-m",
                "emulators.faultproxy",
                "--upstream",
                self.upstream,
                "--port",
                str(self._port),
                "--seed",
                str(self._seed),
                "--rules",
                json.dumps(self._rules),
                "--ready-file",
                str(ready),
            ]
            self._process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
            deadline = time.monotonic() + self._startup_timeout_s
            while not ready.exists():
                code = self._process.poll()
                if code is not None or time.monotonic() > deadline:
                    self.stop()
                    what = "not ready in time" if code is None else f"exited with {code}"
                    raise RuntimeError(f"faultproxy process {what}")
                time.sleep(0.02)
            url = ready.read_text(encoding="utf-8").strip()
        self._control = FaultProxyControl(url)
        return url

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        process, self._process, self._control = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> FaultProxyProcess:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
