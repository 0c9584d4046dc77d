"""Fault proxy logic without a network: rules, seeded choices, AWS shapes, splicing, framing."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import zlib
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.parsers import JSONParser
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)
from hypothesis import given
from hypothesis import strategies as st

from emulators.faultproxy import _parse_rules_doc
from emulators.faultproxy_aws import (
    cbor_text_map,
    crc32_of,
    error_reply,
    plan_partial_failure,
)
from emulators.faultproxy_http import (
    HttpError,
    NoResponseError,
    Request,
    encode_request,
    encode_response,
    read_request,
    read_response,
)
from emulators.faultproxy_rules import (
    Fault,
    Rule,
    RuleBook,
    choose_failed_indices,
    operation_matches,
)
from emulators.faultproxy_stats import FaultStats, StatsRecorder

PUT_RECORDS = "Kinesis_20131202.PutRecords"
BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"
UPDATE_ITEM = "DynamoDB_20120810.UpdateItem"


# --- rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fault": "explode"}, "fault"),
        ({"fault": "throttle", "operation": ""}, "operation"),
        ({"fault": "throttle", "probability": 1.5}, "probability"),
        ({"fault": "throttle", "probability": True}, "probability"),
        ({"fault": "throttle", "count": 0}, "count"),
        ({"fault": "throttle", "count": 2.5}, "count"),
        ({"fault": "delay"}, "delay_ms"),
        ({"fault": "throttle", "delay_ms": -1}, "delay_ms"),
        ({"fault": "throttle", "error_code": "InternalFailure"}, "error_code"),
        ({"fault": "server_error", "error_code": "ThrottlingException"}, "error_code"),
        ({"fault": "cut_before", "error_code": "InternalFailure"}, "error_code"),
        ({"fault": "partial_failure", "failed_fraction": 0}, "failed_fraction"),
        ({"fault": "partial_failure", "failed_indices": ()}, "failed_indices"),
        ({"fault": "partial_failure", "failed_indices": (-1,)}, "failed_indices"),
        ({"fault": "throttle", "failed_indices": (1,)}, "failed_indices"),
        ({"fault": "cut_after", "reset": "yes"}, "reset"),
    ],
)
def test_invalid_rule_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Rule(**kwargs)


def test_rule_error_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match="throttle") as info:
        Rule("explode")  # type: ignore[arg-type]
    assert "partial_failure" in str(info.value)
    with pytest.raises(ValueError, match="LimitExceededException"):
        Rule(Fault.THROTTLE, error_code="Nope")


def test_rule_json_round_trip_and_unknown_keys() -> None:
    rule = Rule(Fault.PARTIAL_FAILURE, "PutRecords", 0.3, 4, 10, None, 0.5, (3, 1, 3), False)
    assert rule.failed_indices == (1, 3)
    assert Rule.from_json(json.loads(json.dumps(rule.to_json()))) == rule
    assert Rule.from_json({"fault": "throttle"}) == Rule(Fault.THROTTLE)
    with pytest.raises(ValueError, match="unknown rule keys probabilty; allowed: count"):
        Rule.from_json({"fault": "throttle", "probabilty": 1})
    with pytest.raises(ValueError, match="fault is required"):
        Rule.from_json({"operation": "PutRecords"})


@pytest.mark.parametrize(
    ("pattern", "target", "expected"),
    [
        ("*", PUT_RECORDS, True),
        ("*", "", True),
        ("PutRecords", PUT_RECORDS, True),
        ("PutRecord", PUT_RECORDS, False),
        (PUT_RECORDS, PUT_RECORDS, True),
        ("Kinesis_20131202.*", PUT_RECORDS, True),
        ("Kinesis_20131202.*", UPDATE_ITEM, False),
        ("DynamoDB_20120810.UpdateItem", UPDATE_ITEM, True),
        ("PutRecords", "", False),
    ],
)
def test_operation_matches(pattern: str, target: str, expected: bool) -> None:
    assert operation_matches(pattern, target) is expected


def _faults(book: RuleBook, targets: list[str], splittable: bool = False) -> list[str | None]:
    out: list[str | None] = []
    for target in targets:
        decision = book.decide(target, splittable=splittable)
        out.append(None if decision is None else decision.rule.fault.value)
    return out


def test_count_limits_a_rule_and_later_rules_take_over() -> None:
    # GIVEN "let the next 2 PutRecords through, then throttle the next 3"
    book = RuleBook()
    book.set_rules(
        [
            Rule(Fault.PASS, "PutRecords", count=2),
            Rule(Fault.THROTTLE, "PutRecords", count=3),
        ]
    )
    # WHEN six PutRecords and one UpdateItem arrive
    seen = _faults(book, [PUT_RECORDS] * 3 + [UPDATE_ITEM] + [PUT_RECORDS] * 3)
    # THEN
    assert seen == ["pass", "pass", "throttle", None, "throttle", "throttle", None]
    assert book.remaining() == [0, 0]


def test_probability_is_seeded_per_rule() -> None:
    rules = [Rule(Fault.THROTTLE, "PutRecords", probability=0.3)]
    runs = []
    for seed in (7, 7, 8):
        book = RuleBook(seed=seed)
        book.set_rules(rules)
        runs.append(_faults(book, [PUT_RECORDS] * 200))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 40 <= runs[0].count("throttle") <= 80
    # A rule placed after another draws the same sequence whatever the first one does.
    book = RuleBook(seed=7)
    book.set_rules([Rule(Fault.DELAY, "UpdateItem", probability=0.5, delay_ms=1), *rules])
    assert _faults(book, [PUT_RECORDS] * 200) != runs[0]  # position 1, another stream
    book.set_rules([*rules, Rule(Fault.DELAY, "UpdateItem", probability=0.5, delay_ms=1)])
    assert _faults(book, [PUT_RECORDS] * 200) == runs[0]


def test_partial_failure_skips_unsplittable_requests_without_spending_count() -> None:
    book = RuleBook()
    book.set_rules([Rule(Fault.PARTIAL_FAILURE, "*", count=1)])
    assert _faults(book, [UPDATE_ITEM, PUT_RECORDS], splittable=False) == [None, None]
    assert _faults(book, [PUT_RECORDS, PUT_RECORDS], splittable=True) == ["partial_failure", None]


def test_set_rules_is_all_or_nothing_and_clear_passes_everything() -> None:
    book = RuleBook()
    book.set_rules([Rule(Fault.THROTTLE)])
    with pytest.raises(ValueError, match="probability"):
        book.set_rules([{"fault": "pass"}, {"fault": "throttle", "probability": 2}])
    assert book.rules == (Rule(Fault.THROTTLE),)
    book.clear()
    assert book.decide(PUT_RECORDS, splittable=True) is None


def test_choose_failed_indices() -> None:
    rng = random.Random(1)
    assert len(choose_failed_indices(500, Rule(Fault.PARTIAL_FAILURE), rng)) == 100
    assert len(choose_failed_indices(3, Rule(Fault.PARTIAL_FAILURE), rng)) == 1  # at least one
    assert choose_failed_indices(3, Rule(Fault.PARTIAL_FAILURE, failed_fraction=1.0), rng) == (
        0,
        1,
        2,
    )
    explicit = Rule(Fault.PARTIAL_FAILURE, failed_indices=(0, 4, 9))
    assert choose_failed_indices(5, explicit, rng) == (0, 4)
    assert choose_failed_indices(0, explicit, rng) == ()


def test_parse_rules_doc_forms() -> None:
    assert _parse_rules_doc([{"fault": "throttle"}]) == ([Rule(Fault.THROTTLE)], None)
    assert _parse_rules_doc({"rules": [], "seed": 3}) == ([], 3)
    with pytest.raises(ValueError, match="unknown keys"):
        _parse_rules_doc({"rule": []})
    with pytest.raises(ValueError, match="seed"):
        _parse_rules_doc({"seed": "x"})


# --- error answers as botocore sees them -------------------------------------


def _botocore_view(reply: Any) -> tuple[dict[str, Any], bool, bool]:
    headers = dict(reply.headers)
    parsed = JSONParser().parse(
        {"status_code": reply.status, "headers": headers, "body": reply.body},
        None,  # type: ignore[arg-type]  # errors are parsed without an output shape
    )
    http = AWSResponse("http://x", reply.status, headers, None)  # type: ignore[arg-type]
    context = RetryContext(
        attempt_number=1, parsed_response=parsed, http_response=http, operation_model=None
    )
    throttled = ThrottledRetryableChecker().is_retryable(context)
    transient = TransientRetryableChecker().is_retryable(context)
    return parsed["Error"], throttled, transient


@pytest.mark.parametrize(
    ("target", "code", "status", "type_", "throttled"),
    [
        (PUT_RECORDS, "ProvisionedThroughputExceededException", 400, None, True),
        (PUT_RECORDS, "LimitExceededException", 400, None, True),
        (
            UPDATE_ITEM,
            "ProvisionedThroughputExceededException",
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            True,
        ),
        (UPDATE_ITEM, "ThrottlingException", 400, None, True),
        (PUT_RECORDS, "InternalFailure", 500, None, False),
        (UPDATE_ITEM, "InternalServerError", 500, None, False),
        (UPDATE_ITEM, "ServiceUnavailable", 503, None, False),
    ],
)
def test_error_reply_is_what_botocore_parses_and_retries(
    target: str, code: str, status: int, type_: str | None, throttled: bool
) -> None:
    reply = error_reply(target, code)
    assert reply.status == status
    doc = json.loads(reply.body)
    if type_ is not None:
        assert doc["__type"] == type_
    error, is_throttle, is_transient = _botocore_view(reply)
    assert error["Code"] == code
    assert "injected by faultproxy" in error["Message"]
    assert (is_throttle, is_transient) == (throttled, not throttled)
    headers = dict(reply.headers)
    assert headers["x-amzn-ErrorType"] == code
    if target.startswith("DynamoDB"):
        assert headers["Content-Type"] == "application/x-amz-json-1.0"
        assert headers["x-amz-crc32"] == str(zlib.crc32(reply.body) & 0xFFFFFFFF)
    else:
        assert headers["Content-Type"] == "application/x-amz-json-1.1"
        assert "x-amz-crc32" not in headers


def test_cbor_error_body() -> None:
    assert cbor_text_map({"a": "b"}) == b"\xa1\x61a\x61b"
    long = "m" * 30
    assert cbor_text_map({"k": long}) == b"\xa1\x61k\x78\x1e" + long.encode()
    reply = error_reply(PUT_RECORDS, "LimitExceededException", cbor=True, message="x" * 300)
    assert dict(reply.headers)["Content-Type"] == "application/x-amz-cbor-1.1"
    assert reply.body.startswith(b"\xa2\x66__type\x76LimitExceededException\x67message\x79\x01\x2c")


# --- truthful partial failures -----------------------------------------------


def _put_records_body(n: int) -> bytes:
    records = [
        {"Data": base64.b64encode(f"r{i}".encode()).decode(), "PartitionKey": f"p{i}"}
        for i in range(n)
    ]
    return json.dumps({"StreamName": "s", "Records": records}).encode()


def _served(forward_body: bytes, upstream_failed: tuple[int, ...] = ()) -> bytes:
    """What Kinesis answers for the forwarded request, one entry per forwarded record."""
    records = json.loads(forward_body)["Records"]
    entries = [
        {"ErrorCode": "InternalFailure", "ErrorMessage": "upstream"}
        if i in upstream_failed
        else {"SequenceNumber": f"seq-{r['PartitionKey']}", "ShardId": "shardId-000000000000"}
        for i, r in enumerate(records)
    ]
    return json.dumps({"FailedRecordCount": len(upstream_failed), "Records": entries}).encode()


def test_put_records_partial_failure_forwards_the_rest_and_splices_in_place() -> None:
    # GIVEN a 6-record PutRecords with records 1 and 4 chosen to fail
    rule = Rule(Fault.PARTIAL_FAILURE, failed_indices=(1, 4))
    plan = plan_partial_failure(PUT_RECORDS, _put_records_body(6), rule, random.Random(0))
    assert plan is not None
    assert plan.forward_body is not None
    # THEN only the others are forwarded, in order, with the other fields kept
    forwarded = json.loads(plan.forward_body)
    assert forwarded["StreamName"] == "s"
    assert [r["PartitionKey"] for r in forwarded["Records"]] == ["p0", "p2", "p3", "p5"]
    # WHEN the server answers for those (its own entry 2, p3, failed too)
    answer = json.loads(plan.splice(_served(plan.forward_body, upstream_failed=(2,))))
    # THEN the failures sit at their original positions and the count adds up
    assert answer["FailedRecordCount"] == 3
    entries = answer["Records"]
    assert [e.get("SequenceNumber") for e in entries] == [
        "seq-p0",
        None,
        "seq-p2",
        None,
        None,
        "seq-p5",
    ]
    assert entries[1]["ErrorCode"] == "ProvisionedThroughputExceededException"
    assert "Rate exceeded for shard in stream s" in entries[1]["ErrorMessage"]
    assert entries[3]["ErrorMessage"] == "upstream"


def test_put_records_all_failed_is_answered_locally() -> None:
    rule = Rule(Fault.PARTIAL_FAILURE, failed_fraction=1.0, error_code="InternalFailure")
    plan = plan_partial_failure(PUT_RECORDS, _put_records_body(3), rule, random.Random(0))
    assert plan is not None
    assert plan.forward_body is None
    reply = plan.local_reply(PUT_RECORDS)
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["FailedRecordCount"] == 3
    assert {e["ErrorCode"] for e in doc["Records"]} == {"InternalFailure"}


def test_splice_rejects_an_answer_that_does_not_fit() -> None:
    rule = Rule(Fault.PARTIAL_FAILURE, failed_indices=(0,))
    plan = plan_partial_failure(PUT_RECORDS, _put_records_body(3), rule, random.Random(0))
    assert plan is not None
    with pytest.raises(ValueError, match="expected 2"):
        plan.splice(_served(_put_records_body(3)))
    with pytest.raises(ValueError, match="not JSON"):
        plan.splice(b"<html>")


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"Records": 3}', b'{"RequestItems": {"t": 1}}']
)
def test_unsplittable_bodies_are_forwarded_unchanged(body: bytes) -> None:
    rule = Rule(Fault.PARTIAL_FAILURE)
    assert plan_partial_failure(PUT_RECORDS, body, rule, random.Random(0)) is None
    assert plan_partial_failure(BATCH_WRITE, body, rule, random.Random(0)) is None
    assert plan_partial_failure(UPDATE_ITEM, _put_records_body(3), rule, random.Random(0)) is None


def _batch_body() -> bytes:
    def put(i: int) -> dict[str, Any]:
        return {"PutRequest": {"Item": {"pk": {"S": f"a{i}"}}}}

    return json.dumps(
        {
            "RequestItems": {
                "A": [put(0), put(1), put(2)],
                "B": [{"DeleteRequest": {"Key": {"pk": {"S": "b0"}}}}],
            },
            "ReturnConsumedCapacity": "NONE",
        }
    ).encode()


def test_batch_write_partial_failure_returns_unprocessed_items() -> None:
    # GIVEN items A[1] (flat 1) and B[0] (flat 3) chosen
    rule = Rule(Fault.PARTIAL_FAILURE, failed_indices=(1, 3))
    plan = plan_partial_failure(BATCH_WRITE, _batch_body(), rule, random.Random(0))
    assert plan is not None
    assert plan.forward_body is not None
    forwarded = json.loads(plan.forward_body)
    # THEN table B is gone from the forwarded request, A keeps items 0 and 2
    assert forwarded["ReturnConsumedCapacity"] == "NONE"
    assert list(forwarded["RequestItems"]) == ["A"]
    assert [r["PutRequest"]["Item"]["pk"]["S"] for r in forwarded["RequestItems"]["A"]] == [
        "a0",
        "a2",
    ]
    # WHEN the server itself left a0 unprocessed
    upstream = {"UnprocessedItems": {"A": [forwarded["RequestItems"]["A"][0]]}}
    merged = json.loads(plan.splice(json.dumps(upstream).encode()))["UnprocessedItems"]
    assert [r["PutRequest"]["Item"]["pk"]["S"] for r in merged["A"]] == ["a0", "a1"]
    assert merged["B"] == [{"DeleteRequest": {"Key": {"pk": {"S": "b0"}}}}]


def test_batch_write_all_failed_is_a_throttle_like_dynamodb() -> None:
    rule = Rule(Fault.PARTIAL_FAILURE, failed_fraction=1.0)
    plan = plan_partial_failure(BATCH_WRITE, _batch_body(), rule, random.Random(0))
    assert plan is not None
    assert plan.forward_body is None
    reply = plan.local_reply(BATCH_WRITE)
    assert reply.status == 400
    error, throttled, _ = _botocore_view(reply)
    assert error["Code"] == "ProvisionedThroughputExceededException"
    assert throttled


@given(
    n=st.integers(min_value=1, max_value=60),
    data=st.data(),
)
def test_splice_restores_every_position(n: int, data: st.DataObject) -> None:
    failed = tuple(
        data.draw(st.sets(st.integers(min_value=0, max_value=n - 1), min_size=1, max_size=n))
    )
    rule = Rule(Fault.PARTIAL_FAILURE, failed_indices=failed)
    plan = plan_partial_failure(PUT_RECORDS, _put_records_body(n), rule, random.Random(0))
    assert plan is not None
    if plan.forward_body is None:
        assert set(failed) == set(range(n))
        answer = json.loads(plan.local_reply(PUT_RECORDS).body)
    else:
        answer = json.loads(plan.splice(_served(plan.forward_body)))
    assert answer["FailedRecordCount"] == len(set(failed))
    assert len(answer["Records"]) == n
    for i, entry in enumerate(answer["Records"]):
        if i in failed:
            assert "ErrorCode" in entry
        else:
            assert entry["SequenceNumber"] == f"seq-p{i}"


# --- counters --------------------------------------------------------------


def test_stats_queries_and_json_round_trip() -> None:
    recorder = StatsRecorder()
    for target in (PUT_RECORDS, PUT_RECORDS, UPDATE_ITEM, ""):
        recorder.request(target)
    recorder.fault(Fault.THROTTLE, PUT_RECORDS)
    recorder.fault(Fault.PASS, UPDATE_ITEM)
    recorder.fault(Fault.PARTIAL_FAILURE, PUT_RECORDS)
    recorder.records_failed(PUT_RECORDS, 7)
    stats = recorder.snapshot()
    assert stats.requests() == 4
    assert stats.requests("PutRecords") == 2
    assert stats.requests("DynamoDB_20120810.*") == 1
    assert stats.faults() == 2  # pass is not a fault
    assert stats.faults(Fault.PASS) == 1
    assert stats.faults("throttle", "PutRecords") == 1
    assert stats.faults("throttle", "UpdateItem") == 0
    assert stats.records_failed("PutRecords") == 7
    assert FaultStats.from_json(json.loads(json.dumps(stats.to_json()))) == stats
    recorder.reset()
    assert recorder.snapshot().requests() == 0


# --- HTTP framing ------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_read_request_chunked_and_expect_continue() -> None:
    raw = (
        b"\r\nPOST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\n\x00\r\n\r\n2\r\nxy\r\n0\r\nTrailer: t\r\n\r\n"
    )
    sink = _Sink()

    async def go() -> Request | None:
        return await read_request(_reader(raw), sink)  # type: ignore[arg-type]

    request = asyncio.run(go())
    assert request is not None
    assert request.body == b"\x00\r\nxy"
    assert request.keep_alive
    assert sink.data == b"HTTP/1.1 100 Continue\r\n\r\n"
    forwarded = encode_request(request)
    assert forwarded == b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n\x00\r\nxy"


def test_read_request_eof_and_errors() -> None:
    async def go(raw: bytes) -> Request | None:
        return await read_request(_reader(raw), _Sink())  # type: ignore[arg-type]

    assert asyncio.run(go(b"")) is None
    with pytest.raises(HttpError):
        asyncio.run(go(b"GARBAGE\r\n\r\n"))
    with pytest.raises(HttpError, match="conflicting"):
        asyncio.run(go(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"))
    with pytest.raises(asyncio.IncompleteReadError):
        asyncio.run(go(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"))
    closing = asyncio.run(go(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert closing is not None
    assert not closing.keep_alive


def test_read_response_framings() -> None:
    async def go(raw: bytes, head: bool = False) -> Any:
        return await read_response(_reader(raw), head_request=head)

    interim_then_final = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    response = asyncio.run(go(interim_then_final))
    assert (response.status, response.body, response.will_close) == (200, b"ok", False)
    until_eof = asyncio.run(go(b"HTTP/1.0 200 OK\r\n\r\nall of it"))
    assert (until_eof.body, until_eof.will_close) == (b"all of it", True)
    head = asyncio.run(go(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head=True))
    assert head.body == b""
    with pytest.raises(NoResponseError):
        asyncio.run(go(b""))


def test_encode_response_reframes_without_touching_the_body() -> None:
    body = bytes(range(256))
    out = encode_response(
        200,
        "OK",
        (("Transfer-Encoding", "chunked"), ("X-Custom", "v"), ("Connection", "keep-alive")),
        body,
        close=True,
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nX-Custom: v\r\nContent-Length: 256\r\nConnection: close"
    assert rest == body
    assert encode_response(204, "", (), b"", close=False) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert crc32_of(b"") == "0"
