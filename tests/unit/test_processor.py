"""The replica record processor at the protocol level: kclpy's KCLProcess, scripted JSON lines.

The daemon's side of the conversation is scripted line by line (initialize, processRecords,
the replies to our checkpoints, leaseLost, shardEnded, shutdownRequested) into
KCLProcess's `input_file`; what the processor says back (`output_file`) is asserted
message for message. The replica tables live in moto (in-process, eu-west-1); the pacer
is a stand-in that records what it was asked.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
import pytest
from amazon_kclpy import kcl
from botocore.exceptions import ClientError
from moto import mock_aws

from binlog.applier import Applier, ApplierConfig
from binlog.awserrors import Failure
from binlog.deadletter import DeadLetter, MemoryDeadLetterStore
from binlog.tables import create_topology_tables
from binlog.topology import Topology, parse_topology
from kcl_consumer.processor import (
    EXIT_BATCH_FAILED,
    EXIT_PROCESSOR_ERROR,
    ProcessorConfig,
    RecordProcessor,
    ReplicaProcessor,
)
from kcl_consumer.status import MemoryStatus, ShardProgress

SHARD = "shardId-000000000003"
ARRIVAL_MS = 1_700_000_000_000
TOPOLOGY: dict[str, Any] = {
    "stream": {"name": "binlog", "region": "us-east-1"},
    "tables": {
        "users": {"partition_key": {"name": "user_id", "type": "S"}},
        "payroll": {"partition_key": {"name": "emp", "type": "S"}},
    },
    "replicas": {
        "eu": {
            "region": "eu-west-1",
            "max_wcu": 100,
            "deadline_hours": 12,
            "tables": {"users": "users-eu"},
        }
    },
    "applier": {"tombstone_table": "tombstones-eu"},
}


# -- stand-ins --------------------------------------------------------------------------------


@dataclass
class StandInState:
    acquired: int

    def to_json(self) -> dict[str, Any]:
        return {"acquired_wcu": self.acquired}


@dataclass
class StandInPacer:
    """Records what the processor asks of the pacer; never waits."""

    acquired: list[tuple[int, int]] = field(default_factory=list)
    observed: list[tuple[float, int, int | None, int | None, int | None]] = field(
        default_factory=list
    )
    throttles: int = 0
    chunk_wcu: float = 1000.0

    def acquire(self, wcu: float, arrival_ms: int | None = None) -> float:
        assert arrival_ms is not None
        self.acquired.append((int(wcu), arrival_ms))
        return 0.0

    def observe(
        self,
        batch_wcu: float,
        records: int,
        oldest_arrival_ms: int | None,
        millis_behind_latest: int | None,
        *,
        newest_arrival_ms: int | None = None,
    ) -> None:
        self.observed.append(
            (batch_wcu, records, oldest_arrival_ms, millis_behind_latest, newest_arrival_ms)
        )

    def suggested_chunk_wcu(self) -> float:
        return self.chunk_wcu

    def record_throttle(self) -> None:
        self.throttles += 1

    def state(self) -> StandInState:
        return StandInState(sum(w for w, _ in self.acquired))


class FlakyDynamoDB:
    """The moto client, but writes to chosen items fail with a chosen code `times` times."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures: dict[str, int] = {}  # user_id -> failures left (-1: forever)
        self.code = "ProvisionedThroughputExceededException"
        self.calls = 0

    def fail(self, user: str, times: int = -1, code: str | None = None) -> None:
        self.failures[user] = times
        if code:
            self.code = code

    def _maybe_fail(self, kwargs: dict[str, Any]) -> None:
        self.calls += 1
        key = kwargs.get("Item") or kwargs.get("Key") or {}
        user = key.get("user_id", {}).get("S")
        left = self.failures.get(user, 0)
        if left == 0:
            return
        if left > 0:
            self.failures[user] = left - 1
        response: Any = {
            "Error": {"Code": self.code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        raise ClientError(response, "PutItem")

    def put_item(self, **kwargs: Any) -> Any:
        self._maybe_fail(kwargs)
        return self._client.put_item(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        self._maybe_fail(kwargs)
        return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FlakyStore(MemoryDeadLetterStore):
    """Parks letters, except that the first `failures` calls fail (-1: every call)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        if self.failures:
            self.failures -= 1
            return [Failure("ServiceUnavailable", "queue down", True)] * len(letters)
        return super().park(letters)


# -- the conversation -------------------------------------------------------------------------


@dataclass
class Conversation:
    """What the processor wrote back, what it logged to the error stream, how it ended."""

    messages: list[dict[str, Any]]
    errors: str
    exit_code: int | None


def converse(processor: RecordProcessor, lines: Sequence[dict[str, Any]]) -> Conversation:
    """Run KCLProcess over scripted daemon lines; collect its answers."""
    script = "".join(json.dumps(line) + "\n" for line in lines)
    output, errors = io.StringIO(), io.StringIO()
    process = kcl.KCLProcess(
        processor, input_file=io.StringIO(script), output_file=output, error_file=errors
    )
    exit_code = None
    try:
        process.run()
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else 1
    messages = [json.loads(line) for line in output.getvalue().splitlines() if line.strip()]
    return Conversation(messages, errors.getvalue(), exit_code)


def initialize(shard: str = SHARD, sequence: str = "TRIM_HORIZON") -> dict[str, Any]:
    return {
        "action": "initialize",
        "shardId": shard,
        "sequenceNumber": sequence,
        "subSequenceNumber": 0,
    }


def record(data: bytes, sequence: str, sub: int = 0) -> dict[str, Any]:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": "pk",
        "sequenceNumber": sequence,
        "subSequenceNumber": sub,
        "approximateArrivalTimestamp": ARRIVAL_MS + int(sequence) % 1000,
    }


def process_records(*records: dict[str, Any], behind: int = 5000) -> dict[str, Any]:
    return {"action": "processRecords", "records": list(records), "millisBehindLatest": behind}


def reply(sequence: str | None, sub: int | None = 0, error: str | None = None) -> dict[str, Any]:
    """The daemon's answer to one checkpoint request."""
    return {
        "action": "checkpoint",
        "sequenceNumber": sequence,
        "subSequenceNumber": sub,
        "error": error,
    }


def checkpoint(sequence: str | None, sub: int | None = 0) -> dict[str, Any]:
    """What the processor writes to ask for a checkpoint."""
    return {"action": "checkpoint", "sequenceNumber": sequence, "subSequenceNumber": sub}


def status(action: str) -> dict[str, Any]:
    return {"action": "status", "responseFor": action}


def envelope_doc(
    envelope_id: str, action: str, user: str, table: str = "users", **extra: Any
) -> bytes:
    key_name = "emp" if table == "payroll" else "user_id"
    doc: dict[str, Any] = {
        "format": 1,
        "id": envelope_id,
        "time": 1,
        "action": action,
        "table": table,
        "key": {key_name: {"S": user}},
        **extra,
    }
    return orjson.dumps(doc)


def put(envelope_id: str, user: str, visits: int, table: str = "users") -> bytes:
    key_name = "emp" if table == "payroll" else "user_id"
    item = {key_name: {"S": user}, "visits": {"N": str(visits)}}
    return envelope_doc(envelope_id, "PutItem", user, table, item=item)


def add(envelope_id: str, user: str) -> bytes:
    return envelope_doc(
        envelope_id, "UpdateItem", user, update="ADD visits :one", values={":one": {"N": "1"}}
    )


def delete(envelope_id: str, user: str) -> bytes:
    return envelope_doc(envelope_id, "DeleteItem", user)


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Env:
    topology: Topology
    dynamodb: Any
    flaky: FlakyDynamoDB
    pacer: StandInPacer
    store: MemoryDeadLetterStore
    status: MemoryStatus
    sleeps: list[float]
    parents: dict[str, list[str | None]]

    def processor(self, **config: Any) -> ReplicaProcessor:
        settings: dict[str, Any] = {"replica": "eu", "stream": "binlog", **config}
        target = self.topology.replicas["eu"]
        applier = Applier(
            self.flaky,  # type: ignore[arg-type]
            self.topology.tables,
            table_map=dict(target.tables),
            config=ApplierConfig.from_topology(self.topology, max_workers=4),
        )
        return ReplicaProcessor(
            ProcessorConfig(**settings),
            applier=applier,
            tables=self.topology.tables,
            dead_letters=self.store,
            pacer=self.pacer,
            status=self.status,
            parents_of=self.parents_of,
            write_units=lambda envelope: 2 if envelope.action.value == "DeleteItem" else 1,
            owner="worker-a/1",
            sleep=self.sleeps.append,
        )

    def parents_of(self, shard_id: str) -> list[str | None]:
        return self.parents.get(shard_id, [None, None])

    def users(self) -> dict[str, str]:
        items = self.dynamodb.scan(TableName="users-eu")["Items"]
        return {i["user_id"]["S"]: i["visits"]["N"] for i in items}


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        topology = parse_topology(TOPOLOGY)
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        create_topology_tables(dynamodb, topology, table_map=topology.replicas["eu"].tables)
        yield Env(
            topology,
            dynamodb,
            FlakyDynamoDB(dynamodb),
            StandInPacer(),
            MemoryDeadLetterStore(),
            MemoryStatus(),
            [],
            {},
        )


# -- initialize and processRecords ------------------------------------------------------------


def test_batch_applied_then_checkpointed_at_its_last_record(env: Env) -> None:
    # GIVEN a fresh shard and a batch: puts, an ADD, a delete, over two items
    processor = env.processor()
    batch = process_records(
        record(put("p1", "u1", 10), "1001"),
        record(put("p2", "u2", 20), "1002"),
        record(add("a1", "u1"), "1003"),
        record(delete("d2", "u2"), "1004"),
        behind=7000,
    )
    # WHEN the daemon delivers it and accepts the checkpoint
    talk = converse(processor, [initialize(), batch, reply("1004")])
    # THEN exactly one checkpoint, at the batch's last record, after everything applied
    assert talk.messages == [
        status("initialize"),
        checkpoint("1004"),
        status("processRecords"),
    ]
    assert talk.exit_code is None
    assert env.users() == {"u1": "11"}
    # AND the pacer was asked for the chunk's WCU and told about the batch
    assert env.pacer.acquired == [(5, ARRIVAL_MS + 1)]
    assert env.pacer.observed == [(5, 4, ARRIVAL_MS + 1, 7000, ARRIVAL_MS + 4)]
    assert processor.counts.applied == 4
    assert processor.counts.checkpoints == 1


def test_poison_and_unauthorized_records_are_parked_with_reason_and_position(env: Env) -> None:
    # GIVEN an undecodable record and a valid record for a table the replica does not map
    # but the topology names, and one for a table the topology does not name at all
    processor = env.processor()
    stranger = envelope_doc("x1", "DeleteItem", "someone", table="secrets")
    batch = process_records(
        record(put("p1", "u1", 1), "2001"),
        record(b"not json", "2002"),
        record(stranger, "2003", sub=4),
        record(put("p2", "u2", 2), "2004"),
    )
    talk = converse(processor, [initialize(), batch, reply("2004")])
    # THEN the good records are applied, the others parked, and the batch checkpointed
    assert talk.messages == [status("initialize"), checkpoint("2004"), status("processRecords")]
    assert env.users() == {"u1": "1", "u2": "2"}
    assert [
        (x.reason, x.shard_id, x.sequence_number, x.subsequence_number, x.consumer, x.stream)
        for x in env.store.letters
    ] == [
        ("not_json", SHARD, "2002", 0, "kcl:eu", "binlog"),
        ("unauthorized_table", SHARD, "2003", 4, "kcl:eu", "binlog"),
    ]
    assert env.store.letters[1].data == stranger
    assert processor.counts.parked == 2


def test_redelivered_batch_changes_nothing(env: Env) -> None:
    # GIVEN a batch applied once (ADD included)
    batch = process_records(
        record(put("p1", "u1", 10), "1001"),
        record(add("a1", "u1"), "1002"),
        record(add("a2", "u1"), "1003"),
    )
    converse(env.processor(), [initialize(), batch, reply("1003")])
    # WHEN a restarted worker gets it again from an older checkpoint
    again = env.processor()
    talk = converse(again, [initialize(sequence="1001"), batch, reply("1003")])
    # THEN no update is applied twice
    assert talk.messages == [status("initialize"), checkpoint("1003"), status("processRecords")]
    assert env.users() == {"u1": "12"}
    assert again.counts.stale == 3
    assert again.counts.applied == 0


def test_aggregated_user_records_are_checkpointed_with_their_subsequence(env: Env) -> None:
    # GIVEN user records of one KPL aggregate (the daemon de-aggregates them)
    batch = process_records(
        record(put("p1", "u1", 1), "3000", sub=0),
        record(put("p2", "u2", 2), "3000", sub=1),
        record(put("p3", "u3", 3), "3000", sub=2),
    )
    talk = converse(env.processor(), [initialize(), batch, reply("3000", 2)])
    assert talk.messages == [status("initialize"), checkpoint("3000", 2), status("processRecords")]
    assert env.users() == {"u1": "1", "u2": "2", "u3": "3"}


def test_long_batch_is_checkpointed_chunk_by_chunk(env: Env) -> None:
    # GIVEN chunks of two records and a checkpoint interval of zero
    processor = env.processor(chunk_records=2, checkpoint_interval_s=0)
    batch = process_records(*(record(put(f"p{n}", f"u{n}", n), str(1000 + n)) for n in range(5)))
    talk = converse(processor, [initialize(), batch, reply("1001"), reply("1003"), reply("1004")])
    # THEN each finished chunk is checkpointed, and the pacer paid chunk by chunk
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        checkpoint("1003"),
        checkpoint("1004"),
        status("processRecords"),
    ]
    assert [wcu for wcu, _ in env.pacer.acquired] == [2, 2, 1]
    assert env.users() == {f"u{n}": str(n) for n in range(5)}


def test_chunks_are_about_one_bucketful_of_the_pacers_rate(env: Env) -> None:
    # GIVEN a pacer whose bucket holds 3 WCU (puts cost 1 here, deletes 2)
    env.pacer.chunk_wcu = 3
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(put("p2", "u2", 2), "1002"),
        record(delete("d1", "u1"), "1003"),
        record(put("p3", "u3", 3), "1004"),
        record(put("p4", "u4", 4), "1005"),
    )
    talk = converse(env.processor(), [initialize(), batch, reply("1005")])
    # THEN it is paid for in chunks of at most 3 WCU, and checkpointed once at the end
    assert [wcu for wcu, _ in env.pacer.acquired] == [2, 3, 1]
    assert talk.messages == [status("initialize"), checkpoint("1005"), status("processRecords")]
    assert env.users() == {"u2": "2", "u3": "3", "u4": "4"}


def test_empty_batch_checkpoints_nothing(env: Env) -> None:
    talk = converse(env.processor(), [initialize(), process_records()])
    assert talk.messages == [status("initialize"), status("processRecords")]
    assert env.pacer.acquired == []


# -- retries ----------------------------------------------------------------------------------


def test_throttled_records_are_retried_in_process_then_checkpointed(env: Env) -> None:
    # GIVEN u2's writes throttled twice (beyond botocore's own retries)
    env.flaky.fail("u2", times=2)
    processor = env.processor()
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(put("p2", "u2", 2), "1002"),
        record(add("a2", "u2"), "1003"),
        record(put("p3", "u3", 3), "1004"),
    )
    talk = converse(processor, [initialize(), batch, reply("1004")])
    # THEN the batch is finished before it is checkpointed; u2's records kept their order
    assert talk.messages == [status("initialize"), checkpoint("1004"), status("processRecords")]
    assert talk.exit_code is None
    assert env.users() == {"u1": "1", "u2": "3", "u3": "3"}
    # AND the pacer heard of the throttling and was paid again for the retried writes
    assert env.pacer.throttles == 2
    assert [wcu for wcu, _ in env.pacer.acquired] == [4, 2, 2]
    assert len(env.sleeps) == 2
    assert processor.counts.retried == 4


