"""`lazyrep verify` over the wire: exact classes, exit status, repair, sampling, JSON, bad input.

GIVEN primary tables in us-east-1 and replica tables in eu-west-1 (one renamed), items
written with chosen versions, the primary's tombstones, and the replica's KCL lease
table with checkpoints at sequence 100 (shard 0) and 200 (shard 1);
WHEN `lazyrep verify` runs (through click, as an operator runs it);
THEN each key lands in exactly the class its versions say, lag is not an error, and
repair leaves nothing a second verify objects to.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from binlog.applier import TOMBSTONE_KEY
from binlog.partition import canonical_key
from binlog.tables import create_table, create_topology_tables
from binlog.topology import KeyAttribute, KeySchema, Topology, load_topology
from binlog.version import Version
from emulators.stack import LocalStack
from lazyrep.cli_verify import verify

pytestmark = pytest.mark.wire

V = "_lr_version"
ID = "_lr_id"
USERS_SCHEMA = KeySchema(KeyAttribute("pk", "S"))


def v(shard: int, seq: int) -> bytes:
    return Version(shard, seq).encode()


@dataclass
class World:
    run: str
    path: Path
    topology: Topology
    primary: Any
    replica: Any
    users: str
    orders: str
    orders_replica: str
    tombstones: str
    app: str

    def put(self, side: str, table: str, pk: str, version: bytes | None, **attrs: Any) -> None:
        item: dict[str, Any] = {"pk": {"S": pk}}
        item.update({k: {"S": str(value)} for k, value in attrs.items()})
        if version is not None:
            item[V] = {"B": version}
            item[ID] = {"S": f"id-{version.hex()}"}
        (self.primary if side == "primary" else self.replica).put_item(TableName=table, Item=item)

    def tombstone(self, table: str, pk: str, version: bytes) -> None:
        key = table.encode() + b"\n" + canonical_key(USERS_SCHEMA, {"pk": {"S": pk}})
        self.primary.put_item(
            TableName=self.tombstones,
            Item={
                TOMBSTONE_KEY: {"B": key},
                V: {"B": version},
                ID: {"S": f"del-{version.hex()}"},
                "expires": {"N": "9999999999"},
            },
        )

    def get(self, side: str, table: str, pk: str) -> dict[str, Any] | None:
        client = self.primary if side == "primary" else self.replica
        item: dict[str, Any] | None = client.get_item(
            TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True
        ).get("Item")
        return item


def make_world(tmp_path: Path, *, leases: bool = True) -> World:
    run = uuid.uuid4().hex[:8]
    users, orders = f"users-{run}", f"orders-{run}"
    path = tmp_path / "topology.toml"
    path.write_text(
        f"""
[stream]
name = "vstream-{run}"
region = "us-east-1"
shards = 2

[applier]
tombstone_table = "tomb-{run}"

[tables.{users}]
partition_key = {{ name = "pk", type = "S" }}

[tables.{orders}]
partition_key = {{ name = "customer", type = "S" }}
sort_key = {{ name = "no", type = "N" }}

