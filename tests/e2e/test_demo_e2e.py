"""`lazyrep demo` end to end, at a small scale, through its command line.

GIVEN nothing running (the demo starts the local stack itself);
WHEN `lazyrep demo --actions 3000 --json` runs: the stream and the tables of three
regions, the Lambda handler behind the local event source mapping, one real KCL
worker per replica, paced writers with both SDKs and a rogue raw-boto3 writer;
THEN it exits 0, every record was finished by every consumer (applied, or parked for
the rogue ones with their reasons by each consumer), both replicas verify with no
difference, the primary equals the reference model, and no process it started is left.

Slow by nature: the KCL takes 40-75 s to its first record, and the replicas are paced
to lag by design; the test runs the packaged demo topology with the replicas' deadlines
cut to 72 and 90 s (from 90 and 108 s), which the demo's replicas take most of.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emulators.procs import group_alive

pytestmark = [pytest.mark.daemon, pytest.mark.wire]

ACTIONS = 3000
BUDGET_S = 300  # about 100-135 s on two quiet cores; the rest is room for a busy machine
ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "lazyrep" / "demo_topology.toml"
DEADLINES_H = {"0.025": "0.02", "0.03": "0.025"}
ROGUE_REASONS = {
    "not_json",
    "unauthorized_table",
    "key_mismatch",
    "bad_value",
    "too_deep",
    "item_too_large",
}
CONSUMERS = {"lambda:primary", "kcl:eu", "kcl:apac"}


def short_deadlines(tmp_path: Path) -> Path:
    """The demo topology with shorter replica deadlines (the same tables, replicas, queue)."""
    text = TOPOLOGY.read_text(encoding="utf-8")
    for long, short in DEADLINES_H.items():
        assert f"deadline_hours = {long}\n" in text
        text = text.replace(f"deadline_hours = {long}\n", f"deadline_hours = {short}\n")
    path = tmp_path / "topology.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_demo(tmp_path: Path) -> tuple[int, dict[str, Any], str, float]:
    """Run the CLI; past the budget, SIGTERM it (it stops what it started), then SIGKILL."""
    lazyrep = Path(sys.executable).with_name("lazyrep")
    topology = short_deadlines(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["TMPDIR"] = str(tmp_path)  # the demo's logs, kept there if it fails
    started = time.monotonic()
    argv = [str(lazyrep), "demo", "--topology", str(topology), "--actions", str(ACTIONS), "--json"]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=BUDGET_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                stdout, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            pytest.fail(f"the demo ran over {BUDGET_S} s:\n{stderr[-4000:]}")
    elapsed = time.monotonic() - started
    try:
        report = json.loads(stdout)
    except ValueError:
        pytest.fail(f"no JSON report (exit {process.returncode}):\n{stdout}\n{stderr[-4000:]}")
    return process.returncode, report, stderr, elapsed


@pytest.mark.timeout(BUDGET_S + 60)
def test_demo_runs_the_whole_system_and_verifies(tmp_path: Path) -> None:
    code, report, stderr, elapsed = run_demo(tmp_path)
    assert code == 0, (report["problems"], stderr[-4000:])
    assert report["ok"]
    assert report["problems"] == []

    # every action produced, plus the rogue records, is in the stream
    assert report["actions_target"] <= report["produced"] < report["actions_target"] + 10
    rogue = report["rogue"]
    assert {r["reason"] for r in rogue} == ROGUE_REASONS
    assert report["records"] == report["produced"] + len(rogue)

    # the primary finished every record: applied, or parked (the rogue ones)
    primary = report["primary"]
    assert primary["done"] == report["records"]
    assert primary["applied"] == report["produced"]
    assert primary["parked"] == len(rogue)
    assert set(primary["parked_reasons"]) == ROGUE_REASONS
    assert 0 < primary["latency_p50_ms"] <= primary["latency_p99_ms"]
    assert primary["peak_wcu"] > 0

    # each replica reached the last record of every shard and verifies with no difference
    # (its status counts restart whenever its worker takes a lease again: not asserted)
    for name in ("eu", "apac"):
        replica = report["replicas"][name]
        assert replica["done_s"] is not None
        assert 0 < replica["done"] <= report["records"]
        assert replica["peak_wcu"] > 0
        assert replica["max_lag_s"] > 0
        verify = report["verify"][name]
        assert verify["ok"]
        assert verify["lag"] == "none"  # the replica reached the end: nothing may differ
        assert verify["remaining_errors"] == 0
        for counts in verify["tables"].values():
            assert counts["checked"] == counts["in_sync"] > 0
    assert "orders -> orders-apac" in report["verify"]["apac"]["tables"]

    # the primary equals the reference model
    for check in report["primary_vs_reference"].values():
        assert check["equal"]
        assert check["items"] == check["expected"] > 0

    # each consumer parked each rogue record with its reason (a redelivery may park it
    # again: letters carry a stable letter_id); nothing else was parked
    letters = {(d["consumer"], d["reason"], d["partition_key"]) for d in report["dead_letters"]}
    expected = {(c, r["reason"], r["partition_key"]) for c in CONSUMERS for r in rogue}
    assert letters == expected

    # the workers stopped cleanly, and every process group the demo started is gone
    assert report["worker_exits"] == {"eu": 0, "apac": 0}
    assert report["processes_left"] == []
    groups = report["process_groups"] + report["stack_groups"]
    assert len(report["process_groups"]) >= 4  # two supervisors, two daemons
    assert len(report["stack_groups"]) == 5  # kinesalite, nghttpx, moto; a moto per replica
    assert not [g for g in groups if group_alive(g)]
    print(f"demo of {ACTIONS} actions: {elapsed:.0f} s; {report['seconds']}", file=sys.stderr)