def test_exhausted_retries_checkpoint_the_applied_prefix_and_end_the_process(env: Env) -> None:
    # GIVEN u2's writes failing for good (a throttle that does not end)
    env.flaky.fail("u2")
    processor = env.processor(apply_attempts=3)
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(put("p2", "u2", 2), "1002"),
        record(put("p3", "u3", 3), "1003"),
    )
    # WHEN the batch is delivered
    talk = converse(
        processor,
        [initialize(), batch, reply("1001"), process_records(record(put("p4", "u4", 4), "1004"))],
    )
    # THEN the checkpoint goes no further than the last record before the failed one,
    # and the process exits instead of reporting the batch done: the daemon never hears
    # "status processRecords", so nothing after 1001 is ever checkpointed by this process
    assert talk.messages == [status("initialize"), checkpoint("1001")]
    assert talk.exit_code == EXIT_BATCH_FAILED
    assert env.users() == {"u1": "1", "u3": "3"}  # u3 applied; applied again after restart
    assert len(env.sleeps) == 2
    assert env.status.reports[-1].state == "failed"
    assert env.status.reports[-1].checkpoint_sequence == "1001"


def test_exhausted_retries_on_the_first_record_checkpoint_nothing(env: Env) -> None:
    env.flaky.fail("u1", code="InternalServerError")
    talk = converse(
        env.processor(apply_attempts=2),
        [initialize(), process_records(record(put("p1", "u1", 1), "1001"))],
    )
    assert talk.messages == [status("initialize")]
    assert talk.exit_code == EXIT_BATCH_FAILED
    assert env.pacer.throttles == 0  # a 5xx is not a throttle


