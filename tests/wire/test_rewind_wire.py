"""`lazyrep rewind` over the wire: the lease moves, held leases are refused, bad input is one line.

GIVEN a two-shard stream (records placed by explicit hash key) and a KCL 3.x lease
table in the replica's region with shard 0 checkpointed at its last record;
WHEN `lazyrep rewind` runs through click;
THEN the checkpoint becomes the record just before the first to apply again (the KCL
resumes after it), leaseCounter is bumped, and refusals change nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from binlog.tables import create_table
from binlog.topology import KeyAttribute, KeySchema
from emulators.stack import LocalStack
from lazyrep.cli_rewind import rewind_command
from lazyrep.errors_cli import CliError
from lazyrep.rewind import RewindRequest, rewind

pytestmark = pytest.mark.wire

SHARD0 = "shardId-000000000000"
SHARD1 = "shardId-000000000001"


@dataclass
class World:
    run: str
    path: Path
    stream: str
    app: str
    shard0: list[str]
    shard1: list[str]
    split_at: datetime  # shard 0's records 0-1 arrived before, 2-3 after
    kinesis: Any
    replica: Any

    def lease(self) -> dict[str, Any]:
        item: dict[str, Any] = self.replica.get_item(
            TableName=self.app, Key={"leaseKey": {"S": SHARD0}}, ConsistentRead=True
        )["Item"]
        return item

    def set_lease(self, owner: str | None = None, counter: int = 7) -> None:
        item: dict[str, Any] = {
            "leaseKey": {"S": SHARD0},
            "checkpoint": {"S": self.shard0[-1]},
            "checkpointSubSequenceNumber": {"N": "0"},
            "leaseCounter": {"N": str(counter)},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "pendingCheckpoint": {"S": self.shard0[-1]},
        }
        if owner:
            item["leaseOwner"] = {"S": owner}
        self.replica.put_item(TableName=self.app, Item=item)


def make_world(tmp_path: Path) -> World:
    run = uuid.uuid4().hex[:8]
    stream, app = f"rstream-{run}", f"rapp-{run}"
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})  # type: ignore[typeddict-item]

    def put(shard: int, i: int) -> str:
        key = "0" if shard == 0 else str(2**127 + 1)
        reply = kinesis.put_record(
            StreamName=stream, Data=b"x", PartitionKey=f"k{i}", ExplicitHashKey=key
        )
        assert reply["ShardId"] == (SHARD0 if shard == 0 else SHARD1)
        return str(reply["SequenceNumber"])

    shard0 = [put(0, 0), put(0, 1)]
    shard1 = [put(1, 0)]
    time.sleep(1.1)
    split_at = datetime.now(UTC)
    time.sleep(0.1)
    shard0 += [put(0, 2), put(0, 3)]
    path = tmp_path / "topology.toml"
    path.write_text(
        f"""
[stream]
name = "{stream}"
region = "us-east-1"
shards = 2

[tables.users-{run}]
partition_key = {{ name = "pk", type = "S" }}

