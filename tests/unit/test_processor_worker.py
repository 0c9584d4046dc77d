"""The worker's wiring (real pacer, applier, dead letters, status table) and `lazyrep replica`.

AWS is moto in-process: DynamoDB for the replica (eu-west-1) and the status table,
SQS for dead letters, and Kinesis only for DescribeStreamSummary and ListShards (moto's
Kinesis loses records under concurrent writers; nothing here writes records to it).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner
from moto import mock_aws

from binlog.errors import TopologyError
from binlog.tables import create_topology_tables
from binlog.topology import load_topology
from kcl_consumer import worker
from kcl_consumer.pacer import Pacer, PacerConfig
from kcl_consumer.processor import Pacer as ProcessorPacer
from kcl_consumer.status import (
    DynamoStatusTable,
    MemoryStatus,
    PeriodicReporter,
    ShardProgress,
    read_status,
    status_table_name,
)
from lazyrep import cli_replica

STREAM = "binlog-w"
SHARD = "shardId-000000000001"
OLD_ARRIVAL_MS = 1_700_000_000_000  # long past the deadline: the pacer goes at max_wcu


def topology_text(retention_hours: int = 24, deadline_hours: float = 12, dlq: bool = True) -> str:
    text = f"""
[stream]
name = "{STREAM}"
region = "us-east-1"
shards = 2
retention_hours = {retention_hours}

[tables.users]
partition_key = {{ name = "user_id", type = "S" }}

[replicas.eu]
region = "eu-west-1"
max_wcu = 2000
deadline_hours = {deadline_hours}
tables = {{ users = "users-eu" }}
application_name = "replica-eu"