def test_restart_after_exhausted_retries_applies_the_rest_once(env: Env) -> None:
    # GIVEN a worker that gave up on u2 after checkpointing 1001
    env.flaky.fail("u2", times=3)
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(put("p2", "u2", 2), "1002"),
        record(add("a3", "u3"), "1003"),
    )
    first = converse(env.processor(apply_attempts=2), [initialize(), batch, reply("1001")])
    assert first.exit_code == EXIT_BATCH_FAILED
    # WHEN the restarted worker resumes from that checkpoint (the daemon redelivers after it)
    rest = process_records(batch["records"][1], batch["records"][2])
    talk = converse(env.processor(), [initialize(sequence="1001"), rest, reply("1003")])
    # THEN everything is applied once: u3's ADD, applied before the crash, is not doubled
    assert talk.messages == [status("initialize"), checkpoint("1003"), status("processRecords")]
    assert env.users() == {"u1": "1", "u2": "2", "u3": "1"}


def test_permanent_write_error_parks_the_record(env: Env) -> None:
    # GIVEN a replica table that refuses u2's write for good (validation, not weather)
    env.flaky.fail("u2", code="ValidationException")
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(put("p2", "u2", 2), "1002"),
    )
    talk = converse(env.processor(), [initialize(), batch, reply("1002")])
    assert talk.messages == [status("initialize"), checkpoint("1002"), status("processRecords")]
    assert [(x.reason, x.sequence_number) for x in env.store.letters] == [
        ("ValidationException", "1002")
    ]