[replicas.eu]
region = "eu-west-1"
max_wcu = 100
deadline_hours = 20
application_name = "app-{run}"
tables = {{ {orders} = "orders-eu-{run}" }}
""",
        encoding="utf-8",
    )
    topology = load_topology(path)
    primary = boto3.client("dynamodb", region_name="us-east-1")
    replica = boto3.client("dynamodb", region_name="eu-west-1")
    create_topology_tables(primary, topology)
    create_topology_tables(replica, topology, table_map=topology.replicas["eu"].tables)
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=f"vstream-{run}", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=f"vstream-{run}", WaiterConfig={"Delay": 0.2}
    )
    app = f"app-{run}"
    if leases:
        create_table(replica, app, KeySchema(KeyAttribute("leaseKey", "S")))
        for shard, checkpoint in ((0, "100"), (1, "200")):
            replica.put_item(
                TableName=app,
                Item={
                    "leaseKey": {"S": f"shardId-{shard:012d}"},
                    "checkpoint": {"S": checkpoint},
                    "checkpointSubSequenceNumber": {"N": "0"},
                    "leaseOwner": {"S": "worker-1"},
                },
            )
    return World(
        run,
        path,
        topology,
        primary,
        replica,
        users,
        orders,
        f"orders-eu-{run}",
        f"tomb-{run}",
        app,
    )


def run_verify(world: World, *args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(
        verify,
        ["--topology", str(world.path), "--replica", "eu", "--recheck-delay", "0", *args],
        catch_exceptions=False,
    )


def scenario(world: World, *, unrepairable: bool = True) -> None:
    """Users: one key per class; orders (renamed on the replica): two items in sync."""
    u = world.users
    world.put("primary", u, "a-in-sync", v(0, 50), n=1)
    world.put("replica", u, "a-in-sync", v(0, 50), n=1)
    world.put("primary", u, "b-behind-lag", v(0, 150), n=2)
    world.put("replica", u, "b-behind-lag", v(0, 40), n=1)
    world.put("primary", u, "c-behind-stuck", v(0, 90), n=2)
    world.put("replica", u, "c-behind-stuck", v(0, 40), n=1)
    world.put("primary", u, "d-same-version", v(0, 60), n="primary")
    world.put("replica", u, "d-same-version", v(0, 60), n="corrupted")
    world.put("primary", u, "f-missing-lag", v(1, 250), n=1)
    world.put("primary", u, "g-missing", v(1, 150), n=1)
    world.put("replica", u, "h-extra-lag", v(0, 30), n=1)
    world.tombstone(u, "h-extra-lag", v(0, 120))
    world.put("replica", u, "i-extra-deleted", v(0, 30), n=1)
    world.tombstone(u, "i-extra-deleted", v(0, 80))
    world.put("primary", u, "k-unversioned-replica", v(0, 20), n=1)
    world.put("replica", u, "k-unversioned-replica", None, n=1)
    if unrepairable:
        world.put("primary", u, "e-replica-newer", v(0, 60), n=1)
        world.put("replica", u, "e-replica-newer", v(0, 70), n=1)
        world.put("replica", u, "j-extra-orphan", v(0, 30), n=1)
    for no in ("1", "2"):
        item = {"customer": {"S": "c1"}, "no": {"N": no}, V: {"B": v(1, 10)}, ID: {"S": no}}
        world.primary.put_item(TableName=world.orders, Item=item)
        world.replica.put_item(TableName=world.orders_replica, Item=item)


def by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]["pk"]["S"]: f for f in doc["findings"] if "pk" in f["key"]}


def test_each_key_lands_in_its_class_and_only_errors_fail(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    scenario(world)

    result = run_verify(world, "--json", "--segments", "3")

    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    users, orders = doc["tables"]
    assert (users["table"], users["replica_table"]) == (world.users, world.users)
    assert users["in_sync"] == 1
    assert users["lag"] == {"behind": 1, "missing": 1, "extra": 1}
    assert users["errors"] == {"diverged": 3, "missing": 1, "extra": 2, "behind": 1}
    assert users["checked"] == 11
    assert (users["primary_scanned"], users["replica_scanned"]) == (8, 9)
    assert (orders["replica_table"], orders["checked"], orders["in_sync"]) == (
        world.orders_replica,
        2,
        2,
    )
    assert sum(orders["errors"].values()) == 0
    found = by_key(doc)
    assert {k: (f["kind"], f["repair"]) for k, f in found.items()} == {
        "c-behind-stuck": ("behind", None),
        "d-same-version": ("diverged", None),
        "e-replica-newer": ("diverged", None),
        "g-missing": ("missing", None),
        "i-extra-deleted": ("extra", None),
        "j-extra-orphan": ("extra", None),
        "k-unversioned-replica": ("diverged", None),
    }
    assert found["c-behind-stuck"]["primary_version"] == "shardId-000000000000/90/0"
    assert found["c-behind-stuck"]["replica_version"] == "shardId-000000000000/40/0"
    assert found["i-extra-deleted"]["tombstone_version"] == "shardId-000000000000/80/0"
    assert (doc["ok"], doc["exit_status"], doc["remaining_errors"]) == (False, 1, 7)
    assert doc["lag_source"] == "checkpoints"
    assert doc["checkpoints"] == {
        "shardId-000000000000": "shardId-000000000000/100/0",
        "shardId-000000000001": "shardId-000000000001/200/0",
    }
    assert set(doc) == {
        "replica",
        "primary_region",
        "replica_region",
        "ok",
        "exit_status",
        "remaining_errors",
        "lag_source",
        "lag_note",
        "checkpoints",
        "sample",
        "segments",
        "repair",
        "started_at",
        "elapsed_s",
        "tables",
        "findings",
        "findings_unlisted",
    }


def test_repair_fixes_what_it_can_and_a_second_verify_is_clean(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    scenario(world, unrepairable=False)

    repaired = run_verify(world, "--json", "--repair")

    assert repaired.exit_code == 0, repaired.stdout + repaired.stderr
    doc = json.loads(repaired.stdout)
    assert {k: (f["repair"], f["after_repair"]) for k, f in by_key(doc).items()} == {
        "c-behind-stuck": ("repaired", "in_sync"),
        "d-same-version": ("repaired", "in_sync"),
        "g-missing": ("repaired", "in_sync"),
        "i-extra-deleted": ("repaired", "gone"),
        "k-unversioned-replica": ("repaired", "in_sync"),
    }
    u = world.users
    for pk in ("c-behind-stuck", "d-same-version", "g-missing", "k-unversioned-replica"):
        assert world.get("replica", u, pk) == world.get("primary", u, pk)
    assert world.get("replica", u, "i-extra-deleted") is None
    # Lag is left to the replica's consumer.
    assert world.get("replica", u, "b-behind-lag") == {
        "pk": {"S": "b-behind-lag"},
        "n": {"S": "1"},
        V: {"B": v(0, 40)},
        ID: {"S": f"id-{v(0, 40).hex()}"},
    }
    assert world.get("replica", u, "f-missing-lag") is None

    again = run_verify(world, "--json")

    assert again.exit_code == 0, again.stdout
    second = json.loads(again.stdout)
    assert second["findings"] == []
    assert second["tables"][0]["lag"] == {"behind": 1, "missing": 1, "extra": 1}
    assert sum(second["tables"][0]["errors"].values()) == 0


def test_repair_leaves_what_it_must_not_touch_and_still_fails(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    scenario(world)

    result = run_verify(world, "--json", "--repair")

    assert result.exit_code == 1
    found = by_key(json.loads(result.stdout))
    assert found["e-replica-newer"]["repair"] == "not_repairable"
    assert found["j-extra-orphan"]["repair"] == "not_repairable"
    assert json.loads(result.stdout)["remaining_errors"] == 2
    assert world.get("replica", world.users, "e-replica-newer") is not None
    assert world.get("replica", world.users, "j-extra-orphan") is not None


def test_the_table_for_people(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    scenario(world)

    result = run_verify(world, "--max-findings", "2")

    assert result.exit_code == 1
    out = result.stdout
    assert "differences lag cannot explain" in out
    assert "... and 5 more" in out
    assert "NOT OK: 7 differences lag cannot explain (--repair rewrites" in out
    assert f"{world.orders} -> {world.orders_replica}" in out


@pytest.mark.parametrize(
    ("lag", "errors"),
    [
        ("none", {"diverged": 3, "missing": 2, "extra": 3, "behind": 2}),
        ("any", {"diverged": 3, "missing": 0, "extra": 1, "behind": 0}),
    ],
)
def test_lag_modes(stack_env: LocalStack, tmp_path: Path, lag: str, errors: dict[str, int]) -> None:
    world = make_world(tmp_path)
    scenario(world)

    doc = json.loads(run_verify(world, "--json", "--lag", lag).stdout)

    assert doc["lag_source"] == lag
    assert doc["tables"][0]["errors"] == errors


def test_without_a_lease_table_nothing_is_lag(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path, leases=False)
    scenario(world, unrepairable=False)

    result = run_verify(world, "--json")

    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    assert doc["lag_source"] == "none"
    assert f"no lease table 'app-{world.run}'" in doc["lag_note"]
    assert doc["tables"][0]["lag"] == {"behind": 0, "missing": 0, "extra": 0}


def test_sample_checks_a_fraction_and_still_finds_errors(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    requests = [
        {"PutRequest": {"Item": {"pk": {"S": f"u{n:03d}"}, V: {"B": v(0, n)}, ID: {"S": str(n)}}}}
        for n in range(1, 121)
    ]
    for side in (world.primary, world.replica):
        for start in range(0, len(requests), 25):
            side.batch_write_item(RequestItems={world.users: requests[start : start + 25]})
    # Every item of the replica diverges: whatever is sampled is an error.
    for n in range(1, 121):
        world.put("replica", world.users, f"u{n:03d}", v(0, n), n="changed")

    result = run_verify(world, "--json", "--sample", "0.25", "--seed", "3", "--tables", world.users)

    doc = json.loads(result.stdout)
    (users,) = doc["tables"]
    assert 0 < users["checked"] < 120
    assert users["errors"]["diverged"] == users["checked"]
    assert users["primary_scanned"] < 120
    assert users["replica_scanned"] < 120
    assert doc["sample"] == 0.25
    assert result.exit_code == 1


# -- bad input: one line on stderr, exit 2, no traceback -----------------------------------


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith("lazyrep: error: ")
    return lines[0]


def test_wrong_region_is_a_clear_input_error(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    text = world.path.read_text().replace('region = "eu-west-1"', 'region = "ap-south-1"')
    world.path.write_text(text)

    result = run_verify(world)

    assert result.exit_code == 2
    assert f"replica table '{world.users}' does not exist in ap-south-1" in one_error_line(result)


def test_unreachable_endpoint(
    stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")

    result = run_verify(world)

    assert result.exit_code == 2
    assert "cannot reach http://127.0.0.1:9" in one_error_line(result)


def test_missing_credentials(
    stack_env: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(tmp_path)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = run_verify(world)

    assert result.exit_code == 2
    assert "no usable AWS credentials" in one_error_line(result)


def test_a_missing_tombstone_table_is_named(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.primary.delete_table(TableName=world.tombstones)

    result = run_verify(world)

    assert result.exit_code == 2
    assert f"tombstone table '{world.tombstones}' does not exist in us-east-1" in one_error_line(
        result
    )
