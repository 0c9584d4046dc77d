"""`lazyrep backfill` over the wire: a full, guarded, rate-limited copy and the KCL start.

GIVEN a primary in us-east-1 with versioned items and an empty replica in eu-west-1;
WHEN `lazyrep backfill` runs (through click);
THEN every item is on the replica with its version and action id, the WCU rate held,
a second run changes nothing, a newer replica item or delete is never overtaken, the
printed AT_TIMESTAMP precedes the copy, and --write-properties touches only its keys.
And, with writes continuing during the copy, replaying the stream from the printed
start over the copy (as the replica's KCL would) converges with the primary.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result

from binlog.applier import TOMBSTONE_KEY, Applier, ApplierConfig
from binlog.codec import decode
from binlog.reader import read_stream
from binlog.records import Position, SourcedRecord
from binlog.tables import create_topology_tables
from binlog.topology import Topology, load_topology
from binlog.version import Version
from emulators.stack import LocalStack
from kcl_consumer.properties import ReplicaKclOptions, parse_properties, render_replica
from lazyrep.backfill import BackfillConfig, Backfiller
from lazyrep.backfill_copy import copy_item as real_copy_item
from lazyrep.backfill_copy import tombstone_key
from lazyrep.cli_backfill import backfill
from lazyrep.cli_verify import verify
from lazyrep.reference import table_contents
from lazyrep.verify_target import make_clients, resolve
from lazyrep.workload import ops_for_writer
from producer import Producer

pytestmark = pytest.mark.wire

V = "_lr_version"
ID = "_lr_id"
PAD = "x" * 1200  # with the key and bookkeeping: a 2 WCU item


def v(shard: int, seq: int) -> bytes:
    return Version(shard, seq).encode()


@dataclass
class World:
    run: str
    path: Path
    topology: Topology
    primary: Any
    replica: Any
    kinesis: Any
    stream: str

    def table(self, name: str) -> str:
        return f"{self.run}{name}"


def make_world(tmp_path: Path, *, replica_tables: bool = True, shards: int = 2) -> World:
    run = f"b{uuid.uuid4().hex[:6]}"
    path = tmp_path / "topology.toml"
    path.write_text(
        f"""
[stream]
name = "bstream-{run}"
region = "us-east-1"
shards = {shards}

[applier]
tombstone_table = "tomb-{run}"

[tables.{run}users]
partition_key = {{ name = "user_id", type = "S" }}

[tables.{run}orders]
partition_key = {{ name = "customer_id", type = "S" }}
sort_key = {{ name = "order_no", type = "N" }}

[tables.{run}carts]
partition_key = {{ name = "cart_id", type = "S" }}