[replicas.eu]
region = "eu-west-1"
max_wcu = 50
deadline_hours = 20
application_name = "{app}"
""",
        encoding="utf-8",
    )
    replica = boto3.client("dynamodb", region_name="eu-west-1")
    create_table(replica, app, KeySchema(KeyAttribute("leaseKey", "S")))
    world = World(run, path, stream, app, shard0, shard1, split_at, kinesis, replica)
    world.set_lease()
    return world


def run(world: World, *args: str, shard: str = SHARD0) -> Result:
    return CliRunner().invoke(
        rewind_command,
        ["--topology", str(world.path), "--replica", "eu", "--shard", shard, *args],
    )


def test_to_sequence_sets_the_checkpoint_just_before_it(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)

    result = run(world, "--to-sequence", world.shard0[2])

    assert result.exit_code == 0, result.stderr
    lease = world.lease()
    assert lease["checkpoint"] == {"S": world.shard0[1]}
    assert lease["checkpointSubSequenceNumber"] == {"N": "0"}
    assert lease["leaseCounter"] == {"N": "9"}  # + 2: see lazyrep.rewind.COUNTER_STEP
    assert "pendingCheckpoint" not in lease
    lines = result.stdout.splitlines()
    assert lines[0] == f"before: checkpoint {world.shard0[3]}/0, owner none, leaseCounter 7"
    assert lines[1] == f"after:  checkpoint {world.shard0[1]}/0, owner none, leaseCounter 9"
    assert f"first record applied again is {world.shard0[2]}" in lines[2]


def test_to_the_oldest_record_sets_trim_horizon(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)

    result = run(world, "--to-sequence", world.shard0[0])

    assert result.exit_code == 0, result.stderr
    assert world.lease()["checkpoint"] == {"S": "TRIM_HORIZON"}


def test_to_time_starts_at_the_first_record_at_or_after_it(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)

    result = run(world, "--to-time", world.split_at.isoformat().replace("+00:00", "Z"))

    assert result.exit_code == 0, result.stderr
    assert world.lease()["checkpoint"] == {"S": world.shard0[1]}
    assert f"first record applied again is {world.shard0[2]}" in result.stdout


def test_a_held_lease_is_refused_without_force_and_taken_with_it(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    world.set_lease(owner="worker-1", counter=7)
    stop = threading.Event()

    def renew() -> None:  # a live KCL worker: leaseCounter moves every 0.1 s
        counter = 7
        while not stop.wait(0.1):
            counter += 1
            world.replica.update_item(
                TableName=world.app,
                Key={"leaseKey": {"S": SHARD0}},
                UpdateExpression="SET leaseCounter = :c",
                ExpressionAttributeValues={":c": {"N": str(counter)}},
            )

    worker = threading.Thread(target=renew, daemon=True)
    worker.start()
    try:
        refused = run(world, "--to-sequence", world.shard0[2], "--observe", "0.5")
    finally:
        stop.set()
        worker.join()

    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        f"lazyrep: error: rewind: shard {SHARD0}'s lease is held by worker-1 (its leaseCounter "
        "moved in 0.5 s): stop that worker, or pass --force"
    )
    assert refused.stderr.count("\n") == 1
    assert world.lease()["checkpoint"] == {"S": world.shard0[3]}

    forced = run(world, "--to-sequence", world.shard0[2], "--observe", "0", "--force")

    assert forced.exit_code == 0, forced.stderr
    lease = world.lease()
    assert lease["checkpoint"] == {"S": world.shard0[1]}
    assert lease["leaseOwner"] == {"S": "worker-1"}
    counter = int(lease["leaseCounter"]["N"])
    assert f"owner worker-1, leaseCounter {counter - 2}" in forced.stdout.splitlines()[0]


def test_an_owner_whose_counter_stands_still_is_not_live(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)
    world.set_lease(owner="dead-worker", counter=7)

    result = run(world, "--to-sequence", world.shard0[2], "--observe", "0.3")

    assert result.exit_code == 0, result.stderr
    assert world.lease()["leaseCounter"] == {"N": "9"}


def test_a_renewal_between_read_and_write_is_not_clobbered(
    stack_env: LocalStack, tmp_path: Path
) -> None:
    world = make_world(tmp_path)

    class RenewsFirst:
        """The replica's DynamoDB, with a worker renewing just before our UpdateItem."""

        def __getattr__(self, name: str) -> Any:
            return getattr(world.replica, name)

        def update_item(self, **kwargs: Any) -> Any:
            world.set_lease(owner="worker-2", counter=42)
            return world.replica.update_item(**kwargs)

    request = RewindRequest(world.stream, world.app, SHARD0, to_sequence=world.shard0[2])
    with pytest.raises(CliError, match="changed while rewinding") as caught:
        rewind(request, kinesis=world.kinesis, dynamodb=RenewsFirst(), retention_hours=24)

    assert caught.value.exit_code == 1
    assert world.lease()["leaseCounter"] == {"N": "42"}
    assert world.lease()["checkpoint"] == {"S": world.shard0[3]}


def test_moving_forward_is_refused(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.replica.update_item(
        TableName=world.app,
        Key={"leaseKey": {"S": SHARD0}},
        UpdateExpression="SET checkpoint = :c",
        ExpressionAttributeValues={":c": {"S": world.shard0[0]}},
    )

    result = run(world, "--to-sequence", world.shard0[3])

    assert result.exit_code == 2
    assert "that would skip records" in result.stderr


@pytest.mark.parametrize(
    ("args", "shard", "message"),
    [
        (["--to-sequence", "{other}"], SHARD0, "is not "),
        (["--to-sequence", "12x"], SHARD0, "--to-sequence '12x' is not a sequence number"),
        ([], SHARD0, "give exactly one of --to-sequence and --to-time"),
        (["--to-time", "2024-05-01T12:00:00"], SHARD0, "needs a time zone"),
        (["--to-time", "yesterday"], SHARD0, "is not an ISO 8601 time"),
        (["--to-time", "{old}"], SHARD0, "beyond the stream's 24 h retention: records that"),
        (["--to-time", "{future}"], SHARD0, "is in the future"),
        (["--to-sequence", "{first}"], "shardId-000000000009", "no shard 'shardId-000000000009'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    stack_env: LocalStack, tmp_path: Path, args: list[str], shard: str, message: str
) -> None:
    world = make_world(tmp_path)
    now = datetime.now(UTC)
    values = {
        "other": world.shard1[0],
        "first": world.shard0[0],
        "old": (now - timedelta(hours=25)).isoformat(),
        "future": (now + timedelta(hours=1)).isoformat(),
    }

    result = run(world, *[a.format(**values) for a in args], shard=shard)

    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("lazyrep: error: rewind: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert world.lease()["checkpoint"] == {"S": world.shard0[3]}


def test_old_time_names_what_is_gone(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()

    result = run(world, "--to-time", old)

    assert result.exit_code == 2
    assert f"the oldest record still in shard {SHARD0} is {world.shard0[0]}" in result.stderr


def test_unknown_replica(stack_env: LocalStack, tmp_path: Path) -> None:
    world = make_world(tmp_path)

    result = CliRunner().invoke(
        rewind_command,
        ["--topology", str(world.path), "--replica", "mars", "--shard", SHARD0,
         "--to-sequence", "1"],
    )  # fmt: skip

    assert result.exit_code == 2
    assert result.stderr == "lazyrep: error: rewind: unknown replica 'mars' (known: eu)\n"
