"""The local launcher's supervisor: keeps the MultiLangDaemon running, as ECS would.

The daemon exits when one of its record processors exits (the processor ends itself
when a batch cannot be applied, so that the shard resumes from its checkpoint), and a
crashed JVM takes its processors down with it. Whoever runs the daemon must therefore
start it again: on ECS the service does; locally this supervisor does:
- starts the daemon in its own process group (so the group can be cleaned up),
- restarts it when it exits non-zero, after an exponential backoff that resets once
  a run has lasted `stable_after_s`,
- forwards SIGTERM and SIGINT to the JVM, which gives every processor its
  shutdownRequested (with `shutdownGraceMillis`) and exits; a second signal, or a
  daemon still running `stop_timeout_s` later, gets SIGKILL,
- after each exit, ends whatever the daemon left behind in its process group
  (processors of a killed JVM), so no orphan keeps applying beside the next daemon.

A daemon that exits 0, or any exit after a stop was asked for, ends the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

# A JVM ended by SIGTERM or SIGINT exits 128 + the signal's number once its shutdown hooks ran.
_STOPPED_CODES = frozenset({0, 128 + signal.SIGTERM, 128 + signal.SIGINT})


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When and how often the supervisor starts the daemon again.

    backoff_base_s / backoff_max_s: delay before restart n is base * 2^(n-1), capped.
    stable_after_s: a run at least this long resets the backoff (and the restart count).
    max_restarts: consecutive restarts before giving up (None: never give up).
    stop_timeout_s: after forwarding a stop signal, wait this long before SIGKILL; keep
        it above the daemon's shutdownGraceMillis.
    orphan_grace_s: how long a dead daemon's leftover processes get before SIGKILL.
    """

    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 120.0
    max_restarts: int | None = None
    stop_timeout_s: float = 40.0
    orphan_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.backoff_base_s <= self.backoff_max_s <= 3600:
            raise ValueError(
                "RestartPolicy needs 0 <= backoff_base_s <= backoff_max_s <= 3600, got "
                f"{self.backoff_base_s} and {self.backoff_max_s}"
            )
        if not 0 <= self.stable_after_s <= 86_400:
            raise ValueError("RestartPolicy.stable_after_s must be between 0 and 86400")
        if self.max_restarts is not None and not 0 <= self.max_restarts <= 1_000_000:
            raise ValueError("RestartPolicy.max_restarts must be between 0 and 1000000")
        if not 0 < self.stop_timeout_s <= 3600:
            raise ValueError("RestartPolicy.stop_timeout_s must be between 0 and 3600")
        if not 0 <= self.orphan_grace_s <= 600:
            raise ValueError("RestartPolicy.orphan_grace_s must be between 0 and 600")

    def delay_s(self, restart: int) -> float:
        """Wait before restart number `restart` (1, 2, ...)."""
        return float(min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (restart - 1)))


