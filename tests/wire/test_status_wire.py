"""`lazyrep status` over the wire: leases, status items and stream as KCL and workers write them.

GIVEN a one-shard stream with three records, and three replica targets whose lease
tables (KCL 3.x item shape) and status tables (kcl_consumer.status items) place them:
caught up; behind with a pacer draining past the deadline; behind with a pacer that
cannot drain before the retention;
WHEN `lazyrep status --json` runs;
THEN each replica gets exactly its verdict, the figures are the stream's, and the exit
status is 3 because records will expire.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from binlog.tables import create_table
from binlog.topology import KeyAttribute, KeySchema
from emulators.stack import LocalStack
from kcl_consumer.status import DynamoStatusTable, ShardProgress, status_table_name
from lazyrep.cli_status import status

pytestmark = pytest.mark.wire

SHARD = "shardId-000000000000"


@dataclass
class World:
    run: str
    path: Path
    sequences: list[str]
    replica: Any


def lease_item(checkpoint: str, owner: str | None, counter: int = 5) -> dict[str, Any]:
    """A lease as KCL 3.1.3 writes it (the fields we read plus a few it always sets)."""
    item: dict[str, Any] = {
        "leaseKey": {"S": SHARD},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
        "leaseCounter": {"N": str(counter)},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": str(2**128 - 1)},
    }
    if owner:
        item["leaseOwner"] = {"S": owner}
    return item


def pacer(rate: float, drain_s: float, verdict: str) -> dict[str, Any]:
    return {"rate_wcu": rate, "projected_drain_s": drain_s, "verdict": verdict}


def make_world(tmp_path: Path) -> World:
    run = uuid.uuid4().hex[:8]
    stream = f"sstream-{run}"
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})  # type: ignore[typeddict-item]
    sequences = [
        kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey=f"k{i}")["SequenceNumber"]
        for i in range(3)
    ]
    path = tmp_path / "topology.toml"
    replicas = "".join(
        f"""
[replicas.{name}]
region = "eu-west-1"
max_wcu = 50
deadline_hours = {deadline}
application_name = "{name}-{run}"
"""
        for name, deadline in (("fine", 20), ("late", 0.01), ("doomed", 20))
    )
    path.write_text(
        f"""
[stream]
name = "{stream}"
region = "us-east-1"
shards = 1

[tables.users-{run}]
partition_key = {{ name = "pk", type = "S" }}
{replicas}""",
        encoding="utf-8",
    )
    replica = boto3.client("dynamodb", region_name="eu-west-1")
    now_ms = int(time.time() * 1000)
    for name, checkpoint, drain, verdict in (
        ("fine", sequences[-1], 0.0, "ok"),
        ("late", sequences[0], 100.0, "ok"),
        ("doomed", sequences[0], 200_000.0, "records will expire"),
    ):
        app = f"{name}-{run}"
        create_table(replica, app, KeySchema(KeyAttribute("leaseKey", "S")))
        replica.put_item(TableName=app, Item=lease_item(checkpoint, f"worker-{name}"))
        table = DynamoStatusTable(replica, status_table_name(app))
        table.ensure()
        table.publish(
            ShardProgress(
                shard_id=SHARD,
                replica=name,
                owner=f"worker-{name}",
                state="processing",
                checkpoint_sequence=checkpoint,
                pacer=pacer(2.5, drain, verdict),
                updated_ms=now_ms,
            ),
            claim=True,
        )
    return World(run, path, sequences, replica)


def test_each_replica_gets_its_verdict_and_the_exit_status_says_expiry(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)

    result = CliRunner().invoke(status, ["--topology", str(world.path), "--json"])

    assert result.exit_code == 3, result.stderr
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "records will expire"
    assert doc["stream"] == {
        "name": f"sstream-{world.run}",
        "region": "us-east-1",
        "retention_hours": 24.0,
    }
    assert doc["primary"]["iterator_age_ms"] is None
    assert doc["primary"]["source"].startswith("unknown")
    by_name = {r["name"]: r for r in doc["replicas"]}
    assert sorted(by_name) == ["doomed", "fine", "late"]
    assert {n: r["verdict"] for n, r in by_name.items()} == {
        "fine": "ok",
        "late": "at risk",
        "doomed": "records will expire",
    }

    fine = by_name["fine"]["shards"][0]
    assert set(fine) == {
        "shard_id", "open", "lease_owner", "lease_counter", "checkpoint",
        "checkpoint_subsequence", "latest_sequence", "next_unapplied_sequence",
        "oldest_unapplied_age_s", "millis_behind_latest", "caught_up", "worker_state",
        "status_age_s", "pacer_rate_wcu", "projected_drain_s", "margin_to_deadline_s",
        "margin_to_retention_s", "verdict", "reasons",
    }  # fmt: skip
    assert fine["shard_id"] == SHARD
    assert fine["open"] is True
    assert fine["lease_owner"] == "worker-fine"
    assert fine["lease_counter"] == 5
    assert fine["checkpoint"] == world.sequences[-1]
    assert fine["caught_up"] is True
    assert fine["next_unapplied_sequence"] is None
    assert fine["millis_behind_latest"] == 0
    assert fine["margin_to_deadline_s"] == 20 * 3600
    assert fine["margin_to_retention_s"] == 24 * 3600
    assert fine["reasons"] == []

    late = by_name["late"]["shards"][0]
    assert late["caught_up"] is False
    assert late["next_unapplied_sequence"] == world.sequences[1]
    assert 0 <= late["oldest_unapplied_age_s"] < 30
    assert late["pacer_rate_wcu"] == 2.5
    assert late["projected_drain_s"] == 100.0
    assert late["margin_to_deadline_s"] < 0  # 36 s deadline, 100 s to drain
    assert late["verdict"] == "at risk"
    assert late["reasons"] == ["the oldest unapplied record misses the deadline"]

    doomed = by_name["doomed"]["shards"][0]
    assert doomed["margin_to_retention_s"] < 0
    assert doomed["reasons"] == [
        "the oldest unapplied record leaves the stream before it is applied",
        "the oldest unapplied record misses the deadline",
        "the pacer says records will expire",
    ]


def test_table_for_people_and_one_replica_only(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)

    result = CliRunner(env={"COLUMNS": "220"}).invoke(
        status, ["--topology", str(world.path), "--replica", "fine"]
    )

    assert result.exit_code == 0, result.stderr
    assert "replica fine" in result.stdout
    assert "caught up" in result.stdout
    assert "replica late" not in result.stdout


def test_no_lease_table_is_at_risk_not_an_error(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    text = world.path.read_text().replace(f'"late-{world.run}"', f'"never-ran-{world.run}"')
    world.path.write_text(text)

    result = CliRunner().invoke(
        status, ["--topology", str(world.path), "--replica", "late", "--json"]
    )

    assert result.exit_code == 0, result.stderr
    replica = json.loads(result.stdout)["replicas"][0]
    assert replica["lease_table_found"] is False
    assert replica["verdict"] == "at risk"
    assert replica["shards"][0]["next_unapplied_sequence"] == world.sequences[0]
    assert "no worker holds the lease" in replica["shards"][0]["reasons"]


def test_unknown_replica_is_one_line_exit_2(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)

    result = CliRunner().invoke(status, ["--topology", str(world.path), "--replica", "mars"])

    assert result.exit_code == 2
    assert result.stderr == (
        "lazyrep: error: status: unknown replica 'mars' (known: doomed, fine, late)\n"
    )
