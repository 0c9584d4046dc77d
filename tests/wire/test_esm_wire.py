"""The local event source mapping against kinesalite and moto's SQS, over HTTP.

Each test drives small handlers (one that records, one that raises on a poison record,
one that reports a batch item failure) and asserts exact sequence numbers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from binlog.reader import read_shard, shards_in_lineage_order
from emulators.esm import (
    EsmSettings,
    EventSourceMapping,
    QueueNotFoundError,
    StartingPosition,
    StreamNotFoundError,
)
from emulators.stack import LocalStack
from lazyrep.cli_lambda import lambda_

pytestmark = pytest.mark.wire

FAST: dict[str, Any] = {
    "poll_interval_s": 0.01,
    "shard_discovery_interval_s": 0.02,
    "retry_backoff_s": 0.0,
    "retry_backoff_max_s": 0.0,
}
RBIF = ("ReportBatchItemFailures",)


class Recorder:
    """A handler that records each invocation: (shard id, sequence numbers), event, context."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Mapping[str, Any] | None:
        shard = event["Records"][0]["eventID"].split(":")[0]
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        with self._lock:
            self.calls.append((shard, seqs))
            self.events.append(event)
            self.contexts.append(context)
        return self.respond(shard, seqs)

    def respond(self, shard: str, seqs: list[str]) -> Mapping[str, Any] | None:
        return None

    def delivered(self, shard: str) -> list[str]:
        return [s for call_shard, seqs in self.calls if call_shard == shard for s in seqs]

    def batches(self) -> list[list[str]]:
        return [seqs for _, seqs in self.calls]


