"""The fault proxy between boto3 and the moto server, over loopback HTTP.

Each fault is shown as the client sees it *and* as the server's state shows it:
a cut before forwarding writes nothing, a cut after forwarding writes, a partial
failure leaves exactly the failed records out of the stream.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from moto.server import ThreadedMotoServer

from emulators.faultproxy import (
    Fault,
    FaultProxy,
    FaultProxyControl,
    FaultProxyProcess,
    Rule,
)

pytestmark = pytest.mark.wire

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
SHARD = "shardId-000000000000"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    # stop() only ends serve_forever(); close the listening socket too (ResourceWarning).
    assert server._server is not None
    server._server.server_close()


@pytest.fixture
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url, seed=42) as running:
        yield running


def _client(service: str, url: str, config: Config | None = None) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config or Config(retries={"mode": "standard", "max_attempts": 5}),
    )


@pytest.fixture
def clients(proxy: FaultProxy, moto_url: str) -> Iterator[dict[str, Any]]:
    """Clients through the proxy (with and without retries) and one straight to moto."""
    made = {
        "kinesis": _client("kinesis", proxy.url),
        "kinesis_once": _client("kinesis", proxy.url, NO_RETRIES),
        "kinesis_direct": _client("kinesis", moto_url),
        "dynamodb": _client("dynamodb", proxy.url),
        "dynamodb_once": _client("dynamodb", proxy.url, NO_RETRIES),
        "dynamodb_direct": _client("dynamodb", moto_url),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def stream(clients: dict[str, Any]) -> str:
    name = f"fp-{uuid.uuid4().hex[:12]}"
    direct = clients["kinesis_direct"]
    direct.create_stream(StreamName=name, ShardCount=1)
    direct.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    return name


@pytest.fixture
def table(clients: dict[str, Any]) -> str:
    name = f"fp-{uuid.uuid4().hex[:12]}"
    clients["dynamodb_direct"].create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _stream_data(kinesis: Any, stream: str) -> list[bytes]:
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=SHARD, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]]


def _records(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"Data": f"{prefix}{i}".encode(), "PartitionKey": f"pk{i}"} for i in range(n)]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_passthrough_keeps_bodies_byte_exact(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    # GIVEN every byte value and a record near the 1 MiB limit
    payloads = [bytes(range(256)), bytes(range(256))[::-1] * 3900]
    # WHEN they go through the proxy with no rules
    for data in payloads:
        clients["kinesis"].put_record(StreamName=stream, Data=data, PartitionKey="p")
    # THEN moto stored exactly those bytes, and the proxy counted the requests
    assert _stream_data(clients["kinesis_direct"], stream) == payloads
    assert proxy.stats.requests("PutRecord") == 2
    assert proxy.stats.faults() == 0


def test_throttle_without_retries_shows_the_code(
    proxy: FaultProxy, clients: dict[str, Any], stream: str, table: str
) -> None:
    proxy.set_rules(
        [
            Rule(Fault.THROTTLE, "PutRecords", count=1),
            Rule(Fault.THROTTLE, "DescribeStream", count=1, error_code="LimitExceededException"),
            Rule(Fault.THROTTLE, "DynamoDB_20120810.UpdateItem", count=1),
            Rule(Fault.THROTTLE, "GetItem", count=1, error_code="ThrottlingException"),
        ]
    )
    kinesis, dynamodb = clients["kinesis_once"], clients["dynamodb_once"]
    with pytest.raises(ClientError) as put:
        kinesis.put_records(StreamName=stream, Records=_records(2))
    assert _code(put) == ("ProvisionedThroughputExceededException", 400)
    assert isinstance(put.value, kinesis.exceptions.ProvisionedThroughputExceededException)
    with pytest.raises(ClientError) as describe:
        kinesis.describe_stream(StreamName=stream)
    assert _code(describe) == ("LimitExceededException", 400)
    key = {"pk": {"S": "k"}}
    with pytest.raises(ClientError) as update:
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "1"}},
        )
    assert _code(update) == ("ProvisionedThroughputExceededException", 400)
    assert isinstance(update.value, dynamodb.exceptions.ProvisionedThroughputExceededException)
    with pytest.raises(ClientError) as get:
        dynamodb.get_item(TableName=table, Key=key)
    assert _code(get) == ("ThrottlingException", 400)
    # Nothing reached the server; every rule is spent now.
    assert _stream_data(clients["kinesis_direct"], stream) == []
    assert "Item" not in clients["dynamodb_direct"].get_item(TableName=table, Key=key)
    stats = proxy.stats
    assert stats.faults(Fault.THROTTLE) == 4
    assert stats.faults(Fault.THROTTLE, "Kinesis_20131202.*") == 2
    assert stats.requests("UpdateItem") == 1


def test_botocore_retries_throttles_and_5xx(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    # GIVEN the next 2 PutRecords throttled, then the next 500 on DescribeStreamSummary
    proxy.set_rules(
        [
            Rule(Fault.THROTTLE, "PutRecords", count=2),
            Rule(Fault.SERVER_ERROR, "DescribeStreamSummary", count=1),
        ]
    )
    # WHEN the client retries (standard mode)
    answer = clients["kinesis"].put_records(StreamName=stream, Records=_records(3))
    summary = clients["kinesis"].describe_stream_summary(StreamName=stream)
    # THEN both calls succeed after the injected failures
    assert answer["FailedRecordCount"] == 0
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert summary["ResponseMetadata"]["RetryAttempts"] == 1
    assert _stream_data(clients["kinesis_direct"], stream) == [b"r0", b"r1", b"r2"]
    stats = proxy.stats
    assert (stats.requests("PutRecords"), stats.faults(Fault.THROTTLE, "PutRecords")) == (3, 2)
    assert stats.faults(Fault.SERVER_ERROR) == 1


def test_server_error_without_retries(
    proxy: FaultProxy, clients: dict[str, Any], stream: str, table: str
) -> None:
    proxy.set_rules([Rule(Fault.SERVER_ERROR, "PutRecord"), Rule(Fault.SERVER_ERROR, "PutItem")])
    with pytest.raises(ClientError) as put:
        clients["kinesis_once"].put_record(StreamName=stream, Data=b"x", PartitionKey="p")
    assert _code(put) == ("InternalFailure", 500)
    with pytest.raises(ClientError) as item:
        clients["dynamodb_once"].put_item(TableName=table, Item={"pk": {"S": "a"}})
    assert _code(item) == ("InternalServerError", 500)
    assert clients["dynamodb_direct"].scan(TableName=table)["Count"] == 0


def test_partial_failure_really_leaves_the_failed_records_out(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    # GIVEN 30% of PutRecords calls fail 20% of their records
    proxy.set_rules(
        [Rule(Fault.PARTIAL_FAILURE, "PutRecords", probability=0.3, failed_fraction=0.2)]
    )
    kinesis = clients["kinesis_once"]
    expected: list[bytes] = []
    failed_total = 0
    # WHEN 20 calls of 10 records are made
    for call in range(20):
        records = _records(10, prefix=f"c{call}-")
        answer = kinesis.put_records(StreamName=stream, Records=records)
        entries = answer["Records"]
        failed = [i for i, e in enumerate(entries) if "ErrorCode" in e]
        # THEN each answer is well formed: 0 or 2 failed, counted right
        assert len(entries) == 10
        assert answer["FailedRecordCount"] == len(failed)
        assert len(failed) in (0, 2)
        assert all(
            entries[i]["ErrorCode"] == "ProvisionedThroughputExceededException" for i in failed
        )
        failed_total += len(failed)
        expected += [r["Data"] for i, r in enumerate(records) if i not in failed]
    # AND the stream holds exactly the records reported written, in order
    assert _stream_data(clients["kinesis_direct"], stream) == expected
    stats = proxy.stats
    assert stats.faults(Fault.PARTIAL_FAILURE) == failed_total // 2
    assert 2 <= stats.faults(Fault.PARTIAL_FAILURE) <= 12  # 30% of 20, seeded
    assert stats.records_failed("PutRecords") == failed_total


def test_partial_failure_of_every_record_forwards_nothing(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    proxy.set_rules([Rule(Fault.PARTIAL_FAILURE, "PutRecords", failed_fraction=1.0, count=1)])
    answer = clients["kinesis_once"].put_records(StreamName=stream, Records=_records(4))
    assert answer["FailedRecordCount"] == 4
    assert _stream_data(clients["kinesis_direct"], stream) == []
    assert proxy.stats.records_failed() == 4


def test_batch_write_partial_failure_returns_unprocessed_items(
    proxy: FaultProxy, clients: dict[str, Any], table: str
) -> None:
    proxy.set_rules([Rule(Fault.PARTIAL_FAILURE, "BatchWriteItem", failed_indices=(0, 5))])
    requests = [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}} for i in range(8)]
    answer = clients["dynamodb_once"].batch_write_item(RequestItems={table: requests})
    assert answer["UnprocessedItems"] == {table: [requests[0], requests[5]]}
    stored = clients["dynamodb_direct"].scan(TableName=table)["Items"]
    assert sorted(i["pk"]["S"] for i in stored) == [f"k{i}" for i in (1, 2, 3, 4, 6, 7)]
    assert proxy.stats.records_failed("BatchWriteItem") == 2


@pytest.mark.parametrize("reset", [True, False])
def test_cut_before_forwarding_writes_nothing(
    proxy: FaultProxy, clients: dict[str, Any], stream: str, reset: bool
) -> None:
    proxy.set_rules([Rule(Fault.CUT_BEFORE, "PutRecords", count=1, reset=reset)])
    with pytest.raises(ConnectionClosedError):
        clients["kinesis_once"].put_records(StreamName=stream, Records=_records(3))
    assert _stream_data(clients["kinesis_direct"], stream) == []
    # The client's pool recovers: the next call goes through.
    clients["kinesis_once"].put_records(StreamName=stream, Records=_records(1))
    assert proxy.stats.faults(Fault.CUT_BEFORE) == 1


@pytest.mark.parametrize("reset", [True, False])
def test_cut_after_forwarding_writes_but_the_client_sees_a_dropped_connection(
    proxy: FaultProxy, clients: dict[str, Any], stream: str, reset: bool
) -> None:
    proxy.set_rules([Rule(Fault.CUT_AFTER, "PutRecords", count=1, reset=reset)])
    with pytest.raises(ConnectionClosedError):
        clients["kinesis_once"].put_records(StreamName=stream, Records=_records(3))
    assert _stream_data(clients["kinesis_direct"], stream) == [b"r0", b"r1", b"r2"]
    assert proxy.stats.faults(Fault.CUT_AFTER, "PutRecords") == 1


def test_cut_after_with_retries_writes_twice(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    """Why consumers must be idempotent: the retry of an acted-on request duplicates it."""
    proxy.set_rules([Rule(Fault.CUT_AFTER, "PutRecord", count=1)])
    clients["kinesis"].put_record(StreamName=stream, Data=b"once", PartitionKey="p")
    assert _stream_data(clients["kinesis_direct"], stream) == [b"once", b"once"]


def test_delays(proxy: FaultProxy, clients: dict[str, Any], stream: str, moto_url: str) -> None:
    proxy.set_rules([Rule(Fault.DELAY, "ListStreams", delay_ms=300, count=1)])
    started = time.monotonic()
    clients["kinesis_once"].list_streams()
    assert time.monotonic() - started >= 0.3
    # A response delayed past the client's read timeout: the server acted anyway.
    proxy.set_rules([Rule(Fault.DELAY_RESPONSE, "PutRecord", delay_ms=1500, count=1)])
    impatient = _client(
        "kinesis", proxy.url, Config(read_timeout=0.3, retries={"total_max_attempts": 1})
    )
    try:
        with pytest.raises(ReadTimeoutError):
            impatient.put_record(StreamName=stream, Data=b"late", PartitionKey="p")
    finally:
        impatient.close()
    assert _stream_data(clients["kinesis_direct"], stream) == [b"late"]
    assert proxy.stats.faults(Fault.DELAY) == 1
    assert proxy.stats.faults(Fault.DELAY_RESPONSE) == 1


def test_seeded_probabilities_repeat(moto_url: str, stream: str) -> None:
    outcomes = []
    for _ in range(2):
        with FaultProxy(moto_url, seed=5) as proxy:
            proxy.set_rules([Rule(Fault.THROTTLE, "DescribeStreamSummary", probability=0.5)])
            kinesis = _client("kinesis", proxy.url, NO_RETRIES)
            seen = []
            for _ in range(20):
                try:
                    kinesis.describe_stream_summary(StreamName=stream)
                    seen.append("ok")
                except ClientError:
                    seen.append("throttled")
            kinesis.close()
            outcomes.append(seen)
            assert proxy.stats.faults() == seen.count("throttled")
    assert outcomes[0] == outcomes[1]
    assert 3 <= outcomes[0].count("throttled") <= 17


def test_keep_alive_and_chunked_requests(proxy: FaultProxy) -> None:
    """Several requests on one connection, one of them chunked, all answered."""
    port = int(proxy.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Content-Type": "application/x-amz-json-1.1",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/kinesis/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    try:
        sockets = set()
        for chunked in (False, True, False):
            body: Any = iter([b"{", b"}"]) if chunked else b"{}"
            conn.request("POST", "/", body=body, headers=headers, encode_chunked=chunked)
            sockets.add(id(conn.sock))
            response = conn.getresponse()
            assert response.status == 200
            assert "StreamNames" in json.loads(response.read())
        assert len(sockets) == 1
    finally:
        conn.close()
    assert proxy.stats.requests("ListStreams") == 3


def test_upstream_down_is_a_502() -> None:
    with FaultProxy("http://127.0.0.1:9", seed=0) as proxy:
        kinesis = _client("kinesis", proxy.url, NO_RETRIES)
        try:
            with pytest.raises(ClientError) as info:
                kinesis.list_streams()
        finally:
            kinesis.close()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502


def test_rules_change_while_clients_run(
    proxy: FaultProxy, clients: dict[str, Any], stream: str
) -> None:
    kinesis = clients["kinesis"]

    def put(i: int) -> int:
        return int(
            kinesis.put_records(StreamName=stream, Records=_records(5, f"t{i}-"))[
                "FailedRecordCount"
            ]
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(put, i) for i in range(40)]
        proxy.set_rules([Rule(Fault.PARTIAL_FAILURE, "PutRecords", failed_indices=(0,))])
        time.sleep(0.05)
        proxy.clear()
        failed = sum(f.result() for f in futures)
    assert failed == proxy.stats.records_failed()
    assert len(_stream_data(clients["kinesis_direct"], stream)) == 200 - failed


def test_standalone_process_with_control_endpoint(moto_url: str, stream: str) -> None:
    with FaultProxyProcess(moto_url, seed=3, rules=[Rule(Fault.THROTTLE, "PutRecord")]) as child:
        control = child.control
        assert isinstance(control, FaultProxyControl)
        kinesis = _client("kinesis", child.url, NO_RETRIES)
        try:
            with pytest.raises(ClientError) as info:
                kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="p")
            assert _code(info) == ("ProvisionedThroughputExceededException", 400)
            assert control.stats.faults(Fault.THROTTLE, "PutRecord") == 1
            # Rules set over HTTP take effect at once.
            control.set_rules([{"fault": "partial_failure", "failed_indices": [1]}], seed=9)
            assert control.rules == (Rule(Fault.PARTIAL_FAILURE, failed_indices=(1,)),)
            answer = kinesis.put_records(StreamName=stream, Records=_records(3))
            assert [("ErrorCode" in e) for e in answer["Records"]] == [False, True, False]
            assert control.stats.records_failed() == 1
            with pytest.raises(ValueError, match="probability"):
                control.set_rules([{"fault": "throttle", "probability": 7}])
            with pytest.raises(ValueError, match="unknown rule keys"):
                control._call("POST", "rules", [{"fault": "throttle", "often": True}])
            control.clear()
            control.reset_stats()
            kinesis.put_record(StreamName=stream, Data=b"y", PartitionKey="p")
            stats = control.stats
            assert (stats.requests(), stats.faults()) == (1, 0)
            assert control._call("GET", "health")["upstream"] == moto_url
        finally:
            kinesis.close()
        process = child._process
        assert process is not None
    assert process.returncode == 0  # clean exit on SIGTERM
    assert _stream_data(_client_direct(moto_url), stream) == [b"r0", b"r2", b"y"]


def _client_direct(moto_url: str) -> Any:
    client = _client("kinesis", moto_url)
    client.close()  # closing only drops pooled connections; calls still work
    return client


def test_cli_ready_file(moto_url: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.faultproxy",
            "--upstream",
            moto_url,
            "--ready-file",
            str(ready),
            "--rules",
            '{"rules": [{"fault": "server_error", "operation": "ListStreams"}], "seed": 1}',
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.read_text().strip() == url
        kinesis = _client("kinesis", url, NO_RETRIES)
        try:
            with pytest.raises(ClientError) as info:
                kinesis.list_streams()
        finally:
            kinesis.close()
        assert _code(info) == ("InternalFailure", 500)
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
    assert process.returncode == 0


class _CannedPutRecords(BaseHTTPRequestHandler):
    """A fast stand-in for Kinesis: moto slows down as a stream grows, so it cannot
    tell the proxy's cost from its own."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["Records"])
        entries = [{"SequenceNumber": str(i), "ShardId": SHARD} for i in range(n)]
        body = json.dumps({"FailedRecordCount": 0, "Records": entries}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_throughput_put_records_of_500() -> None:
    """The proxy is not the bottleneck for PutRecords of 500 small records."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _CannedPutRecords)
    serving = threading.Thread(target=upstream.serve_forever, daemon=True)
    serving.start()
    records = [{"Data": b"x" * 60, "PartitionKey": f"p{i}"} for i in range(500)]
    rates: dict[str, list[float]] = {"direct": [], "proxied": []}
    calls_through_proxy = 0
    try:
        with FaultProxy(f"http://127.0.0.1:{upstream.server_address[1]}") as proxy:
            targets = {"direct": f"http://127.0.0.1:{upstream.server_address[1]}"}
            targets["proxied"] = proxy.url
            for _ in range(2):
                for name, url in targets.items():
                    client = _client("kinesis", url, NO_RETRIES)
                    try:
                        client.put_records(StreamName="s", Records=records)
                        calls, started = 0, time.monotonic()
                        while time.monotonic() - started < 0.75:
                            client.put_records(StreamName="s", Records=records)
                            calls += 1
                        rates[name].append(calls / (time.monotonic() - started))
                        if name == "proxied":
                            calls_through_proxy += calls + 1
                    finally:
                        client.close()
            assert proxy.stats.requests("PutRecords") == calls_through_proxy
    finally:
        upstream.shutdown()
        upstream.server_close()
    direct, proxied = max(rates["direct"]), max(rates["proxied"])
    print(f"PutRecords(500), one boto3 client: direct {direct:.0f}/s, proxied {proxied:.0f}/s")
    assert proxied > 0.3 * direct
