"""`lazyrep replay` over the wire: kinesalite and moto server, through the real command.

GIVEN the demo workload in a two-shard stream, with SplitShard half-way (so shard 0
is closed and has two children) and a time noted before the split;
WHEN `lazyrep replay` runs (click's CliRunner, and real child processes);
THEN the target tables equal a reference that applied each action plainly, once, in
stream order, from the same position; a replay stopped and resumed with the printed
command gives the same tables; replaying again changes nothing; a dry run writes
nothing; every bad input gives one line and its exit code.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from binlog.codec import decode
from binlog.envelope import Action
from binlog.reader import read_shard, shards_in_lineage_order
from binlog.records import Position, SourcedRecord
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import Topology, load_topology
from emulators.stack import LocalStack
from lazyrep import replay_stream
from lazyrep.cli_replay import replay
from lazyrep.reference import table_contents, unordered_sets
from lazyrep.replay_plan import iso
from lazyrep.workload import ops_for_writer
from producer import Producer

pytestmark = pytest.mark.wire

CLI = [sys.executable, "-c", "from lazyrep.cli_replay import replay; replay()"]


@dataclass
class Shard:
    shard_id: str
    parents: tuple[str, ...]
    hash_range: tuple[int, int]
    records: list[SourcedRecord]


@dataclass
class World:
    """One stream with the workload in it, its topology, and clients on the local stack."""

    run: str
    topology_path: Path
    topology: Topology
    shards: list[Shard]  # lineage order
    split_time: datetime  # noted between two halves of the first phase, before the split
    dynamodb: Any
    dynamodb_eu: Any
    kinesis: Any

    @property
    def tables(self) -> list[str]:
        return list(self.topology.tables)

    def shard(self, shard_id: str) -> Shard:
        return next(s for s in self.shards if s.shard_id == shard_id)

    def targets(self, prefix: str) -> dict[str, str]:
        """Fresh, empty target tables named PREFIX + table; the mapping to pass as --map."""
        mapping = {t: f"{prefix}{self.run}-{t}" for t in self.tables}
        for table, target in mapping.items():
            create_table(self.dynamodb, target, self.topology.tables[table])
        return mapping

    def reference(self, prefix: str, records: Sequence[SourcedRecord]) -> dict[str, str]:
        """The reference model: tables holding `records` applied plainly, each once, in order."""
        mapping = self.targets(prefix)
        seen: set[str] = set()
        for record in records:
            if record.envelope.id not in seen:
                seen.add(record.envelope.id)
                apply_plainly(self.dynamodb, mapping[record.envelope.table], record)
        return mapping

    def contents(self, mapping: dict[str, str], client: Any = None) -> dict[str, Any]:
        client = client or self.dynamodb
        return {
            table: unordered_sets(table_contents(client, target))
            for table, target in mapping.items()
        }


def apply_plainly(client: Any, table: str, record: SourcedRecord) -> None:
    """One action with a plain DynamoDB call; a false condition is a no-op."""
    envelope = record.envelope
    request: dict[str, Any] = {"TableName": table}
    if envelope.condition:
        request["ConditionExpression"] = envelope.condition
    if envelope.names:
        request["ExpressionAttributeNames"] = envelope.names
    if envelope.values:
        request["ExpressionAttributeValues"] = envelope.values
    try:
        if envelope.action is Action.PUT:
            client.put_item(Item=envelope.item, **request)
        elif envelope.action is Action.UPDATE:
            client.update_item(Key=envelope.key, UpdateExpression=envelope.update, **request)
        else:
            client.delete_item(Key=envelope.key, **request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def write_topology(path: Path, run: str, stream: str | None = None) -> Path:
    path.write_text(
        f"""
[stream]
name = "{stream or f"binlog-{run}"}"
region = "us-east-1"
shards = 2

[applier]
tombstone_table = "tombstones-{run}"

[tables.{run}users]
partition_key = {{ name = "user_id", type = "S" }}

[tables.{run}orders]
partition_key = {{ name = "customer_id", type = "S" }}
sort_key = {{ name = "order_no", type = "N" }}

[tables.{run}carts]
partition_key = {{ name = "cart_id", type = "S" }}