def test_failed_park_is_retried_before_the_checkpoint(env: Env) -> None:
    env.store = FlakyStore(failures=2)
    batch = process_records(record(b"[]", "1001"), record(put("p1", "u1", 1), "1002"))
    talk = converse(env.processor(), [initialize(), batch, reply("1002")])
    assert talk.messages == [status("initialize"), checkpoint("1002"), status("processRecords")]
    assert [(x.reason, x.sequence_number) for x in env.store.letters] == [("not_object", "1001")]
    assert len(env.sleeps) == 2


def test_park_that_never_succeeds_is_never_checkpointed_past(env: Env) -> None:
    env.store = FlakyStore(failures=-1)
    batch = process_records(
        record(put("p1", "u1", 1), "1001"),
        record(b"\xff", "1002"),
        record(put("p3", "u3", 3), "1003"),
    )
    talk = converse(env.processor(apply_attempts=3), [initialize(), batch, reply("1001")])
    assert talk.messages == [status("initialize"), checkpoint("1001")]
    assert talk.exit_code == EXIT_BATCH_FAILED


def test_unexpected_error_ends_the_process_without_reporting_the_batch_done(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN an applier with a bug
    processor = env.processor()

    class Broken:
        def apply_batch(self, records: Sequence[Any]) -> list[Any]:
            raise RuntimeError("bug")

    processor._applier = Broken()
    talk = converse(processor, [initialize(), process_records(record(put("p1", "u1", 1), "1001"))])
    assert talk.messages == [status("initialize")]
    assert talk.exit_code == EXIT_PROCESSOR_ERROR
    assert env.users() == {}
    assert "process_records of shard shardId-000000000003 failed" in caplog.text


# -- lifecycle --------------------------------------------------------------------------------


def test_lease_lost_stops_without_checkpoint(env: Env) -> None:
    processor = env.processor()
    batch = process_records(record(put("p1", "u1", 1), "1001"))
    talk = converse(processor, [initialize(), batch, reply("1001"), {"action": "leaseLost"}])
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        status("processRecords"),
        status("leaseLost"),
    ]
    assert env.status.reports[-1].state == "lease_lost"