class RaiseOn(Recorder):
    """Raises whenever the batch holds the poison record."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def respond(self, shard: str, seqs: list[str]) -> Mapping[str, Any] | None:
        if self.poison in seqs:
            raise ValueError("poison record")
        return None


class ReportFailure(Recorder):
    """Reports `failed` as the batch item failure the first `times` times it is delivered."""

    def __init__(self, failed: str, times: int = 1) -> None:
        super().__init__()
        self.failed = failed
        self.times = times

    def respond(self, shard: str, seqs: list[str]) -> Mapping[str, Any] | None:
        if self.failed in seqs and self.times > 0:
            self.times -= 1
            return {"batchItemFailures": [{"itemIdentifier": self.failed}]}
        return {"batchItemFailures": []}


def wait_active(kinesis: Any, stream: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.01)
    raise AssertionError(f"{stream} not ACTIVE")


def put(kinesis: Any, stream: str, n: int, prefix: str = "k", keys: int = 0) -> list[str]:
    """Write n records (keys k0..k{keys-1} round robin, else one key each); their numbers."""
    entries = [
        {"PartitionKey": f"{prefix}{i % keys if keys else i}", "Data": f"{prefix}-{i}".encode()}
        for i in range(n)
    ]
    reply = kinesis.put_records(StreamName=stream, Records=entries)
    assert reply["FailedRecordCount"] == 0
    return [r["SequenceNumber"] for r in reply["Records"]]


def contents(kinesis: Any, stream: str) -> dict[str, list[str]]:
    return {
        s["ShardId"]: [r.sequence_number for r in read_shard(kinesis, stream, s["ShardId"])]
        for s in shards_in_lineage_order(kinesis, stream)
    }


@pytest.fixture
def kinesis(stack_env: LocalStack) -> Any:
    return boto3.client("kinesis")


@pytest.fixture
def sqs(stack_env: LocalStack) -> Any:
    return boto3.client("sqs")


@pytest.fixture
def make_stream(kinesis: Any) -> Iterator[Any]:
    made: list[str] = []

    def make(shards: int = 1) -> str:
        name = f"esm-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        wait_active(kinesis, name)
        made.append(name)
        return name

    yield make
    for name in made:
        kinesis.delete_stream(StreamName=name)


@pytest.fixture
def queue(sqs: Any) -> tuple[str, str]:
    """(name, url) of a fresh SQS queue for on-failure records."""
    name = f"esm-failures-{uuid.uuid4().hex[:8]}"
    return name, sqs.create_queue(QueueName=name)["QueueUrl"]


def messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in reply.get("Messages", [])]


def test_a_success_handler_gets_every_record_once_in_shard_order(
    kinesis: Any, make_stream: Any
) -> None:
    # GIVEN 300 records over 30 keys in a 3-shard stream
    stream = make_stream(3)
    put(kinesis, stream, 300, keys=30)
    recorder = Recorder()
    # WHEN the mapping runs until idle with batches of at most 40
    stats = EventSourceMapping(stream, recorder, EsmSettings(batch_size=40, **FAST)).run_until_idle(
        timeout_s=20
    )
    # THEN each shard's records arrived exactly once, in shard order, in batches of <= 40
    expected = contents(kinesis, stream)
    assert {shard: recorder.delivered(shard) for shard in expected} == expected
    assert all(len(seqs) <= 40 for seqs in recorder.batches())
    assert stats.records_delivered == 300
    assert stats.invocations == len(recorder.calls)
    assert (stats.retries, stats.function_errors) == (0, 0)
    assert {s.shard_id: s.checkpoint for s in stats.shards} == {
        shard: seqs[-1] for shard, seqs in expected.items()
    }
    assert all(s.millis_behind_latest == 0 and s.iterator_age_ms == 0 for s in stats.shards)


def test_events_and_context_have_aws_shape(kinesis: Any, make_stream: Any) -> None:
    stream = make_stream(1)
    reply = kinesis.put_record(StreamName=stream, PartitionKey="pk-1", Data=b'{"a": 1}')
    stored = kinesis.get_records(
        ShardIterator=kinesis.get_shard_iterator(
            StreamName=stream, ShardId=reply["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    )["Records"][0]
    recorder = Recorder()
    settings = EsmSettings(function_name="applier", function_timeout_s=30, **FAST)
    EventSourceMapping(stream, recorder, settings).run_until_idle(timeout_s=10)
    assert recorder.events == [
        {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": "pk-1",
                        "sequenceNumber": reply["SequenceNumber"],
                        "data": base64.b64encode(b'{"a": 1}').decode(),
                        "approximateArrivalTimestamp": round(
                            stored["ApproximateArrivalTimestamp"].timestamp(), 3
                        ),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{reply['ShardId']}:{reply['SequenceNumber']}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::000000000000:role/applier-role",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
                }
            ]
        }
    ]
    context = recorder.contexts[0]
    assert context.function_name == "applier"
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:000000000000:function:applier"
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


def test_report_batch_item_failures_resumes_from_the_reported_record(
    kinesis: Any, make_stream: Any
) -> None:
    # GIVEN 10 records and a handler that reports the fifth failed once
    stream = make_stream(1)
    seqs = put(kinesis, stream, 10)
    handler = ReportFailure(seqs[4])
    settings = EsmSettings(batch_size=10, function_response_types=RBIF, **FAST)
    # WHEN the mapping runs
    stats = EventSourceMapping(stream, handler, settings).run_until_idle(timeout_s=10)
    # THEN the batch is delivered again from the fifth record on, and only that
    assert handler.batches() == [seqs, seqs[4:]]
    assert (stats.partial_failures, stats.retries, stats.records_delivered) == (1, 1, 16)


def test_a_raising_handler_is_bisected_down_to_the_poison_record_which_goes_to_sqs(
    kinesis: Any, sqs: Any, make_stream: Any, queue: tuple[str, str]
) -> None:
    # GIVEN 8 records, the sixth poisonous; bisect on, 2 retries, an SQS destination
    stream = make_stream(1)
    s = put(kinesis, stream, 8)
    handler = RaiseOn(s[5])
    settings = EsmSettings(
        batch_size=8,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=2,
        on_failure_destination=queue[0],
        function_name="applier",
        **FAST,
    )
    with EventSourceMapping(stream, handler, settings) as esm:
        # WHEN the mapping drains the stream
        stats = esm.drain(timeout_s=10)
        # THEN halves ran in order down to the poison record, retried alone twice
        assert handler.batches() == [
            s,
            s[:4],
            s[4:],
            s[4:6],
            s[4:5],
            s[5:6],
            s[5:6],
            s[5:6],
            s[6:],
        ]
        assert (stats.bisections, stats.retries, stats.on_failure_records) == (3, 2, 1)
        # AND processing moved on past it
        more = put(kinesis, stream, 2)
        esm.drain(timeout_s=10)
        assert handler.batches()[-1] == more
    # AND SQS holds one on-failure record in AWS's shape
    [body] = messages(sqs, queue[1])
    arrivals = {
        r.sequence_number: r.arrival for r in read_shard(kinesis, stream, "shardId-000000000000")
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    assert uuid.UUID(body["requestContext"]["requestId"])
    arrival = arrivals[s[5]].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert body == {
        "requestContext": {
            "requestId": body["requestContext"]["requestId"],
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:applier",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": body["timestamp"],
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": s[5],
            "endSequenceNumber": s[5],
            "approximateArrivalOfFirstRecord": arrival,
            "approximateArrivalOfLastRecord": arrival,
            "batchSize": 1,
            "streamArn": f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
        },
    }


def test_without_bisect_the_whole_batch_goes_to_sqs_after_its_retries(
    kinesis: Any, sqs: Any, make_stream: Any, queue: tuple[str, str]
) -> None:
    stream = make_stream(1)
    s = put(kinesis, stream, 6)
    handler = RaiseOn(s[1])
    settings = EsmSettings(
        batch_size=4, maximum_retry_attempts=1, on_failure_destination=queue[1], **FAST
    )
    EventSourceMapping(stream, handler, settings).run_until_idle(timeout_s=10)
    assert handler.batches() == [s[:4], s[:4], s[4:]]
    [body] = messages(sqs, queue[1])
    info = body["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        s[0],
        s[3],
        4,
    )
    assert body["requestContext"]["approximateInvokeCount"] == 2


def test_after_split_shard_the_children_get_records_only_after_all_of_the_parents(
    kinesis: Any, make_stream: Any
) -> None:
    # GIVEN a 1-shard stream with 40 records, and a handler whose first call splits the
    # shard and writes 20 more records (which land in the children)
    stream = make_stream(1)
    put(kinesis, stream, 40)
    writer = boto3.client("kinesis")
    order: list[str] = []

    class Splitter(Recorder):
        def respond(self, shard: str, seqs: list[str]) -> None:
            order.append(shard)
            if len(self.calls) == 1:
                writer.split_shard(
                    StreamName=stream,
                    ShardToSplit="shardId-000000000000",
                    NewStartingHashKey=str(2**127),
                )
                wait_active(writer, stream)
                put(writer, stream, 20, prefix="child")

    handler = Splitter()
    # WHEN the mapping runs until idle
    stats = EventSourceMapping(stream, handler, EsmSettings(batch_size=5, **FAST)).run_until_idle(
        timeout_s=20
    )
    # THEN every record arrived once in shard order, and no child call came before the
    # parent's last
    expected = contents(kinesis, stream)
    assert set(expected) == {"shardId-000000000000", "shardId-000000000001", "shardId-000000000002"}
    assert {shard: handler.delivered(shard) for shard in expected} == expected
    assert sum(map(len, expected.values())) == 60
    last_parent = max(i for i, shard in enumerate(order) if shard == "shardId-000000000000")
    first_child = min(i for i, shard in enumerate(order) if shard != "shardId-000000000000")
    assert last_parent < first_child
    assert {s.shard_id: s.state for s in stats.shards}["shardId-000000000000"] == "ended"


def test_after_merge_shards_the_child_waits_for_both_parents(
    kinesis: Any, make_stream: Any
) -> None:
    stream = make_stream(2)
    put(kinesis, stream, 40)
    writer = boto3.client("kinesis")

    class Merger(Recorder):
        def respond(self, shard: str, seqs: list[str]) -> None:
            if len(self.calls) == 1:
                writer.merge_shards(
                    StreamName=stream,
                    ShardToMerge="shardId-000000000000",
                    AdjacentShardToMerge="shardId-000000000001",
                )
                wait_active(writer, stream)
                put(writer, stream, 10, prefix="merged")

    handler = Merger()
    EventSourceMapping(stream, handler, EsmSettings(batch_size=3, **FAST)).run_until_idle(20)
    expected = contents(kinesis, stream)
    assert {shard: handler.delivered(shard) for shard in expected} == expected
    child = "shardId-000000000002"
    assert len(expected[child]) == 10
    shards = [shard for shard, _ in handler.calls]
    assert shards.index(child) > max(i for i, s in enumerate(shards) if s != child)


def test_a_restart_with_a_state_file_resumes_where_it_stopped(
    kinesis: Any, make_stream: Any, tmp_path: Path
) -> None:
    # GIVEN a run that processed two batches of 3 and is stuck retrying the third forever
    stream = make_stream(1)
    s = put(kinesis, stream, 10)
    state = tmp_path / "esm-state.json"
    settings = EsmSettings(batch_size=3, **FAST)
    stuck = RaiseOn(s[6])
    first = EventSourceMapping(stream, stuck, settings, state_file=state)
    first.start()
    deadline = time.monotonic() + 10
    while first.stats().retries < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.stop()
    assert stuck.batches()[:3] == [s[0:3], s[3:6], s[6:9]]
    # WHEN a new mapping starts from the same state file with a working handler
    recorder = Recorder()
    EventSourceMapping(stream, recorder, settings, state_file=state).run_until_idle(10)
    # THEN it delivers exactly what was not yet processed
    assert recorder.batches() == [s[6:9], s[9:]]
    # AND a third run delivers only what was written since
    more = put(kinesis, stream, 2)
    again = Recorder()
    EventSourceMapping(stream, again, settings, state_file=state).run_until_idle(10)
    assert again.batches() == [more]


def test_latest_delivers_only_records_written_after_the_start(
    kinesis: Any, make_stream: Any
) -> None:
    stream = make_stream(2)
    put(kinesis, stream, 5)
    recorder = Recorder()
    settings = EsmSettings(starting_position=StartingPosition.LATEST, **FAST)
    with EventSourceMapping(stream, recorder, settings) as esm:
        new = put(kinesis, stream, 4)
        esm.drain(timeout_s=10)
    assert sorted(s for batch in recorder.batches() for s in batch) == sorted(new)


def test_at_timestamp_starts_at_the_first_record_written_since(
    kinesis: Any, make_stream: Any
) -> None:
    stream = make_stream(1)
    put(kinesis, stream, 3)
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    new = put(kinesis, stream, 2)
    recorder = Recorder()
    settings = EsmSettings(
        starting_position=StartingPosition.AT_TIMESTAMP, starting_position_timestamp=since, **FAST
    )
    EventSourceMapping(stream, recorder, settings).run_until_idle(timeout_s=10)
    assert recorder.batches() == [new]


def test_the_batching_window_gathers_records_into_one_invocation(
    kinesis: Any, make_stream: Any
) -> None:
    stream = make_stream(1)
    recorder = Recorder()
    settings = EsmSettings(batch_size=100, maximum_batching_window_in_seconds=1, **FAST)
    with EventSourceMapping(stream, recorder, settings) as esm:
        seqs = [put(kinesis, stream, 1)[0] for _ in range(4)]
        esm.drain(timeout_s=10)
    assert recorder.batches() == [seqs]


def test_a_missing_stream_or_queue_is_a_clear_error(make_stream: Any) -> None:
    with pytest.raises(StreamNotFoundError, match="stream 'no-such-stream' not found at http"):
        EventSourceMapping("no-such-stream", Recorder(), EsmSettings(**FAST)).start()
    stream = make_stream(1)
    settings = EsmSettings(on_failure_destination="no-such-queue", **FAST)
    with pytest.raises(QueueNotFoundError, match="'no-such-queue' not found"):
        EventSourceMapping(stream, Recorder(), settings).start()


# The CLI ----------------------------------------------------------------------------

CLI_CALLS: list[int] = []


def cli_handler(event: dict[str, Any], context: Any) -> None:
    """A handler the CLI imports by name."""
    CLI_CALLS.append(len(event["Records"]))


@pytest.fixture
def topology_file(tmp_path: Path) -> Any:
    def write(stream: str) -> Path:
        path = tmp_path / "topology.toml"
        path.write_text(
            f'[stream]\nname = "{stream}"\nregion = "us-east-1"\n\n'
            '[tables.users]\npartition_key = { name = "user_id", type = "S" }\n'
        )
        return path

    return write


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Invoke `lazyrep lambda`, keeping its logging setup and environment out of other tests."""
    monkeypatch.setenv("LAZYREP_TOPOLOGY", "unset")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(lambda_, list(args))

    yield invoke
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_runs_until_idle_and_prints_statistics(
    kinesis: Any, make_stream: Any, topology_file: Any, cli: Any, tmp_path: Path
) -> None:
    stream = make_stream(2)
    put(kinesis, stream, 25)
    CLI_CALLS.clear()
    result = cli(
        "run",
        "--topology", str(topology_file(stream)),
        "--handler", f"{__name__}:cli_handler",
        "--poll-interval", "0.01",
        "--state-file", str(tmp_path / "state.json"),
        "--until-idle",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["records_delivered"] == 25 == sum(CLI_CALLS)
    assert json.loads((tmp_path / "state.json").read_text())["stream_arn"].endswith(stream)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--handler", "no_such_module.handle"], "cannot import 'no_such_module'"),
        (["--handler", "json.nothing_here"], "'json.nothing_here' is not a callable"),
        (["--max-record-age", "30"], "maximum_record_age_in_seconds must be"),
        (["--on-failure-queue", "no-such-queue"], "on-failure queue 'no-such-queue' not found"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(
    make_stream: Any, topology_file: Any, cli: Any, args: list[str], message: str
) -> None:
    stream = make_stream(1)
    result = cli("run", "--topology", str(topology_file(stream)), "--until-idle", *args)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("lazyrep: error: ")
    assert message in line


def test_cli_names_an_unknown_stream(topology_file: Any, cli: Any, stack_env: LocalStack) -> None:
    result = cli(
        "run", "--topology", str(topology_file("nope")), "--handler", f"{__name__}:cli_handler"
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"lazyrep: error: stream 'nope' not found at {stack_env.endpoints.kinesis}"
    )
