"""Security properties of the consumers and the tools (issue 7, part 2), on the local stack.

1. Consumers write only the tables their configuration names, whatever the record says:
   GIVEN valid records naming a stranger's table, the tombstone table, a replica's table
   names, the KCL lease and status tables, and one record for a configured table;
   WHEN the Lambda handler (through the local event source mapping) and the replica
   processor (through kclpy's KCLProcess, in-process) consume them;
   THEN only the configured tables changed (by exactly the one record), and every other
   record is parked as unauthorized_table.
2. Size and nesting limits are checked before a large input is parsed: a 10 MB record and
   a 10,000-deep one are refused at once with their reasons, allocating far less than
   parsing them would.
3. No credentials in properties files, logs or error messages: with distinctive fake
   keys, the handler (with a poison record, a missing table and a broken configuration),
   a failing `lazyrep replay` and `lazyrep properties` never print or write them.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amazon_kclpy import kcl
from click.testing import CliRunner

from binlog.codec import decode, document, dumps
from binlog.envelope import MAX_RECORD_BYTES, Action
from binlog.errors import Reason, RecordError
from binlog.tables import create_table
from emulators.esm import EventSourceMapping
from emulators.esm_settings import EsmSettings
from emulators.stack import LocalStack
from kcl_consumer.worker import WorkerSettings, build_processor
from lambda_consumer import handler
from lambda_consumer.consumer import build_consumer
from lambda_consumer.settings import ConsumerSettings
from lazyrep.cli_properties import properties
from lazyrep.cli_replay import replay
from lazyrep.reliability.primary import World, direct_client, read_letters
from lazyrep.reliability.workload import SCHEMAS

pytestmark = pytest.mark.wire

REPLICA = "eu"
FAST = EsmSettings(
    batch_size=100,
    function_response_types=("ReportBatchItemFailures",),
    poll_interval_s=0.05,
    shard_discovery_interval_s=0.2,
    retry_backoff_s=0.01,
    retry_backoff_max_s=0.05,
)


def replica_toml(run: str) -> str:
    tables = ", ".join(f'"{run}{name}" = "eu-{run}{name}"' for name in SCHEMAS)
    return (
        f'\n[replicas.{REPLICA}]\nregion = "us-east-1"\nmax_wcu = 100\ndeadline_hours = 20\n'
        f'application_name = "rel-{run}-eu"\ntables = {{ {tables} }}\n'
    )


def envelope(run: str, table: str, n: int, key_name: str = "user_id") -> bytes:
    key = {key_name: {"S": f"sec-{n}"}}
    return dumps(
        document(
            envelope_id=f"sec-{run}-{n}",
            time_ms=1_700_000_000_000 + n,
            action=Action.PUT,
            table=table,
            key=key,
            item={**key, "owned": {"S": "by an attacker"}},
        )
    )


def snapshot(client: Any) -> dict[str, list[dict[str, Any]]]:
    """Every item of every table on the moto server, by table."""
    tables: dict[str, list[dict[str, Any]]] = {}
    pages = client.get_paginator("list_tables").paginate()
    names = [name for page in pages for name in page["TableNames"]]
    for name in names:  # every page: other tests on this stack create tables too
        scans = client.get_paginator("scan").paginate(TableName=name, ConsistentRead=True)
        tables[name] = sorted((i for page in scans for i in page["Items"]), key=repr)
    return tables


@pytest.fixture
def world(stack_env: LocalStack, tmp_path: Path) -> World:
    run = f"s{uuid.uuid4().hex[:6]}"
    created = World.create(run, tmp_path, shards=1, replicas=replica_toml(run))
    dynamodb = direct_client("dynamodb")
    for name, schema in SCHEMAS.items():
        create_table(dynamodb, f"eu-{run}{name}", schema)
    return created


@pytest.fixture
def quiet_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    handler.use(None)
    yield
    handler.use(None)


def hostile_tables(world: World) -> list[str]:
    run = world.run
    app = world.topology.replicas[REPLICA].application_name
    return [
        f"stranger-{run}",
        world.topology.applier.tombstone_table,
        *(f"eu-{run}{name}" for name in SCHEMAS),
        app,
        f"{app}-status",
    ]


def test_consumers_write_only_their_configured_tables(
    world: World, quiet_handler: None, tmp_path: Path
) -> None:
    # GIVEN records naming tables outside the topology, and one for a configured table
    run = world.run
    kinesis = direct_client("kinesis")
    dynamodb = direct_client("dynamodb")
    strangers = hostile_tables(world)
    payloads = [envelope(run, table, n) for n, table in enumerate(strangers)]
    payloads.append(envelope(run, f"{run}users", 999))
    for data in payloads:
        kinesis.put_record(StreamName=world.stream, Data=data, PartitionKey="same-shard")
    before = snapshot(dynamodb)

    # WHEN the Lambda handler consumes them
    handler.use(build_consumer(ConsumerSettings(str(world.path), check_lineage=False)))
    stats = EventSourceMapping(world.stream, handler.handle, FAST).run_until_idle(30)

    # AND the replica processor consumes the same records, in-process through KCLProcess
    shard = kinesis.list_shards(StreamName=world.stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=world.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    processor = build_processor(
        WorkerSettings(str(world.path), REPLICA, status_table=False, worker_id="sec")
    )
    last = records[-1]["SequenceNumber"]
    script = [
        {"action": "initialize", "shardId": shard, "sequenceNumber": "TRIM_HORIZON",
         "subSequenceNumber": 0},
        {"action": "processRecords", "millisBehindLatest": 0, "records": [
            {"action": "record", "data": base64.b64encode(r["Data"]).decode(),
             "partitionKey": r["PartitionKey"], "sequenceNumber": r["SequenceNumber"],
             "subSequenceNumber": 0,
             "approximateArrivalTimestamp": int(r["ApproximateArrivalTimestamp"].timestamp()
                                                * 1000)}
            for r in records]},
        {"action": "checkpoint", "sequenceNumber": last, "subSequenceNumber": 0, "error": None},
    ]  # fmt: skip
    output = io.StringIO()
    kcl.KCLProcess(
        processor,
        input_file=io.StringIO("".join(json.dumps(line) + "\n" for line in script)),
        output_file=output,
        error_file=io.StringIO(),
    ).run()
    after = snapshot(dynamodb)

    # THEN nothing outside the configured tables changed
    assert stats.function_errors == 0
    written = {name for name in after if after[name] != before.get(name)}
    assert written == {f"{run}users", f"eu-{run}users"}
    for name in (f"{run}users", f"eu-{run}users"):
        added = [i for i in after[name] if i not in before.get(name, [])]
        assert [i["user_id"]["S"] for i in added] == ["sec-999"]
    for name in set(strangers) - written:  # eu-<run>users gained the mapped record only
        assert after.get(name) == before.get(name), name
    # AND every stranger's record is parked as unauthorized by each consumer
    letters = read_letters(direct_client("sqs"), world.queue_url)
    by_consumer: dict[str, list[str]] = {}
    for letter_key, letter in letters.items():
        by_consumer.setdefault(letter_key.split("/")[0], []).append(str(letter["reason"]))
    assert by_consumer == {
        "lambda:primary": ["unauthorized_table"] * len(strangers),
        f"kcl:{REPLICA}": ["unauthorized_table"] * len(strangers),
    }
    assert '"checkpoint"' in output.getvalue()


# -- 2. limits before parsing -----------------------------------------------------------------


def measure(data: bytes) -> tuple[RecordError, float, int]:
    """decode's refusal, its seconds, and the peak bytes it allocated meanwhile."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(RecordError) as refused:
            decode(data, None)
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return refused.value, seconds, peak