[replicas.eu]
region = "eu-west-1"
max_wcu = 1000
deadline_hours = 20
application_name = "app-{run}"
tables = {{ {run}orders = "{run}orders-eu" }}
""",
        encoding="utf-8",
    )
    topology = load_topology(path)
    primary = boto3.client("dynamodb", region_name="us-east-1")
    replica = boto3.client("dynamodb", region_name="eu-west-1")
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    create_topology_tables(primary, topology)
    if replica_tables:
        create_topology_tables(replica, topology, table_map=topology.replicas["eu"].tables)
    stream = f"bstream-{run}"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    return World(run, path, topology, primary, replica, kinesis, stream)


def fill(world: World, users: int = 60) -> None:
    """Versioned users of 2 WCU each, and a few orders."""
    for start in range(0, users, 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "user_id": {"S": f"u{n:03d}"},
                        "pad": {"S": PAD},
                        V: {"B": v(n % 2, 1000 + n)},
                        ID: {"S": f"id-{n}"},
                    }
                }
            }
            for n in range(start, min(users, start + 25))
        ]
        world.primary.batch_write_item(RequestItems={world.table("users"): requests})
    for n in range(5):
        world.primary.put_item(
            TableName=world.table("orders"),
            Item={
                "customer_id": {"S": "c1"},
                "order_no": {"N": str(n)},
                V: {"B": v(1, 10 + n)},
                ID: {"S": f"o{n}"},
            },
        )


def run_backfill(world: World, *args: str) -> Result:
    return CliRunner().invoke(
        backfill,
        ["--topology", str(world.path), "--replica", "eu", "--no-progress", *args],
        catch_exceptions=False,
    )


def contents(client: Any, table: str) -> dict[str, dict[str, Any]]:
    return table_contents(client, table, ignore=())


def test_copies_every_item_with_its_version_at_the_wcu_limit(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    fill(world)

    result = run_backfill(world, "--json", "--rate", "100", "--segments", "4")

    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    users, orders, carts = doc["tables"]
    assert (users["scanned"], users["wcu"], users["outcomes"]) == (60, 120, {"created": 60})
    assert (orders["replica_table"], orders["wcu"], orders["outcomes"]) == (
        f"{world.run}orders-eu",
        5,
        {"created": 5},
    )
    assert carts["scanned"] == 0
    for name, replica_name in (("users", "users"), ("orders", "orders-eu")):
        assert contents(world.replica, world.table(replica_name)) == contents(
            world.primary, world.table(name)
        )
    # 125 WCU at 100 WCU/s with a 20 WCU burst: at least 1.05 s; not much slower.
    assert doc["wcu"] == 125
    assert 1.0 <= doc["copy_seconds"] <= 8.0  # generous: moto on a loaded machine
    assert (doc["wcu"] - 20) / doc["copy_seconds"] <= 100 * 1.05


def test_running_twice_changes_nothing_and_nothing_newer_is_overtaken(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    fill(world, users=10)
    users = world.table("users")
    # The replica's consumer got ahead on three items: newer, older, and a newer delete.
    newer = {"user_id": {"S": "u001"}, "n": {"S": "new"}, V: {"B": v(1, 5000)}, ID: {"S": "n"}}
    older = {"user_id": {"S": "u002"}, "n": {"S": "old"}, V: {"B": v(0, 1)}, ID: {"S": "o"}}
    world.replica.put_item(TableName=users, Item=newer)
    world.replica.put_item(TableName=users, Item=older)
    schema = world.topology.tables[users]
    world.replica.put_item(
        TableName=f"tomb-{world.run}",
        Item={
            TOMBSTONE_KEY: {"B": tombstone_key(users, schema, {"user_id": {"S": "u003"}})},
            V: {"B": v(1, 5000)},
            ID: {"S": "d"},
            "expires": {"N": "9999999999"},
        },
    )

    first = run_backfill(world, "--json", "--rate", "1000", "--tables", users)
    second = run_backfill(world, "--json", "--rate", "1000", "--tables", users)

    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout)["tables"][0]["outcomes"] == {
        "created": 7,
        "skipped_stale": 1,
        "taken_back": 1,
        "updated": 1,
    }
    # Equal versions are rewritten (the same content); the deleted item stays absent.
    assert json.loads(second.stdout)["tables"][0]["outcomes"] == {
        "rewritten": 8,
        "skipped_stale": 1,
        "taken_back": 1,
    }
    replica = contents(world.replica, users)
    primary = contents(world.primary, users)
    u001, u003 = str({"S": "u001"}), str({"S": "u003"})
    assert replica.pop(u001) == newer
    assert u003 not in replica
    assert replica == {k: item for k, item in primary.items() if k not in (u001, u003)}


def test_a_partial_item_left_by_a_replica_running_ahead_is_completed(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    fill(world, users=2)
    users = world.table("users")
    # The replica's consumer, started before the copy, applied the primary's latest
    # record of u001 (an UpdateItem) to the item it did not have yet.
    world.replica.put_item(
        TableName=users,
        Item={"user_id": {"S": "u001"}, V: {"B": v(1, 1001)}, ID: {"S": "id-1"}},
    )

    result = run_backfill(world, "--json", "--tables", users)

    assert json.loads(result.stdout)["tables"][0]["outcomes"] == {"created": 1, "rewritten": 1}
    assert contents(world.replica, users) == contents(world.primary, users)


def test_prints_an_at_timestamp_before_the_copy(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    fill(world, users=5)
    before = time.time()

    plain = run_backfill(world)
    after = time.time()
    as_json = json.loads(run_backfill(world, "--json", "--start-margin", "0").stdout)

    assert plain.exit_code == 0
    (extended,) = plain.stdout.splitlines()  # the daemon's AT_TIMESTAMP key, alone
    key, epoch = extended.split(" = ")
    assert key == "initialPositionInStreamExtended"
    assert int(before) - 900 <= int(epoch) <= after - 900  # the default 15 min margin
    assert "start the KCL application app-" in plain.stderr
    started = datetime.fromisoformat(as_json["copy_started_at"]).timestamp()
    assert int(as_json["properties"]["initialPositionInStreamExtended"]) <= started
    assert set(as_json["properties"]) == {"initialPositionInStreamExtended"}
    assert as_json["unset_properties"] == ["initialPositionInStream"]


def test_write_properties_edits_only_its_keys(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    fill(world, users=3)
    path = tmp_path / "eu.properties"
    original = render_replica(world.topology, "eu", ReplicaKclOptions())
    path.write_text(original)

    result = run_backfill(world, "--json", "--write-properties", str(path), "--progress")

    assert result.exit_code == 0, result.stderr
    assert f"{world.run}users" in result.stderr  # the progress bar's line
    start = json.loads(result.stdout)["properties"]
    edited = path.read_text()
    kept = parse_properties(original)
    del kept["initialPositionInStream"]  # the daemon refuses AT_TIMESTAMP there
    assert parse_properties(edited) == kept | start
    changed = [
        (a, b) for a, b in zip(original.splitlines(), edited.splitlines(), strict=False) if a != b
    ]
    assert [a for a, _ in changed] == ["initialPositionInStream = TRIM_HORIZON"]
    assert changed[0][1].startswith("# initialPositionInStream removed by `lazyrep backfill`")
    extended = start["initialPositionInStreamExtended"]
    assert edited.splitlines()[-1] == f"initialPositionInStreamExtended = {extended}"


def test_bad_input_is_one_line_and_exit_2(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path, replica_tables=False)

    missing_table = run_backfill(world)
    assert missing_table.exit_code == 2
    assert missing_table.stderr.strip().splitlines() == [
        f"lazyrep: error: backfill: replica table '{world.run}users' does not exist in "
        "eu-west-1 (wrong region or account?)"
    ]

    created = run_backfill(world, "--create-tables")
    assert created.exit_code == 0, created.stderr

    world.kinesis.delete_stream(StreamName=world.stream)
    no_stream = run_backfill(world)
    assert no_stream.exit_code == 2
    assert no_stream.stderr.strip() == (
        f"lazyrep: error: backfill: stream '{world.stream}' does not exist in us-east-1 "
        "(wrong region?)"
    )


# -- convergence: backfill while writes continue, then the stream from the printed start ---


def apply_new(applier: Applier, world: World, seen: set[tuple[str, str]], since: float = 0) -> None:
    """Apply the stream's records not applied yet (and, for the replica, from `since`)."""
    batch = []
    for record in read_stream(world.kinesis, world.stream):
        if (record.shard_id, record.sequence_number) in seen:
            continue
        if record.arrival.timestamp() < since:
            continue
        seen.add((record.shard_id, record.sequence_number))
        envelope = decode(record.data, world.topology.tables)
        batch.append(SourcedRecord(envelope, Position(record.shard_id, record.sequence_number)))
    results = applier.apply_batch(batch)  # items concurrently, each item in stream order
    assert {r.outcome.value for r in results} <= {"applied", "skipped_stale", "condition_failed"}


