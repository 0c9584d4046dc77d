"""Start one `lazyrep replica run` as a child: the demo's, the reliability suite's and the tests'.

The worker (a supervisor over the real MultiLangDaemon) gets its own session, so its
whole process group can be stopped or killed at once, and writes everything to `log`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn_replica_worker(
    topology: Path,
    replica: str,
    worker_id: str,
    log: Path,
    *,
    env: Mapping[str, str],
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """`python -m lazyrep.cli_replica run` for `replica` (restart back-off from 1 s), with
    `extra` arguments (`--set`, `--properties`, ...), in its own session."""
    argv = [
        sys.executable,
        "-m",
        "lazyrep.cli_replica",
        "run",
        "--topology",
        str(topology),
        "--replica",
        replica,
        "--worker-id",
        worker_id,
        "--backoff-s",
        "1",
        *extra,
    ]
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own module, arguments built here
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