def test_shard_ended_checkpoints_the_end(env: Env) -> None:
    processor = env.processor()
    batch = process_records(record(put("p1", "u1", 1), "1001"))
    talk = converse(
        processor,
        [initialize(), batch, reply("1001"), {"action": "shardEnded"}, reply("SHARD_END", None)],
    )
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        status("processRecords"),
        checkpoint(None, None),
        status("shardEnded"),
    ]
    assert env.status.reports[-1].state == "ended"


def test_shutdown_requested_checkpoints_what_is_applied(env: Env) -> None:
    # GIVEN a batch whose checkpoint was throttled beyond its tries
    processor = env.processor(checkpoint_attempts=2)
    batch = process_records(record(put("p1", "u1", 1), "1001"), record(add("a", "u1"), "1002"))
    lines = [
        initialize(),
        batch,
        reply("1002", error="ThrottlingException"),
        reply("1002", error="ThrottlingException"),
        {"action": "shutdownRequested"},
        reply("1002"),
    ]
    talk = converse(processor, lines)
    # THEN the shutdown checkpoints the applied records the batch could not
    assert talk.messages == [
        status("initialize"),
        checkpoint("1002"),
        checkpoint("1002"),
        status("processRecords"),
        checkpoint("1002"),
        status("shutdownRequested"),
    ]
    assert env.status.reports[-1].state == "shut_down"
    assert env.status.reports[-1].checkpoint_sequence == "1002"