[replicas.eu]
region = "eu-west-1"
max_wcu = 50
deadline_hours = 20
tables = {{ {run}users = "{run}users-eu" }}
""",
        encoding="utf-8",
    )
    return path


def wait_for_the_stream_clock(kinesis: Any, stream: str, shards: list[Shard]) -> None:
    """Until the stream's clock (a Date header, whole seconds) is past the newest record, so
    that `the tip now` holds every record written: kinesalite stamps a new shard's records
    with whole seconds and its Date header can lag its own clock by a fraction of one."""
    newest = max(r.arrival_ms for s in shards for r in s.records)
    deadline = time.monotonic() + 10
    while replay_stream.tip_time(replay_stream.describe_stream(kinesis, stream, "us-east-1")) < (
        datetime.fromtimestamp(newest / 1000, UTC)
    ):
        assert time.monotonic() < deadline, "the stream's clock did not pass its newest record"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The workload through the producer: half, a noted time, half, SplitShard, the rest."""
    run = f"r{uuid.uuid4().hex[:6]}"
    path = write_topology(tmp_path_factory.mktemp("replay") / "topology.toml", run)
    topology = load_topology(path)
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    endpoints = local_stack.endpoints
    kinesis = boto3.client(
        "kinesis", endpoint_url=endpoints.kinesis, region_name="us-east-1", **creds
    )
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=endpoints.dynamodb, region_name="us-east-1", **creds
    )
    dynamodb_eu = boto3.client(
        "dynamodb", endpoint_url=endpoints.dynamodb, region_name="eu-west-1", **creds
    )
    stream = topology.stream.name
    create_tombstone_table(dynamodb, topology.applier.tombstone_table)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
    ops = list(ops_for_writer(0, 90, prefix=run)) + list(ops_for_writer(1, 90, prefix=run))
    split_time = datetime.now(UTC)
    with Producer(path, client=kinesis) as producer:
        for index, op in enumerate(ops):
            getattr(producer, op.method)(op.table, **op.kwargs)
            if index == 60:
                producer.flush()
                time.sleep(0.05)
                split_time = datetime.now(UTC)
                time.sleep(0.05)
            if index == 120:
                producer.flush()
                shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
                low = int(shard["HashKeyRange"]["StartingHashKey"])
                high = int(shard["HashKeyRange"]["EndingHashKey"])
                kinesis.split_shard(
                    StreamName=stream,
                    ShardToSplit=shard["ShardId"],
                    NewStartingHashKey=str((low + high) // 2),
                )
                kinesis.get_waiter("stream_exists").wait(
                    StreamName=stream, WaiterConfig={"Delay": 1}
                )
    shards = []
    for raw in shards_in_lineage_order(kinesis, stream):
        records = [
            SourcedRecord(
                decode(r.data, topology.tables),
                Position(r.shard_id, r.sequence_number),
                int(r.arrival.timestamp() * 1000),
            )
            for r in read_shard(kinesis, stream, raw["ShardId"])
        ]
        parents = tuple(
            p for p in (raw.get("ParentShardId"), raw.get("AdjacentParentShardId")) if p
        )
        hashes = raw["HashKeyRange"]
        span = (int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"]))
        shards.append(Shard(raw["ShardId"], parents, span, records))
    assert [s.shard_id for s in shards if s.parents] == [
        "shardId-000000000002",
        "shardId-000000000003",
    ]
    wait_for_the_stream_clock(kinesis, stream, shards)
    return World(run, path, topology, shards, split_time, dynamodb, dynamodb_eu, kinesis)


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(replay, args, catch_exceptions=False)


def map_args(mapping: dict[str, str]) -> list[str]:
    return ["--map", ",".join(f"{k}={v}" for k, v in mapping.items())]


def summary(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def resume_args(stderr: str) -> list[str]:
    """The arguments of the printed resume command (after `lazyrep replay`)."""
    line = next(x for x in stderr.splitlines() if "resume with: " in x)
    words = shlex.split(line.split("resume with: ", 1)[1])
    assert words[:2] == ["lazyrep", "replay"]
    return words[2:]


# -- what a replay writes -------------------------------------------------------------------


def test_from_a_mid_stream_sequence_number_equals_the_reference_from_there(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    # GIVEN a sequence number half-way through shard 0, which was split into 2 and 3
    parent = world.shard("shardId-000000000000")
    middle = len(parent.records) // 2
    start = parent.records[middle].position.sequence_number
    low, high = parent.hash_range
    children = [world.shard(c) for c in ("shardId-000000000002", "shardId-000000000003")]
    assert all(low <= c.hash_range[0] and c.hash_range[1] <= high for c in children)
    expected = parent.records[middle:] + [r for child in children for r in child.records]
    reference = world.reference("ref-mid-", expected)
    targets = world.targets("mid-")

    # WHEN replayed from there into empty tables
    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--shard",
            "shardId-000000000000",
            "--from-sequence",
            start,
            *map_args(targets),
            "--json",
            "--state",
            str(tmp_path / "state.json"),
        ]
    )

    # THEN the tables equal the reference applied from that position, parents first
    assert result.exit_code == 0, result.output
    assert world.contents(targets) == world.contents(reference)
    report = summary(result)
    assert report["records_read"] == len(expected)
    assert report["filtered_keys"] == 0
    assert set(report["shards"]) == {
        "shardId-000000000000",
        "shardId-000000000002",
        "shardId-000000000003",
    }
    assert sum(t["applied"] for t in report["tables"].values()) > 0
    assert f"from     shardId-000000000000 at sequence {start}" in result.stderr
    assert "(only keys of the starting shard)" in result.stderr


def test_stopped_and_resumed_equals_uninterrupted_and_replaying_again_changes_nothing(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    every = [r for shard in world.shards for r in shard.records]
    reference = world.reference("ref-all-", every)
    whole = world.targets("whole-")
    resumed = world.targets("resumed-")
    base = ["--topology", str(world.topology_path), "--from-start", "--json"]

    # GIVEN an uninterrupted replay of the whole stream
    first = invoke([*base, *map_args(whole), "--state", str(tmp_path / "whole.json")])
    assert first.exit_code == 0, first.output
    assert world.contents(whole) == world.contents(reference)

    # WHEN another replay is stopped twice and resumed with the printed command
    # (--rate 20 makes chunks of 20 records: the shards in flight when the stop comes
    # finish theirs, so each stopped run reads at most ~80 of the ~200 records)
    slow = ["--rate", "20", "--stop-after", "30"]
    stopped = invoke([*base, *map_args(resumed), "--state", str(tmp_path / "s.json"), *slow])
    assert stopped.exit_code == 130, stopped.output
    assert "lazyrep: replay interrupted" in stopped.stderr
    args = resume_args(stopped.stderr)
    assert args == ["--resume", str(tmp_path / "s.json")]
    again = invoke([*args, *slow, "--json"])
    assert again.exit_code == 130, again.output
    assert resume_args(again.stderr) == args
    final = invoke([*args, "--json"])

    # THEN it ends with the same tables, and a finished state file resumes to nothing
    assert final.exit_code == 0, final.output
    assert world.contents(resumed) == world.contents(whole)
    read = [summary(r)["records_read"] for r in (stopped, again, final)]
    assert sum(read) >= len(every)  # a resumed chunk may be read twice, never skipped
    assert "finished already" in invoke(args).stdout

    # AND replaying the applied range again changes nothing: everything is stale
    before = {t: world.dynamodb.scan(TableName=n)["Items"] for t, n in whole.items()}
    repeat = invoke([*base, *map_args(whole), "--state", str(tmp_path / "repeat.json")])
    assert repeat.exit_code == 0, repeat.output
    tables = summary(repeat)["tables"]
    assert sum(t["applied"] for t in tables.values()) == 0
    assert sum(t["skipped_stale"] for t in tables.values()) > len(every) // 2
    assert all(t["skipped_stale"] + t["condition_failed"] == t["records"] for t in tables.values())
    after = {t: world.dynamodb.scan(TableName=n)["Items"] for t, n in whole.items()}
    assert sorted(map(repr, after.values())) == sorted(map(repr, before.values()))


def test_at_timestamp_reads_every_shard_after_a_split(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    # GIVEN a time before the split: the closed parent and both children have later records
    since = int(world.split_time.timestamp() * 1000)
    expected = [r for s in world.shards for r in s.records if (r.arrival_ms or 0) >= since]
    per_shard = {
        s.shard_id: sum((r.arrival_ms or 0) >= since for r in s.records) for s in world.shards
    }
    assert all(per_shard.values()), per_shard
    reference = world.reference("ref-time-", expected)
    targets = world.targets("time-")

    # WHEN replayed from that time
    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--from-time",
            iso(world.split_time),
            *map_args(targets),
            "--json",
            "--state",
            str(tmp_path / "t.json"),
        ]
    )

    # THEN exactly the later records were applied, parents before children
    assert result.exit_code == 0, result.output
    assert summary(result)["records_read"] == len(expected)
    assert world.contents(targets) == world.contents(reference)


def test_dry_run_counts_and_samples_but_writes_nothing(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    targets = world.targets("dry-")
    tombstones = world.topology.applier.tombstone_table
    before = world.dynamodb.scan(TableName=tombstones, Select="COUNT")["Count"]
    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--from-start",
            "--dry-run",
            *map_args(targets),
            "--json",
            "--state-dir",
            str(tmp_path),
        ]
    )
    assert result.exit_code == 0, result.output
    report = summary(result)
    every = [r for s in world.shards for r in s.records]
    for table in world.tables:
        expected: dict[str, int] = {}
        for record in every:
            if record.envelope.table == table:
                action = record.envelope.action.value
                expected[action] = expected.get(action, 0) + 1
        assert report["tables"][table]["actions"] == expected
        assert report["tables"][table]["applied"] == 0
        assert len(report["tables"][table]["samples"]) == 3
    assert "sample   shardId-" in result.stderr
    assert "would replay (dry run: nothing is written)" in result.stderr
    assert all(not contents for contents in world.contents(targets).values())
    assert world.dynamodb.scan(TableName=tombstones, Select="COUNT")["Count"] == before
    assert not list(tmp_path.iterdir())  # no state file either


def test_replica_shortcut_writes_the_replica_tables_in_its_region(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    users = f"{world.run}users"
    create_table(world.dynamodb_eu, f"{users}-eu", world.topology.tables[users])
    create_tombstone_table(world.dynamodb_eu, world.topology.applier.tombstone_table)
    every = [r for s in world.shards for r in s.records if r.envelope.table == users]
    reference = world.reference("ref-eu-", every)

    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--from-start",
            "--replica",
            "eu",
            "--tables",
            users,
            "--json",
            "--state",
            str(tmp_path / "eu.json"),
        ]
    )

    assert result.exit_code == 0, result.output
    assert "into     region eu-west-1" in result.stderr
    assert f"{users} -> {users}-eu" in result.stderr
    eu = unordered_sets(table_contents(world.dynamodb_eu, f"{users}-eu"))
    assert eu == world.contents(reference)[users]
    assert summary(result)["filtered_tables"] > 0


