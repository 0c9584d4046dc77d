"""The local stack: every service answers, only on loopback, and stopping leaves nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from emulators.stack import ENDPOINT_ENV, KCL_KINESIS_ENV, LocalStack

pytestmark = pytest.mark.wire

LAZYREP = str(Path(sys.executable).with_name("lazyrep"))
LINUX_PROC = Path("/proc/net/tcp").exists()


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid` (Linux /proc).

    Zombies are left out: they have exited, and an orphan's is reaped by pid 1, not us.
    """
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def listening_addresses(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by `pids` (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = TCP_LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def test_env_maps_every_service_to_the_stack(stack_env: LocalStack) -> None:
    env = stack_env.env
    for attr, var in ENDPOINT_ENV.items():
        assert env[var] == getattr(stack_env.endpoints, attr)
        assert env[var].startswith("http://127.0.0.1:")
    assert env[KCL_KINESIS_ENV] == stack_env.endpoints.kinesis_h2c
    assert stack_env.endpoints.kinesis_h2c != stack_env.endpoints.kinesis


def test_every_service_answers_through_the_standard_variables(stack_env: LocalStack) -> None:
    # GIVEN clients built with no endpoint_url: AWS_ENDPOINT_URL_<SERVICE> must route them.
    name = f"t-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis")
    dynamodb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    s3 = boto3.client("s3")
    cloudwatch = boto3.client("cloudwatch")

    kinesis.create_stream(StreamName=name, ShardCount=1)
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    s3.create_bucket(Bucket=name)
    cloudwatch.put_metric_data(Namespace=name, MetricData=[{"MetricName": "m", "Value": 1.0}])

    assert (
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE"
    )
    # describe, not list: the session's stack holds more tables than one ListTables page.
    assert dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    assert queue_url in sqs.list_queues()["QueueUrls"]
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert cloudwatch.list_metrics(Namespace=name)["Metrics"][0]["MetricName"] == "m"


def test_h2c_endpoint_fronts_the_same_kinesis_over_http1(stack_env: LocalStack) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis").create_stream(StreamName=name, ShardCount=1)
    via_proxy = boto3.client("kinesis", endpoint_url=stack_env.endpoints.kinesis_h2c)
    assert name in via_proxy.list_streams(Limit=1000)["StreamNames"]


def test_h2c_endpoint_speaks_http2_with_prior_knowledge(local_stack: LocalStack) -> None:
    # The KCL's client opens with the HTTP/2 preface, no upgrade: the reply must be SETTINGS.
    host, port = local_stack.endpoints.kinesis_h2c.removeprefix("http://").split(":")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(preface)
        header = conn.recv(9, socket.MSG_WAITALL)
    assert len(header) == 9
    assert header[3] == 0x4  # frame type SETTINGS


def test_moto_isolates_regions(stack_env: LocalStack) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert name not in boto3.client("dynamodb", region_name="eu-west-1").list_tables()["TableNames"]


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc/net/tcp")
def test_listens_on_loopback_only(local_stack: LocalStack) -> None:
    for proc in local_stack.processes:
        addresses = listening_addresses(group_members(proc.pid))
        assert addresses, f"{proc.name} listens nowhere"
        assert all(addr in ("127.0.0.1", "::1") for addr, _ in addresses), (proc.name, addresses)


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc")
def test_stop_leaves_no_process() -> None:
    with LocalStack.start() as stack:
        pgids = [p.pid for p in stack.processes]
        assert all(group_members(pgid) for pgid in pgids)
    assert [pgid for pgid in pgids if group_members(pgid)] == []


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAZYREP, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def parse_exports(text: str) -> dict[str, str]:
    exports = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = value
    return exports


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc")
def test_cli_up_env_down(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    up = run_cli("local", "up", "--state-dir", state)
    assert up.returncode == 0, up.stderr
    try:
        exports = parse_exports(up.stdout)
        assert set(ENDPOINT_ENV.values()) <= exports.keys()
        assert run_cli("local", "up", "--state-dir", state).returncode == 2  # already up

        env = run_cli("local", "env", "--state-dir", state)
        assert env.returncode == 0, env.stderr
        assert parse_exports(env.stdout) == exports

        kinesis = boto3.client("kinesis", endpoint_url=exports["AWS_ENDPOINT_URL_KINESIS"])
        assert kinesis.list_streams()["StreamNames"] == []
        pgids = [p.pid for p in LocalStack.load(Path(state, "local-stack.json")).processes]
        assert all(group_members(pgid) for pgid in pgids)
    finally:
        down = run_cli("local", "down", "--state-dir", state)
    assert down.returncode == 0, down.stderr
    assert [pgid for pgid in pgids if group_members(pgid)] == []
    assert run_cli("local", "env", "--state-dir", state).returncode == 2


def test_cli_run_passes_the_env_and_the_exit_code() -> None:
    script = (
        "import os, sys, boto3;"
        "boto3.client('kinesis').list_streams();"
        "print(os.environ['AWS_ENDPOINT_URL_DYNAMODB']);"
        "sys.exit(7)"
    )
    result = run_cli("local", "run", "--", sys.executable, "-c", script)
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip().startswith("http://127.0.0.1:")


def test_cli_names_the_fix_when_a_tool_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "LAZYREP_CACHE": str(tmp_path / "empty-cache")}
    result = run_cli("local", "up", "--state-dir", str(tmp_path / "state"), env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "kinesalite not found" in result.stderr
    assert "make bootstrap" in result.stderr