[applier]
tombstone_table = "tombstones-eu"
"""
    if dlq:
        text += '\n[dead_letter]\nkind = "sqs"\nname = "dlq-w"\n'
    return text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def aws(tmp_path: Path, restore_logging: None) -> Iterator[Path]:
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName=STREAM, ShardCount=2)
        boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="dlq-w")
        path = tmp_path / "topology.toml"
        path.write_text(topology_text())
        topology = load_topology(path)
        create_topology_tables(
            boto3.client("dynamodb", region_name="eu-west-1"),
            topology,
            table_map=topology.replicas["eu"].tables,
        )
        yield path


def line(doc: dict[str, Any]) -> str:
    return json.dumps(doc) + "\n"


def put_record(user: str, sequence: str) -> dict[str, Any]:
    data = orjson.dumps(
        {
            "format": 1,
            "id": f"id-{sequence}",
            "time": 1,
            "action": "PutItem",
            "table": "users",
            "key": {"user_id": {"S": user}},
            "item": {"user_id": {"S": user}, "n": {"N": sequence}},
        }
    )
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": user,
        "sequenceNumber": sequence,
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": OLD_ARRIVAL_MS,
    }


# -- settings ---------------------------------------------------------------------------------


def test_settings_take_arguments_over_environment() -> None:
    env = {
        "LAZYREP_TOPOLOGY": "/env/t.toml",
        "LAZYREP_REPLICA": "apac",
        "LAZYREP_WORKER_ID": "w7",
        "LAZYREP_CHUNK_RECORDS": "50",
        "LAZYREP_CLOUDWATCH_METRICS": "yes",
    }
    settings = worker.WorkerSettings.resolve(topology_path="/arg/t.toml", environ=env)
    assert settings.topology_path == "/arg/t.toml"
    assert settings.replica == "apac"
    assert settings.chunk_records == 50
    assert settings.cloudwatch_metrics is True
    assert settings.owner.startswith("w7/")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LAZYREP_REPLICA": "eu"}, "topology_path"),
        ({"LAZYREP_TOPOLOGY": "t"}, "replica"),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_REPLICA": "eu", "LAZYREP_MAX_WORKERS": "x"}, "MAX"),
        ({"LAZYREP_TOPOLOGY": "t", "LAZYREP_REPLICA": "eu", "LAZYREP_STATUS_TABLE": "z"}, "STAT"),
    ],
)
def test_settings_name_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        worker.WorkerSettings.resolve(environ=env)


# -- the wired worker -------------------------------------------------------------------------


def test_worker_applies_checkpoints_and_publishes_status(aws: Path) -> None:
    # GIVEN the processor the worker builds from the topology (real pacer and applier)
    settings = worker.WorkerSettings(str(aws), "eu", worker_id="w1", status_interval_s=0)
    processor = worker.build_processor(settings)
    script: list[dict[str, Any]] = [
        {
            "action": "initialize",
            "shardId": SHARD,
            "sequenceNumber": "TRIM_HORIZON",
            "subSequenceNumber": 0,
        },
        {
            "action": "processRecords",
            "records": [put_record("u1", "101"), put_record("u2", "102")],
            "millisBehindLatest": 0,
        },
        {"action": "checkpoint", "sequenceNumber": "102", "subSequenceNumber": 0, "error": None},
        {"action": "shutdownRequested"},
    ]
    output = io.StringIO()
    # WHEN the daemon talks to it
    code = worker.run(
        processor,
        input_file=io.StringIO("".join(map(line, script))),
        output_file=output,
        error_file=io.StringIO(),
    )
    # THEN the batch is applied and checkpointed, and the daemon's channel holds only protocol
    assert code == 0
    messages = [json.loads(x) for x in output.getvalue().splitlines() if x.strip()]
    assert messages == [
        {"action": "status", "responseFor": "initialize"},
        {"action": "checkpoint", "sequenceNumber": "102", "subSequenceNumber": 0},
        {"action": "status", "responseFor": "processRecords"},
        {"action": "status", "responseFor": "shutdownRequested"},
    ]
    dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
    users = dynamodb.scan(TableName="users-eu")["Items"]
    assert sorted(u["user_id"]["S"] for u in users) == ["u1", "u2"]
    # AND the status table (created by the worker) shows the shard's progress
    (progress,) = read_status(dynamodb, status_table_name("replica-eu"))
    assert progress.shard_id == SHARD
    assert progress.replica == "eu"
    assert progress.owner.startswith("w1/")
    assert progress.state == "shut_down"
    assert progress.checkpoint_sequence == "102"
    assert progress.applied_arrival_ms == OLD_ARRIVAL_MS
    assert progress.applied == 2
    assert progress.pacer["max_wcu"] == 1000.0  # max_wcu shared by the 2 open shards
    assert progress.pacer["spent_wcu"] > 0


def test_real_pacer_is_what_the_processor_expects() -> None:
    config = PacerConfig(max_wcu=10, deadline_s=3600)
    pacer: ProcessorPacer = Pacer(config)
    assert pacer.suggested_chunk_wcu() >= 1


def test_shard_parents_come_from_list_shards(aws: Path) -> None:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    shard = kinesis.list_shards(StreamName=STREAM)["Shards"][0]
    low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(
        StreamName=STREAM, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    parents = worker.ShardParents(kinesis, STREAM)
    assert parents("shardId-000000000000") == [None, None]
    assert parents("shardId-000000000002") == ["shardId-000000000000", None]
    assert worker.open_shards(kinesis, STREAM) == 3
    with pytest.raises(LookupError):
        parents("shardId-000000000042")


def test_worker_refuses_a_deadline_the_stream_cannot_hold(
    aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a topology that believes in 48 h of retention; the stream keeps 24 h
    aws.write_text(topology_text(retention_hours=48, deadline_hours=40))
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # main() points stdout at stderr
    # WHEN the daemon starts the worker
    code = worker.main(["--topology", str(aws), "--replica", "eu"])
    # THEN it refuses to start, saying what to change
    assert code == worker.EXIT_CANNOT_START
    logged = capsys.readouterr().err
    assert "replica worker cannot start" in logged
    assert "Raise the stream's retention to at least 42 h" in logged


def test_worker_refuses_a_topology_without_dead_letter_store(aws: Path) -> None:
    aws.write_text(topology_text(dlq=False))
    with pytest.raises(TopologyError, match="dead-letter"):
        worker.build_processor(worker.WorkerSettings(str(aws), "eu"))


def test_worker_refuses_an_unknown_replica(aws: Path) -> None:
    with pytest.raises(TopologyError, match=r"replicas\.mars.*known: eu"):
        worker.build_processor(worker.WorkerSettings(str(aws), "mars"))


# -- the status table -------------------------------------------------------------------------


def test_status_table_is_created_once_and_owned_by_the_last_claimant() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        table = DynamoStatusTable(client, "app-status", clock=lambda: 1000.0)
        table.ensure()
        table.ensure()  # a second shard's process: nothing to do
        old = ShardProgress(SHARD, "eu", "old/1", "processing", checkpoint_sequence="5")
        new = ShardProgress(SHARD, "eu", "new/2", "processing", pacer={"rate_wcu": 1.5})
        table.publish(old, claim=True)
        table.publish(new, claim=True)  # the new lease holder takes the item over
        table.publish(ShardProgress(SHARD, "eu", "old/1", "lease_lost"))  # too late: dropped
        (stored,) = table.read()
        assert stored == new
        item = client.get_item(TableName="app-status", Key={"shard_id": {"S": SHARD}})["Item"]
        assert item["expires"] == {"N": str(1000 + 7 * 24 * 3600)}


def test_periodic_reporter_writes_the_latest_routine_report_and_lifecycle_at_once() -> None:
    sink = MemoryStatus()
    reporter = PeriodicReporter(sink, interval_s=3600)  # the thread never fires here
    first = ShardProgress(SHARD, "eu", "w/1", "processing", applied=1)
    second = ShardProgress(SHARD, "eu", "w/1", "processing", applied=2)
    claimed = ShardProgress(SHARD, "eu", "w/1", "initializing")
    reporter.report(claimed, claim=True)
    reporter.report(first)
    reporter.report(second)
    assert sink.reports == [claimed]  # routine reports wait for the thread
    assert sink.claims == [claimed]
    reporter.close()
    assert sink.reports == [claimed, second]  # only the latest is written
    ended = ShardProgress(SHARD, "eu", "w/1", "ended")
    reporter.report(first)
    reporter.report(ended, now=True)  # replaces the pending routine report
    reporter.flush()
    assert sink.reports == [claimed, second, ended]


def test_periodic_reporter_thread_writes_within_its_interval() -> None:
    sink = MemoryStatus()
    reporter = PeriodicReporter(sink, interval_s=0.05)
    reporter.report(ShardProgress(SHARD, "eu", "w/1", "processing"))
    deadline = time.monotonic() + 5
    while not sink.reports and time.monotonic() < deadline:
        time.sleep(0.01)
    reporter.close()
    assert [r.state for r in sink.reports] == ["processing"]


def test_progress_round_trips_through_an_item() -> None:
    progress = ShardProgress(
        SHARD,
        "eu",
        "w/1",
        "ended",
        checkpoint_sequence="4955",
        checkpoint_subsequence=2,
        applied_arrival_ms=10,
        millis_behind_latest=0,
        applied=3,
        detail="x",
        pacer={"verdict": "ok"},
        updated_ms=20,
    )
    assert ShardProgress.from_item(progress.to_item()) == progress
    assert progress.lag_ms(1010) == 1000


# -- lazyrep replica --------------------------------------------------------------------------


def test_replica_run_refuses_a_deadline_that_does_not_fit(aws: Path) -> None:
    aws.write_text(topology_text(retention_hours=48, deadline_hours=40))
    result = CliRunner().invoke(
        cli_replica.replica, ["run", "--topology", str(aws), "--replica", "eu"]
    )
    assert result.exit_code == 2
    assert "does not fit the stream's retention of 24 h" in result.output


def test_replica_run_refuses_an_unknown_replica(aws: Path) -> None:
    result = CliRunner().invoke(
        cli_replica.replica, ["run", "--topology", str(aws), "--replica", "mars"]
    )
    assert result.exit_code == 2
    assert "no such replica target (known: eu)" in result.output


def test_local_properties_run_our_worker_for_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(topology_text())
    monkeypatch.setenv("LAZYREP_KCL_KINESIS_ENDPOINT", "http://127.0.0.1:4001")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4002")
    text = cli_replica.render_local(path, "eu", "worker-7", ("maxRecords=500",))
    keys = {
        k.strip(): v.strip()
        for k, _, v in (x.partition("=") for x in text.splitlines())
        if k.strip() and not k.startswith("#")
    }
    assert keys["executableName"] == (
        f"{sys.executable} -m kcl_consumer.worker --topology {path.resolve()} --replica eu"
    )
    assert keys["applicationName"] == "replica-eu"
    assert keys["streamName"] == STREAM
    assert keys["workerId"] == "worker-7"
    assert keys["kinesisEndpoint"] == "http://127.0.0.1:4001"
    assert keys["cloudWatchClient.endpointOverride"] == "http://127.0.0.1:4002"
    assert text.rstrip().endswith("maxRecords = 500")


def test_local_properties_need_the_local_stack(tmp_path: Path) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(topology_text())
    with pytest.raises(ValueError, match="LAZYREP_KCL_KINESIS_ENDPOINT"):
        cli_replica.render_local(path, "eu", "w", ())


def test_worker_command_refuses_paths_the_daemon_would_split(tmp_path: Path) -> None:
    spaced = tmp_path / "my topology.toml"
    with pytest.raises(ValueError, match="splits executableName on spaces"):
        cli_replica.worker_command(spaced, "eu")
