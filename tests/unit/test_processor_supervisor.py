"""The local launcher's supervisor, on small Python programs standing in for the daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kcl_consumer.supervisor import RestartPolicy, Supervisor

FAST = RestartPolicy(backoff_base_s=0.01, backoff_max_s=0.05, stop_timeout_s=5, orphan_grace_s=1)


def program(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "daemon.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path), str(tmp_path)]


def wait_for(path: Path, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_restarts_after_non_zero_exits_until_a_clean_exit(tmp_path: Path) -> None:
    # GIVEN a daemon that fails twice, then exits 0
    argv = program(
        tmp_path,
        """
        import sys, pathlib
        runs = pathlib.Path(sys.argv[1], "runs")
        n = int(runs.read_text()) + 1 if runs.exists() else 1
        runs.write_text(str(n))
        sys.exit(0 if n == 3 else 1)
        """,
    )
    starts: list[tuple[int, int]] = []
    supervisor = Supervisor(argv, policy=FAST, on_start=lambda pid, n: starts.append((pid, n)))
    # WHEN supervised
    code = supervisor.run()
    # THEN it was started three times, and the supervisor ends with the clean exit
    assert code == 0
    assert [n for _, n in starts] == [1, 2, 3]
    assert len({pid for pid, _ in starts}) == 3


def test_before_start_runs_before_every_start(tmp_path: Path) -> None:
    # GIVEN a daemon that reads the file its supervisor writes before each start
    argv = program(
        tmp_path,
        """
        import sys, pathlib
        sys.exit(0 if pathlib.Path(sys.argv[1], "config").read_text() == "3" else 1)
        """,
    )

    def write(start: int) -> None:
        (tmp_path / "config").write_text(str(start))

    supervisor = Supervisor(argv, policy=FAST, before_start=write)
    assert supervisor.run() == 0
    assert supervisor.starts == 3


def test_gives_up_after_max_restarts_with_the_daemons_code(tmp_path: Path) -> None:
    argv = program(tmp_path, "import sys; sys.exit(5)\n")
    policy = RestartPolicy(backoff_base_s=0.01, backoff_max_s=0.01, max_restarts=2)
    supervisor = Supervisor(argv, policy=policy)
    assert supervisor.run() == 5
    assert supervisor.starts == 3


def test_killed_daemon_reports_128_plus_the_signal(tmp_path: Path) -> None:
    argv = program(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
    supervisor = Supervisor(argv, policy=RestartPolicy(max_restarts=0))
    assert supervisor.run() == 137


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(backoff_base_s=1, backoff_max_s=5)
    assert [policy.delay_s(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_policy_names_the_field_it_refuses() -> None:
    with pytest.raises(ValueError, match="backoff_base_s"):
        RestartPolicy(backoff_base_s=10, backoff_max_s=1)
    with pytest.raises(ValueError, match="stop_timeout_s"):
        RestartPolicy(stop_timeout_s=0)


def test_stop_forwards_sigterm_and_ends_cleanly(tmp_path: Path) -> None:
    # GIVEN a daemon that shuts down gracefully on SIGTERM, as the JVM does (exit 143)
    argv = program(
        tmp_path,
        """
        import pathlib, signal, sys, time
        out = pathlib.Path(sys.argv[1])
        def term(signum, frame):
            (out / "got").write_text(signal.Signals(signum).name)
            sys.exit(143)
        signal.signal(signal.SIGTERM, term)
        (out / "ready").write_text("")
        time.sleep(60)
        """,
    )
    supervisor = Supervisor(argv, policy=FAST)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    wait_for(tmp_path / "ready")
    # WHEN asked to stop
    supervisor.stop()
    thread.join(timeout=10)
    # THEN the daemon got SIGTERM, and the supervisor neither restarted it nor failed
    assert result == [0]
    assert (tmp_path / "got").read_text() == "SIGTERM"
    assert supervisor.starts == 1


def test_daemon_ignoring_the_stop_is_killed_after_the_timeout(tmp_path: Path) -> None:
    argv = program(
        tmp_path,
        """
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path(sys.argv[1], "ready").write_text("")
        time.sleep(60)
        """,
    )
    policy = RestartPolicy(stop_timeout_s=0.5, orphan_grace_s=0.5)
    supervisor = Supervisor(argv, policy=policy)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    wait_for(tmp_path / "ready")
    began = time.monotonic()
    supervisor.stop()
    thread.join(timeout=10)
    assert result == [137]
    assert time.monotonic() - began < 5


def test_second_stop_kills_at_once(tmp_path: Path) -> None:
    argv = program(
        tmp_path,
        """
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path(sys.argv[1], "ready").write_text("")
        time.sleep(60)
        """,
    )
    supervisor = Supervisor(argv, policy=RestartPolicy(stop_timeout_s=60))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    wait_for(tmp_path / "ready")
    supervisor.stop()
    time.sleep(0.5)
    supervisor.stop()
    thread.join(timeout=10)
    assert result == [137]


def test_processes_a_dead_daemon_left_behind_are_ended(tmp_path: Path) -> None:
    # GIVEN a daemon that starts a child (a record processor) and dies without it
    argv = program(
        tmp_path,
        """
        import pathlib, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path(sys.argv[1], "child").write_text(str(child.pid))
        sys.exit(1)
        """,
    )
    policy = RestartPolicy(max_restarts=0, orphan_grace_s=0.2)
    # WHEN it is supervised
    assert Supervisor(argv, policy=policy).run() == 1
    # THEN the orphan is gone too
    orphan = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(orphan)


def test_sigterm_to_the_supervisor_reaches_the_daemon(tmp_path: Path) -> None:
    # GIVEN a supervisor process (signal handlers need the main thread) over a daemon
    daemon = program(
        tmp_path,
        """
        import pathlib, signal, sys, time
        out = pathlib.Path(sys.argv[1])
        def term(signum, frame):
            (out / "got").write_text(signal.Signals(signum).name)
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, term)
        (out / "ready").write_text("")
        time.sleep(60)
        """,
    )
    runner = tmp_path / "supervise.py"
    runner.write_text(
        "import sys\n"
        "from kcl_consumer.supervisor import Supervisor\n"
        f"sys.exit(Supervisor({daemon!r}).run())\n"
    )
    supervisor = subprocess.Popen([sys.executable, str(runner)], start_new_session=True)
    try:
        wait_for(tmp_path / "ready")
        # WHEN Ctrl-C reaches the supervisor (not the daemon: it has its own session)
        os.kill(supervisor.pid, signal.SIGINT)
        code = supervisor.wait(timeout=15)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
    # THEN the daemon got SIGINT, stopped, and the supervisor ended cleanly
    assert (tmp_path / "got").read_text() == "SIGINT"
    assert code == 0