def test_a_10_mb_record_is_refused_before_it_is_read() -> None:
    data = b'{"format": 1, "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'

    error, seconds, peak = measure(data)

    assert error.reason is Reason.RECORD_TOO_LARGE
    assert str(len(data)) in error.detail
    # Decoding it to text alone would allocate 10 MB; parsing it, more.
    assert peak < 64 * 1024, peak
    assert seconds < 0.05


def test_a_10000_deep_record_is_refused_while_parsing_not_after() -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    # The deepest a record may be: a whole Kinesis record of brackets.
    deepest = b"[" * (MAX_RECORD_BYTES // 2) + b"]" * (MAX_RECORD_BYTES // 2)

    error, seconds, _ = measure(deep)
    worst, worst_seconds, worst_peak = measure(deepest)

    assert error.reason is Reason.TOO_DEEP
    assert worst.reason is Reason.TOO_DEEP
    assert seconds < 0.5
    assert worst_seconds < 1.0
    # Parsed to the bottom, 524,288 nested lists would take 30 MB (56 bytes each and a
    # pointer): the parser stops at the interpreter's recursion limit instead, so the
    # peak is the record's text (1 MiB) and a little more.
    assert worst_peak < 2 * MAX_RECORD_BYTES + 256 * 1024, worst_peak


def test_dynamodb_nesting_deeper_than_32_is_refused_with_its_reason() -> None:
    value: dict[str, Any] = {"S": "bottom"}
    for _ in range(40):
        value = {"M": {"a": value}}
    data = dumps(
        document(
            envelope_id="deep",
            time_ms=1,
            action=Action.PUT,
            table="t",
            key={"pk": {"S": "a"}},
            item={"pk": {"S": "a"}, "deep": value},
        )
    )

    error, _, _ = measure(data)

    assert error.reason is Reason.TOO_DEEP


# -- 3. no credentials anywhere ---------------------------------------------------------------

ACCESS_KEY = "AKIAFAKEDISTINCT1234"
SECRET_KEY = "fAkEsEcReTdIsTiNcT/9876543210abcdefGHIJ"


class Collect(logging.Handler):
    """Every log line, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


@pytest.fixture
def collected() -> Iterator[Collect]:
    collect = Collect()
    loggers = [logging.getLogger(), logging.getLogger(handler.logger.name)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(collect)
        logger.setLevel(logging.INFO)
    yield collect
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(collect)
        logger.setLevel(level)


def assert_no_keys(where: str, text: str) -> None:
    assert ACCESS_KEY not in text, f"the access key id appears in {where}"
    assert SECRET_KEY not in text, f"the secret key appears in {where}"
    assert SECRET_KEY[:12] not in text, f"part of the secret key appears in {where}"


def test_no_credentials_in_logs_errors_or_properties(
    world: World,
    fake_keys: None,
    quiet_handler: None,
    collected: Collect,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run = world.run
    kinesis = direct_client("kinesis")
    # A poison record, a record for a table the topology names but DynamoDB lacks
    # (a permanent error, parked with DynamoDB's message), and a good one.
    missing = tmp_path / "missing.toml"
    missing.write_text(
        world.path.read_text()
        + f'\n[tables.{run}gone]\npartition_key = {{ name = "cart_id", type = "S" }}\n',
        encoding="utf-8",
    )
    for data in (
        b"\xffpoison",
        envelope(run, f"{run}gone", 1, "cart_id"),
        envelope(run, f"{run}users", 2),
    ):
        kinesis.put_record(StreamName=world.stream, Data=data, PartitionKey="pk")

    # WHEN the handler consumes them, then runs with a broken configuration
    handler.use(build_consumer(ConsumerSettings(str(missing), check_lineage=False)))
    stats = EventSourceMapping(world.stream, handler.handle, FAST).run_until_idle(30)
    handler.use(None)
    broken = tmp_path / "broken.toml"
    broken.write_text("[stream]\nname = 1\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAZYREP_TOPOLOGY", str(broken))
        with pytest.raises(Exception, match="stream"):
            handler.handle({"Records": []}, None)
    # AND a replay that fails (no such stream), and properties for the topology
    other = tmp_path / "nostream.toml"
    other.write_text(world.path.read_text().replace(world.stream, f"nostream-{run}"))
    runner = CliRunner()
    replayed = runner.invoke(replay, ["--topology", str(other), "--from-start", "--no-progress"])
    out = tmp_path / "props"
    made = runner.invoke(properties, ["--topology", str(world.path), "--out", str(out)])

    # THEN the keys appear nowhere: logs, stdout/stderr, CLI output, dead letters, files
    assert stats.function_errors == 0
    assert replayed.exit_code != 0
    assert made.exit_code == 0, made.output
    letters = read_letters(direct_client("sqs"), world.queue_url)
    reasons = sorted(str(v["reason"]) for v in letters.values())
    assert reasons == ["ResourceNotFoundException", "not_json"]
    captured = capfd.readouterr()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files
    assert collected.lines
    for where, text in (
        ("logs", "\n".join(collected.lines)),
        ("stdout", captured.out),
        ("stderr", captured.err),
        ("replay output", replayed.output + str(replayed.exception or "")),
        ("properties output", made.output),
        ("dead letters", json.dumps([v["detail"] for v in letters.values()])),
        *((str(p), p.read_text(errors="replace")) for p in files),
    ):
        assert_no_keys(where, text)