def test_shutdown_requested_with_everything_checkpointed_says_only_done(env: Env) -> None:
    batch = process_records(record(put("p1", "u1", 1), "1001"))
    talk = converse(
        env.processor(),
        [initialize(), batch, reply("1001"), {"action": "shutdownRequested"}],
    )
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        status("processRecords"),
        status("shutdownRequested"),
    ]


def test_shutdown_requested_before_any_record_checkpoints_nothing(env: Env) -> None:
    talk = converse(env.processor(), [initialize(sequence="999"), {"action": "shutdownRequested"}])
    assert talk.messages == [status("initialize"), status("shutdownRequested")]


# -- checkpoint errors ------------------------------------------------------------------------


def test_checkpoint_throttling_is_retried(env: Env) -> None:
    processor = env.processor()
    batch = process_records(record(put("p1", "u1", 1), "1001"))
    lines = [
        initialize(),
        batch,
        reply("1001", error="ThrottlingException"),
        reply("1001", error="ThrottlingException"),
        reply("1001"),
    ]
    talk = converse(processor, lines)
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        checkpoint("1001"),
        checkpoint("1001"),
        status("processRecords"),
    ]
    assert len(env.sleeps) == 2
    assert processor.halted is None


@pytest.mark.parametrize("error", ["ShutdownException", "InvalidStateException"])
def test_checkpoint_refused_stops_applying_and_checkpointing(env: Env, error: str) -> None:
    # GIVEN a checkpoint the daemon refuses for good
    processor = env.processor()
    lines = [
        initialize(),
        process_records(record(put("p1", "u1", 1), "1001")),
        reply("1001", error=error),
        process_records(record(put("p2", "u2", 2), "1002")),
        {"action": "shutdownRequested"},
        {"action": "shardEnded"},
    ]
    talk = converse(processor, lines)
    # THEN it is not tried again, the next batch is neither applied nor checkpointed, and
    # neither shutdown nor the shard's end checkpoints anything
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        status("processRecords"),
        status("processRecords"),
        status("shutdownRequested"),
        status("shardEnded"),
    ]
    assert env.users() == {"u1": "1"}
    assert processor.halted == f"checkpoint refused with {error}"
    assert env.sleeps == []