def test_backfill_then_the_stream_from_the_printed_start_converges(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    config = ApplierConfig.from_topology(world.topology)
    replica_map = world.topology.replicas["eu"].tables
    primary_applier = Applier(world.primary, world.topology.tables, config=config)
    replica_applier = Applier(
        world.replica, world.topology.tables, table_map=replica_map, config=config
    )
    applied: set[tuple[str, str]] = set()
    ops = [list(ops_for_writer(w, 90, prefix=world.run, items=15)) for w in range(3)]
    with Producer(world.path) as producer:

        def write(part: int) -> None:
            for writer_ops in ops:
                for op in writer_ops[part * 30 : (part + 1) * 30]:
                    getattr(producer, op.method)(op.table, **op.kwargs)
            producer.flush()
            apply_new(primary_applier, world, applied)  # the primary's Lambda

        # GIVEN a primary with history
        write(0)
        # WHEN the backfill copies while writes go on (the primary applied promptly)
        box: dict[str, Result] = {}
        copier = threading.Thread(
            target=lambda: box.setdefault(
                "result", run_backfill(world, "--json", "--rate", "150", "--start-margin", "5s")
            )
        )
        copier.start()
        write(1)
        copier.join()
        write(2)
    result = box["result"]
    assert result.exit_code == 0, result.stderr
    start = int(json.loads(result.stdout)["properties"]["initialPositionInStreamExtended"])
    # ... and the replica's consumer starts at the printed position
    apply_new(replica_applier, world, set(), since=start)

    # THEN the replica equals the primary, bookkeeping included
    for name in ("users", "orders", "carts"):
        replica_name = replica_map.get(world.table(name), world.table(name))
        assert contents(world.replica, replica_name) == contents(world.primary, world.table(name))
    checked = CliRunner(env={"COLUMNS": "200"}).invoke(
        verify,
        ["--topology", str(world.path), "--replica", "eu", "--lag", "none", "--json"],
    )
    assert checked.exit_code == 0, checked.stdout
    primary_applier.close()
    replica_applier.close()


def test_an_interrupted_copy_resumes_from_its_state_with_the_first_start(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    fill(world, users=40)
    users = world.table("users")
    state = tmp_path / "backfill.state"
    pair = resolve(world.topology, "eu", [users])
    config = BackfillConfig(rate_wcu=10_000, segments=2, page_items=5, start_margin_s=60)
    copied = 0

    def crash_after_12(table: str, n: int, total: int) -> None:
        nonlocal copied
        copied += n
        if copied == 12:
            raise RuntimeError("the copier's host went away")

    # GIVEN a copy that fails part-way, with --state
    with pytest.raises(RuntimeError, match="went away"):
        Backfiller(pair, make_clients(pair), config, progress=crash_after_12).run(state)
    saved = json.loads(state.read_text())
    assert not saved["finished"]
    assert saved["tables"][users]  # some pages are recorded

    # WHEN the same command runs again
    resumed = run_backfill(world, "--json", "--tables", users, "--state", str(state))

    # THEN it keeps the first start, skips the recorded pages, and completes the copy
    assert resumed.exit_code == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert int(doc["properties"]["initialPositionInStreamExtended"]) == saved["start_epoch"]
    assert f"resumed from --state {state}" in doc["notes"]
    assert doc["tables"][0]["scanned"] < 40
    assert contents(world.replica, users) == contents(world.primary, users)
    again = json.loads(
        run_backfill(world, "--json", "--tables", users, "--state", str(state)).stdout
    )
    assert again["tables"][0]["scanned"] == 0
    assert "finished already" in again["notes"][0]


def test_a_failure_while_copying_says_how_to_resume(
    stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path)
    fill(world, users=3)
    calls = 0

    def throttled(client: Any, target: Any, item: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # what botocore raises once its retries are spent
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}
            raise ClientError(error, "PutItem")  # type: ignore[arg-type]
        return real_copy_item(client, target, item)

    monkeypatch.setattr("lazyrep.backfill.copy_item", throttled)
    state = tmp_path / "s.json"

    result = run_backfill(world, "--state", str(state), "--segments", "1")

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "lazyrep: error: backfill: PutItem: ProvisionedThroughputExceededException: slow; "
        f"run the same command to resume from {state}"
    ]
    assert result.stdout == ""