def test_rate_limits_the_write_capacity_spent(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    targets = world.targets("rate-")
    shard = world.shard("shardId-000000000001")
    start = shard.records[-12].position.sequence_number
    began = time.monotonic()
    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--shard",
            shard.shard_id,
            "--from-sequence",
            start,
            "--rate",
            "20",
            *map_args(targets),
            "--json",
            "--state",
            str(tmp_path / "r.json"),
        ]
    )
    took = time.monotonic() - began
    assert result.exit_code == 0, result.output
    wcu = summary(result)["wcu"]
    assert wcu >= 12
    # The bucket starts empty: spending W WCU at 20 WCU/s takes at least (W - 20) / 20 s.
    assert took >= (wcu - 20) / 20
    assert "rate     20 WCU/s" in result.stderr


def test_sequence_bounds_after_and_to_sequence(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    shard = world.shard("shardId-000000000001")
    first, last = shard.records[5].position, shard.records[15].position
    expected = shard.records[6:16]
    reference = world.reference("ref-bounds-", expected)
    targets = world.targets("bounds-")
    result = invoke(
        [
            "--topology",
            str(world.topology_path),
            "--shard",
            shard.shard_id,
            "--from-sequence",
            first.sequence_number,
            "--after",
            "--to-sequence",
            last.sequence_number,
            *map_args(targets),
            "--json",
            "--state",
            str(tmp_path / "b.json"),
        ]
    )
    assert result.exit_code == 0, result.output
    report = summary(result)
    assert report["records_read"] == 10
    assert report["last_sequence"] == {shard.shard_id: last.sequence_number}
    assert report["shards"] == {shard.shard_id: "cut"}
    assert world.contents(targets) == world.contents(reference)


def test_force_rebuilds_a_wiped_table_as_it_was_at_the_bound(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    # GIVEN tables that held the whole stream (so the tombstone table knows their deletes),
    # then were wiped (deleted and created again, empty)
    targets = world.targets("wiped-")
    base = ["--topology", str(world.topology_path), *map_args(targets), "--json"]
    full = invoke([*base, "--from-start", "--state", str(tmp_path / "full.json")])
    assert full.exit_code == 0, full.output
    for table, target in targets.items():
        world.dynamodb.delete_table(TableName=target)
        create_table(world.dynamodb, target, world.topology.tables[table])
    bound = world.split_time
    until = int(bound.timestamp() * 1000)
    before = [r for s in world.shards for r in s.records if (r.arrival_ms or 0) <= until]
    reference = world.reference("ref-bound-", before)
    assert world.contents(reference) != world.contents(full_reference(world))
    bounded = [*base, "--from-start", "--to-time", iso(bound)]

    # WHEN replayed up to a bound in the past without --force
    plain = invoke([*bounded, "--state", str(tmp_path / "plain.json")])

    # THEN items deleted after the bound stay missing: their tombstones are newer
    assert plain.exit_code == 0, plain.output
    assert "bounded replay without --force" in plain.stderr
    missing = {
        table: set(world.contents(reference)[table]) - set(world.contents(targets)[table])
        for table in targets
    }
    assert any(missing.values()), "the workload should delete something after the bound"

    # WHEN replayed again into the wiped tables with --force
    for table, target in targets.items():
        world.dynamodb.delete_table(TableName=target)
        create_table(world.dynamodb, target, world.topology.tables[table])
    forced = invoke([*bounded, "--force", "--state", str(tmp_path / "forced.json")])

    # THEN the tables are exactly as the stream made them at the bound
    assert forced.exit_code == 0, forced.output
    assert "--force: tombstones written by others are ignored" in forced.stderr
    assert world.contents(targets) == world.contents(reference)


def full_reference(world: World) -> dict[str, str]:
    return world.reference("ref-full-", [r for s in world.shards for r in s.records])


# -- bad input: one line, exit 2 (never a traceback) ------------------------------------------


def one_line_error(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lazyrep: error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_input_gives_one_line_and_exit_2(
    world: World, stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topo = ["--topology", str(world.topology_path)]
    other_shard = world.shard("shardId-000000000001").records[0].position.sequence_number
    users = f"{world.run}users"
    unknown_stream = write_topology(tmp_path / "other.toml", world.run, stream="no-such-stream")
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        ([*topo], ("say where to start",)),
        ([*topo, "--from-start", "--from-time", "-1h"], ("say where to start",)),
        (["--topology", str(unknown_stream), "--from-start"], ("'no-such-stream' not found",)),
        (["--topology", str(tmp_path / "missing.toml"), "--from-start"], ("no such file",)),
        ([*topo, "--shard", "shardId-000000000099", "--from-sequence", "1"], ("not a shard",)),
        ([*topo, "--from-start", "--tables", "nope"], ("unknown table 'nope'",)),
        (
            [*topo, "--from-start", "--map", f"{users}=missing-table"],
            ("'missing-table' not found",),
        ),
        ([*topo, "--from-start", "--map", "users"], ("give primary=target",)),
        (
            [*topo, "--shard", "shardId-000000000000", "--from-sequence", other_shard],
            ("is not in shardId-000000000000",),
        ),
        (
            [*topo, "--shard", "shardId-000000000000", "--from-sequence", "12ab"],
            ("not a Kinesis sequence",),
        ),
        ([*topo, "--from-sequence", "1"], ("needs --shard",)),
        ([*topo, "--from-time", "2999-01-01T00:00:00Z"], ("is in the future",)),
        ([*topo, "--from-time", "yesterday"], ("is not a time",)),
        ([*topo, "--from-start", "--to-time", "2999-01-01"], ("--to-time", "in the future")),
        ([*topo, "--from-start", "--region", "eu-west-1"], ("is in region us-east-1",)),
        (
            [*topo, "--from-start", "--target-region", "eu-west-2"],
            ("not found in region eu-west-2",),
        ),
        ([*topo, "--from-start", "--replica", "mars"], ("not in the topology (eu)",)),
        ([*topo, "--from-start", "--rate", "0"], ("--rate",)),
        (["--resume", str(tmp_path / "nothing.json")], ("no such file",)),
        (["--resume", str(tmp_path / "x.json"), "--from-start"], ("leave out --from-start",)),
    ]
    for args, needles in cases:
        one_line_error(invoke(args), 2, *needles)


def test_a_timestamp_beyond_retention_says_which_records_are_gone(
    world: World, stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stream clock two days ahead: the stream is older than its 24 h retention
    real = replay_stream._server_time

    def later(response: Any) -> datetime:
        return real(response) + timedelta(days=2)

    monkeypatch.setattr(replay_stream, "_server_time", later)
    since = datetime.now(UTC) - timedelta(hours=1)
    oldest = min(r.arrival_ms or 0 for s in world.shards for r in s.records)
    line = one_line_error(
        invoke(["--topology", str(world.topology_path), "--from-time", iso(since)]),
        2,
        "beyond the stream's 24 h retention",
        "(the stream's creation) to",
        "are gone",
        "the oldest record left arrived",
        "--from-start",
    )
    assert iso(datetime.fromtimestamp(oldest / 1000, UTC)) in line


def test_a_sequence_number_before_the_oldest_record_is_refused(
    world: World, stack_env: LocalStack
) -> None:
    shard = world.shard("shardId-000000000001")
    first = int(shard.records[0].position.sequence_number)
    info = world.kinesis.list_shards(StreamName=world.topology.stream.name)["Shards"][1]
    starting = int(info["SequenceNumberRange"]["StartingSequenceNumber"])
    assert starting < first
    one_line_error(
        invoke(
            [
                "--topology",
                str(world.topology_path),
                "--shard",
                shard.shard_id,
                "--from-sequence",
                str(starting),
            ]
        ),
        2,
        f"the oldest record still in {shard.shard_id} is sequence {first}",
    )


def test_missing_credentials_and_unreachable_endpoint(
    world: World, stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--topology", str(world.topology_path), "--from-start"]
    with monkeypatch.context() as patch:
        patch.delenv("AWS_ACCESS_KEY_ID")
        patch.delenv("AWS_SECRET_ACCESS_KEY")
        one_line_error(invoke(args), 2, "no usable AWS credentials")
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9")
        patch.setenv("AWS_MAX_ATTEMPTS", "1")
        one_line_error(invoke(args), 2, "cannot reach http://127.0.0.1:9")


# -- real processes -------------------------------------------------------------------------


def test_a_real_process_stops_on_sigint_and_resumes_with_the_printed_command(
    world: World, stack_env: LocalStack, tmp_path: Path
) -> None:
    env = {**os.environ}
    # GIVEN a bad invocation: one line, exit 2, no traceback, from a real process
    bad = subprocess.run(
        [*CLI, "--topology", str(world.topology_path), "--from-start", "--tables", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"lazyrep: error: --tables: unknown table 'nope': the topology's tables are "
        f"{', '.join(world.tables)}"
    ]

    # WHEN a slow (rate-limited) replay gets SIGINT part-way
    uninterrupted = world.reference("ref-sig-", [r for s in world.shards for r in s.records])
    targets = world.targets("sig-")
    state = tmp_path / "sig.json"
    child = subprocess.Popen(
        [
            *CLI,
            "--topology",
            str(world.topology_path),
            "--from-start",
            "--rate",
            "60",
            *map_args(targets),
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if state.exists():
            shards = json.loads(state.read_text())["shards"]
            if sum(s["records"] for s in shards.values()) >= 40:
                break
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)

    # THEN it stops with 130 and the command that resumes, which finishes the job
    assert child.returncode == 130, err
    assert "Traceback" not in err
    args = resume_args(err)
    done = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "lazyrep replay finished" in done.stdout
    assert world.contents(targets) == world.contents(uninterrupted)