def test_other_checkpoint_error_is_covered_by_the_next_checkpoint(env: Env) -> None:
    processor = env.processor()
    lines = [
        initialize(),
        process_records(record(put("p1", "u1", 1), "1001")),
        reply("1001", error="KinesisClientLibIOException"),
        process_records(record(put("p2", "u2", 2), "1002")),
        reply("1002"),
    ]
    talk = converse(processor, lines)
    assert talk.messages == [
        status("initialize"),
        checkpoint("1001"),
        status("processRecords"),
        checkpoint("1002"),
        status("processRecords"),
    ]
    assert env.users() == {"u1": "1", "u2": "2"}


def test_unexpected_reply_to_a_checkpoint_stops_checkpointing(env: Env) -> None:
    # kclpy turns a reply that is not a checkpoint reply into InvalidStateException
    processor = env.processor()
    lines = [
        initialize(),
        process_records(record(put("p1", "u1", 1), "1001")),
        {"action": "leaseLost"},
    ]
    talk = converse(processor, lines)
    assert talk.messages == [status("initialize"), checkpoint("1001"), status("processRecords")]
    assert processor.halted == "checkpoint refused with InvalidStateException"


# -- lineage ----------------------------------------------------------------------------------


def test_child_numbered_below_its_parent_is_never_applied_nor_ended(env: Env) -> None:
    env.parents[SHARD] = ["shardId-000000000007", None]
    processor = env.processor()
    lines = [
        initialize(),
        process_records(record(put("p1", "u1", 1), "1001")),
        {"action": "shardEnded"},
    ]
    talk = converse(processor, lines)
    assert talk.messages == [
        status("initialize"),
        status("processRecords"),
        status("shardEnded"),
    ]
    assert env.users() == {}
    assert env.status.reports[0].state == "blocked"


def test_child_of_lower_numbered_parents_is_processed(env: Env) -> None:
    env.parents[SHARD] = ["shardId-000000000001", "shardId-000000000002"]
    talk = converse(
        env.processor(),
        [initialize(), process_records(record(put("p1", "u1", 1), "1001")), reply("1001")],
    )
    assert talk.messages == [status("initialize"), checkpoint("1001"), status("processRecords")]


def test_lineage_lookup_is_retried_then_ends_the_process(env: Env) -> None:
    calls: list[str] = []

    def failing(shard_id: str) -> list[str | None]:
        calls.append(shard_id)
        raise ClientError(
            {"Error": {"Code": "LimitExceededException", "Message": "slow down"}}, "ListShards"
        )

    processor = env.processor(lineage_attempts=3)
    processor._parents_of = failing
    talk = converse(processor, [initialize()])
    assert talk.messages == []
    assert talk.exit_code == EXIT_PROCESSOR_ERROR
    assert calls == [SHARD] * 3
    assert len(env.sleeps) == 2


# -- status -----------------------------------------------------------------------------------


def test_progress_is_published_with_checkpoint_arrival_and_pacer_state(env: Env) -> None:
    processor = env.processor()
    batch = process_records(
        record(put("p1", "u1", 1), "1001"), record(put("p2", "u2", 2), "1002"), behind=1234
    )
    converse(processor, [initialize(), batch, reply("1002"), {"action": "leaseLost"}])
    reports = env.status.reports
    assert [r.state for r in reports][:2] == ["processing", "processing"]
    after_batch = reports[-2]
    assert after_batch == ShardProgress(
        shard_id=SHARD,
        replica="eu",
        owner="worker-a/1",
        state="processing",
        checkpoint_sequence="1002",
        checkpoint_subsequence=0,
        applied_sequence="1002",
        applied_arrival_ms=ARRIVAL_MS + 2,
        millis_behind_latest=1234,
        records=2,
        applied=2,
        pacer={"acquired_wcu": 2},
        updated_ms=after_batch.updated_ms,
    )
    assert reports[-1].state == "lease_lost"


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("chunk_records", 0), ("apply_attempts", 0), ("backoff_max_s", 0.01), ("replica", "")],
)
def test_config_names_the_field_it_refuses(field_name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field_name):
        ProcessorConfig(**{"replica": "eu", "stream": "s", field_name: value})


def test_processor_satisfies_the_protocol(env: Env) -> None:
    processor: RecordProcessor = env.processor()
    assert processor.version == 3
