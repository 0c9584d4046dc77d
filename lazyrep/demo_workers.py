"""The demo's lazy replicas: one real KCL worker (`lazyrep replica run`) per replica target,
and their progress read back from each replica's status table.

Each worker is a supervisor process (its own session and process group) over a
MultiLangDaemon (the daemon leads another group, with its record processors in it).
`stop` asks politely (SIGTERM: every shard checkpoints what it applied), then ends
whatever is left, group by group; `groups` lists every group, so a caller can check
that nothing outlived the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators.procs import group_alive
from kcl_consumer.status import ShardProgress, read_status, status_table_name
from lazyrep.demo_primary import spread
from lazyrep.replica_process import spawn_replica_worker

STATUS_INTERVAL_S = "1"
CHECKPOINT_INTERVAL_S = "5"


@dataclass
class ReplicaWorker:
    """One `lazyrep replica run` process and its log file."""

    replica: str
    process: subprocess.Popen[bytes]
    log: Path
    _daemons: set[int] = field(default_factory=set)

    def daemon_groups(self) -> set[int]:
        """Every daemon the supervisor started (each leads its own process group)."""
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                start = line.find('{"ts"')
                if start < 0 or '"started"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line[start : line.rfind("}") + 1])
                    if event.get("event") == "started" and event.get("daemon_pid"):
                        self._daemons.add(int(event["daemon_pid"]))
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            self._daemons.update(int(pid) for pid in children.read_text().split())
        return set(self._daemons)

    def groups(self) -> set[int]:
        """The supervisor's process group and every daemon's."""
        return {self.process.pid, *self.daemon_groups()}

    def exited(self) -> int | None:
        """The supervisor's exit code, None while it runs."""
        return self.process.poll()

    def tail(self, lines: int = 30) -> str:
        """The end of the worker's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 45.0) -> int | None:
        """SIGTERM (shards checkpoint and the daemon exits), then SIGKILL every group left.

        Returns the supervisor's exit code (None if it had to be killed).
        """
        groups = self.groups()
        code: int | None = None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=timeout_s)
        else:
            code = self.process.returncode
        groups |= self.daemon_groups()
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group_alive(group):
                    os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(map(group_alive, groups)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code


def start_worker(
    topology_path: Path,
    replica: str,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    max_records: int = 1000,
) -> ReplicaWorker:
    """Start `python -m lazyrep.cli_replica run` for `replica` (logs in `log_dir`)."""
    log = log_dir / f"replica-{replica}.log"
    environ = dict(os.environ if env is None else env)
    environ.setdefault("LAZYREP_STATUS_INTERVAL_S", STATUS_INTERVAL_S)
    environ.setdefault("LAZYREP_CHECKPOINT_INTERVAL_S", CHECKPOINT_INTERVAL_S)
    process = spawn_replica_worker(
        topology_path.resolve(),
        replica,
        f"demo-{replica}",
        log,
        env=environ,
        extra=["--stop-timeout-s", "30", "--set", f"maxRecords={max_records}"],
    )
    return ReplicaWorker(replica, process, log)


@dataclass(frozen=True, slots=True)
class ReplicaFigures:
    """One replica's progress, from its status table (one item per shard)."""

    replica: str
    shards: int
    done: int  # applied + skipped as stale + condition false + parked
    applied: int
    parked: int
    lag_ms: int | None
    rate_wcu: float  # the pacers' current rates, summed over shards
    spent_wcu: float
    verdicts: tuple[str, ...]
    applied_sequences: dict[str, str]
    updated_ms: dict[str, int]
    spent_by_shard: dict[str, float]


def _caught_up(progress: ShardProgress) -> bool:
    pacer = progress.pacer if isinstance(progress.pacer, dict) else {}
    backlog = pacer.get("backlog_wcu_estimate") or 0.0
    return progress.millis_behind_latest == 0 and backlog < 1.0


def replica_figures(client: Any, replica: str, application_name: str) -> ReplicaFigures | None:
    """The replica's progress (None before its status table exists or when unreadable).

    Lag: the age of the last applied record, over the shards not caught up (a caught-up
    shard's last record only ages).
    """
    try:
        shards = read_status(client, status_table_name(application_name))
    except Exception:  # the table does not exist yet: the workers create it
        return None
    now_ms = round(time.time() * 1000)
    lags = [p.lag_ms(now_ms) for p in shards if not _caught_up(p)]
    pacers = [p.pacer for p in shards if isinstance(p.pacer, dict)]
    return ReplicaFigures(
        replica=replica,
        shards=len(shards),
        done=sum(p.applied + p.skipped_stale + p.condition_failed + p.parked for p in shards),
        applied=sum(p.applied + p.skipped_stale + p.condition_failed for p in shards),
        parked=sum(p.parked for p in shards),
        lag_ms=max(
            (lag for lag in lags if lag is not None), default=None if lags or not shards else 0
        ),
        rate_wcu=sum(float(p.get("rate_wcu") or 0.0) for p in pacers),
        spent_wcu=sum(float(p.get("spent_wcu") or 0.0) for p in pacers),
        verdicts=tuple(sorted({str(p.get("verdict")) for p in pacers})),
        applied_sequences={p.shard_id: p.applied_sequence for p in shards if p.applied_sequence},
        updated_ms={p.shard_id: p.updated_ms for p in shards},
        spent_by_shard={
            p.shard_id: float(p.pacer.get("spent_wcu") or 0.0)
            for p in shards
            if isinstance(p.pacer, dict)
        },
    )


class WcuHistory:
    """A replica's WCU per one-second window, from its shards' successive `spent_wcu`."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, float]] = {}
        self.bins: dict[int, float] = {}

    def observe(self, figures: ReplicaFigures) -> None:
        """Spread each shard's spending since its previous report over the time between."""
        for shard, spent in figures.spent_by_shard.items():
            at = figures.updated_ms.get(shard, 0)
            previous = self._last.get(shard)
            if previous is None or at > previous[0]:
                if previous is not None and spent >= previous[1]:
                    spread(self.bins, previous[0] / 1000, at / 1000, spent - previous[1])
                self._last[shard] = (at, spent)

    @property
    def peak(self) -> float:
        """The highest one-second window so far."""
        return max(self.bins.values(), default=0.0)