class Supervisor:
    """Runs `argv` (the daemon's java command) until it stops cleanly or is told to stop.

    `before_start(n)` runs before start n (1, 2, ...), e.g. to write the daemon's
    properties afresh; `on_start(pid, n)` after it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        policy: RestartPolicy | None = None,
        on_start: Callable[[int, int], None] | None = None,
        before_start: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not argv:
            raise ValueError("Supervisor needs a command")
        self._argv = list(argv)
        self._env = dict(os.environ if env is None else env)
        self.policy = policy or RestartPolicy()
        self._on_start = on_start
        self._before_start = before_start
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._signum: int = signal.SIGTERM
        self._kill = False
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def child_pid(self) -> int | None:
        """The running daemon's pid (also its process group id), if one is running."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def run(self) -> int:
        """Supervise until a clean stop; 0, or the daemon's last exit code if it gave up.

        Installs SIGTERM and SIGINT handlers when called from the main thread.
        """
        previous = self._install_handlers()
        try:
            return self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask for a clean stop: `signum` goes to the running daemon (within 0.2 s).

        A second call while stopping kills the daemon's process group. Safe from a
        signal handler and from other threads (it only sets flags).
        """
        if self._stop.is_set():
            self._kill = True
        self._signum = signum
        self._stop.set()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> int:
        restarts = 0
        while True:
            if self._stop.is_set():
                return 0
            started = self._monotonic()
            code = self._run_once()
            ran_s = self._monotonic() - started
            if self._stop.is_set():
                level = logging.INFO if code in _STOPPED_CODES else logging.WARNING
                logger.log(
                    level,
                    "daemon stopped with exit code %d",
                    code,
                    extra={"event": "stopped", "code": code},
                )
                return 0 if code in _STOPPED_CODES else code
            if code == 0:
                logger.info("daemon exited cleanly", extra={"event": "exited", "code": 0})
                return 0
            if ran_s >= self.policy.stable_after_s:
                restarts = 0
            restarts += 1
            if self.policy.max_restarts is not None and restarts > self.policy.max_restarts:
                logger.error(
                    "daemon exited with %d; giving up after %d restarts",
                    code,
                    restarts - 1,
                    extra={"event": "gave_up", "code": code},
                )
                return code
            delay = self.policy.delay_s(restarts)
            logger.warning(
                "daemon exited with %d after %.1f s; restart %d in %.1f s",
                code,
                ran_s,
                restarts,
                delay,
                extra={"event": "restarting", "code": code, "restart": restarts},
            )
            if self._stop.wait(delay):
                return 0

    def _run_once(self) -> int:
        """Start the daemon, wait for it (and a pending stop), clean up its group."""
        if self._before_start is not None:
            self._before_start(self.starts + 1)
        with self._lock:
            if self._stop.is_set():
                return 0
            child = subprocess.Popen(  # noqa: S603 - the daemon command we were given
                self._argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - one thread here
            )
            self._child = child
            self.starts += 1
        logger.info(
            "daemon started (pid %d, start %d)",
            child.pid,
            self.starts,
            extra={"event": "started", "daemon_pid": child.pid, "start": self.starts},
        )
        if self._on_start is not None:
            self._on_start(child.pid, self.starts)
        # Popen gives -N for "killed by signal N"; a shell would say 128 + N.
        raw = self._wait(child)
        code = raw if raw >= 0 else 128 - raw
        _reap_group(child.pid, self.policy.orphan_grace_s)
        with self._lock:
            self._child = None
        return code

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        """Wait for the daemon; forward a stop, and kill it if it outlasts `stop_timeout_s`."""
        stop_deadline: float | None = None
        killed = False
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if not self._stop.is_set():
                continue
            now = self._monotonic()
            if stop_deadline is None:
                stop_deadline = now + self.policy.stop_timeout_s
                logger.info(
                    "forwarding %s to the daemon (pid %d)",
                    signal.Signals(self._signum).name,
                    child.pid,
                    extra={"event": "stopping", "daemon_pid": child.pid},
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, self._signum)
            elif not killed and (self._kill or now >= stop_deadline):
                logger.warning(
                    "daemon still running after the stop signal (%s): SIGKILL to its group",
                    "second stop" if self._kill else f"{self.policy.stop_timeout_s:.0f} s",
                )
                _kill_group(child.pid, signal.SIGKILL)
                killed = True

    def _install_handlers(self) -> dict[int, signal.Handlers | Callable[..., object] | int | None]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, frame: FrameType | None) -> None:
            self.stop(signum)

        previous: dict[int, signal.Handlers | Callable[..., object] | int | None] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
        return previous


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, even by SIGKILL (Linux).

    Otherwise a killed supervisor would leave its daemon running unsupervised.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process of the group exists (zombies told apart via /proc)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _reap_group(pgid: int, grace_s: float) -> None:
    """Leftovers of a dead daemon: they get `grace_s` to notice their closed stdin, then SIGKILL.

    Orphans are reparented to pid 1 (or a subreaper) and may linger as zombies for a
    moment; a group of zombies only still answers kill(0) until then.
    """
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        logger.warning("the daemon left processes behind: SIGKILL to group %d", pgid)
        _kill_group(pgid, signal.SIGKILL)
