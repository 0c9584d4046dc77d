"""Child processes in their own process groups, so that stopping one stops all it started.

A stack started by `lazyrep local up` outlives the command that started it, so a
process is known by pid, process group and (on Linux) its start time, which guards
`lazyrep local down` against killing an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago (callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_start_time(pid: int) -> int | None:
    """Return the kernel's start time of `pid` in clock ticks (Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts after the command name, which may itself hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


def group_alive(pgid: int) -> bool:
    """Return whether a live (non-zombie) process of the group still exists.

    Zombies are skipped where /proc tells them apart: an orphan is reaped by whatever
    runs as pid 1, and in some containers that takes seconds.
    """
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


@dataclass
class ManagedProcess:
    """One emulator process, leader of its own process group."""

    name: str
    argv: list[str]
    pid: int
    start_time: int | None
    log_file: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def spawn(
        cls, name: str, argv: list[str], *, env: dict[str, str], log_file: Path, cwd: Path | None
    ) -> ManagedProcess:
        """Start `argv` in a new session, stdout and stderr to `log_file`, stdin closed."""
        with log_file.open("ab") as log:
            popen = subprocess.Popen(  # noqa: S603 - argv built by us from located tools
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, argv, popen.pid, process_start_time(popen.pid), log_file, popen)

    def exit_code(self) -> int | None:
        """Return the exit code if the process has ended (only known for our own children)."""
        if self.popen is not None:
            return self.popen.poll()
        return None if self.is_running() else -1

    def is_running(self) -> bool:
        """Return whether the process is still this very process and has not exited."""
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not self._pid_reused()

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `grace_s`, reap our child."""
        if self.popen is None and self._pid_reused():
            return  # The pid (and so the group id) now belongs to someone else.
        self._signal_group(signal.SIGTERM)
        if not self._wait_group_gone(grace_s):
            self._signal_group(signal.SIGKILL)
            self._wait_group_gone(grace_s)
        if self.popen is not None:
            self.popen.wait(timeout=grace_s)

    def _pid_reused(self) -> bool:
        current = process_start_time(self.pid)
        return None not in (current, self.start_time) and current != self.start_time

    def _wait_group_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.popen is not None:
                self.popen.poll()  # Reap our child: a zombie leader would keep the group "alive".
            if not group_alive(self.pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def log_tail(self, max_bytes: int = 2000) -> str:
        """Return the end of the process's log, for error messages."""
        if self.log_file is None:
            return ""
        try:
            data = self.log_file.read_bytes()[-max_bytes:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def to_json(self) -> dict[str, Any]:
        """Return what `from_json` needs to find and stop this process from another command."""
        return {
            "name": self.name,
            "argv": self.argv,
            "pid": self.pid,
            "start_time": self.start_time,
            "log_file": str(self.log_file) if self.log_file else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManagedProcess:
        """Rebuild a process recorded by `to_json` (no Popen: it is not our child any more)."""
        log_file = data.get("log_file")
        return cls(
            name=str(data["name"]),
            argv=[str(a) for a in data["argv"]],
            pid=int(data["pid"]),
            start_time=data.get("start_time"),
            log_file=Path(log_file) if log_file else None,
        )
