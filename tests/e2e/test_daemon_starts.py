"""The real KCL MultiLangDaemon runs against the local stack and delivers every record.

Slow by nature: the KCL takes 40-75 s from start to the first record on an empty lease
table (lease table checks, lease creation, assignment and discovery).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulators.procs import group_alive
from emulators.stack import LocalStack
from kcl_consumer.properties import KclSettings, write_properties

pytestmark = [pytest.mark.daemon, pytest.mark.wire]

RECORDS = 20
FIRST_RECORD_TIMEOUT_S = 150
LAZYREP = str(Path(sys.executable).with_name("lazyrep"))
ECHO_PROCESSOR = Path(__file__).with_name("echo_processor.py").resolve()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition: Any, timeout_s: float, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if daemon.poll() is not None:
            pytest.fail(f"daemon exited with {daemon.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s; daemon log:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


@pytest.mark.timeout(FIRST_RECORD_TIMEOUT_S + 90)
def test_daemon_delivers_every_record_and_stops_cleanly(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    # GIVEN a 2-shard stream holding RECORDS records
    stream = f"daemon-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    sent = [f"record-{i}" for i in range(RECORDS)]
    reply = kinesis.put_records(
        StreamName=stream,
        Records=[{"PartitionKey": f"key-{i}", "Data": d.encode()} for i, d in enumerate(sent)],
    )
    assert reply["FailedRecordCount"] == 0
    output = tmp_path / "received.jsonl"
    properties = write_properties(
        tmp_path / "app.properties",
        KclSettings(
            executable=f"{sys.executable} {ECHO_PROCESSOR} {output}",
            application_name=f"app-{uuid.uuid4().hex[:8]}",
            stream_name=stream,
            region=stack_env.region,
            kinesis_endpoint=stack_env.endpoints.kinesis_h2c,
            dynamodb_endpoint=stack_env.endpoints.dynamodb,
            cloudwatch_endpoint=stack_env.endpoints.cloudwatch,
        ),
    )

    # WHEN the daemon runs, started the way operators start it
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    with log.open("wb") as log_out:
        daemon = subprocess.Popen(
            [LAZYREP, "kcl", "run", "--properties", str(properties)],
            stdin=subprocess.DEVNULL,
            stdout=log_out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
            start_new_session=True,
        )
    try:
        # THEN every record arrives
        def received() -> list[str]:
            return [e["data"] for e in read_events(output) if e["event"] == "record"]

        wait_for(received, FIRST_RECORD_TIMEOUT_S, daemon, log)
        first_record_s = time.monotonic() - started
        wait_for(lambda: len(received()) >= RECORDS, 30, daemon, log)
        assert sorted(received()) == sorted(sent)
        print(f"daemon: first record after {first_record_s:.1f} s", file=sys.stderr)

        # AND a SIGTERM gives each processor shutdownRequested, then the JVM exits
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
    assert daemon.returncode in (0, 143), log.read_text()[-4000:]
    shards = {e["shard"] for e in read_events(output) if e["event"] == "record"}
    stopped = {e["shard"] for e in read_events(output) if e["event"] == "shutdown_requested"}
    assert shards <= stopped
    deadline = time.monotonic() + 10
    while group_alive(daemon.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(daemon.pid), "a record processor outlived the daemon"
