"""The local mapping's wire shapes: the event, the reply's reading, the on-failure record."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from emulators.esm_events import (
    Condition,
    FunctionIdentity,
    LambdaContext,
    Outcome,
    OutcomeKind,
    StreamRecord,
    build_event,
    interpret_response,
    on_failure_record,
)

SEQ = "49590338271490256608559692538361571095921575989136588898"
SEQ2 = "49590338271490256608559692538361571095921575989136588899"
WHO = FunctionIdentity("applier", "eu-west-1", "arn:aws:kinesis:eu-west-1:000000000000:stream/s")
RECORDS = [
    StreamRecord(SEQ, "1", b"Hello, this is a test.", 1545084650.987),
    StreamRecord(SEQ2, "2", b"\x00\xff", 1545084651.5),
]


def test_event_has_aws_exact_shape() -> None:
    event = build_event(RECORDS[:1], "shardId-000000000006", WHO)
    assert event == {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": SEQ,
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000006:{SEQ}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::000000000000:role/applier-role",
                "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/s",
            }
        ]
    }


def test_binary_data_round_trips_through_base64() -> None:
    event = build_event(RECORDS, "shardId-000000000000", WHO)
    assert base64.b64decode(event["Records"][1]["kinesis"]["data"]) == b"\x00\xff"


def test_context_has_the_runtime_attributes_and_counts_down() -> None:
    context = LambdaContext("applier", WHO.function_arn, 256, timeout_s=3.0)
    assert context.function_name == "applier"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:000000000000:function:applier"
    assert context.memory_limit_in_mb == 256
    assert context.log_group_name == "/aws/lambda/applier"
    assert "[$LATEST]" in context.log_stream_name
    assert len(context.aws_request_id) == 36
    assert context.identity is None
    assert context.client_context is None
    assert 2900 < context.get_remaining_time_in_millis() <= 3000
    context.started_monotonic = time.monotonic() - 5
    assert context.get_remaining_time_in_millis() == 0


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, {"other": 1}],
)
def test_success_replies(response: Any) -> None:
    outcome = interpret_response(response, RECORDS, report_batch_item_failures=True)
    assert outcome == Outcome.success()


def test_failures_are_ignored_without_report_batch_item_failures() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": SEQ}]}
    outcome = interpret_response(response, RECORDS, report_batch_item_failures=False)
    assert outcome.kind is OutcomeKind.SUCCESS


def test_the_lowest_reported_sequence_number_is_where_processing_resumes() -> None:
    response = {"batchItemFailures": [{"itemIdentifier": SEQ2}, {"itemIdentifier": SEQ}]}
    outcome = interpret_response(response, RECORDS, report_batch_item_failures=True)
    assert (outcome.kind, outcome.failed_index) == (OutcomeKind.PARTIAL, 0)


@pytest.mark.parametrize(
    "failure",
    [
        {"itemIdentifier": ""},
        {"itemIdentifier": None},
        {"itemIdentifer": SEQ},  # misspelt key
        {"itemIdentifier": "123"},  # not in the batch
        "not-an-object",
    ],
)
def test_unusable_identifiers_fail_the_whole_batch(failure: Any) -> None:
    outcome = interpret_response(
        {"batchItemFailures": [failure]}, RECORDS, report_batch_item_failures=True
    )
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.function_error is None


def test_a_reply_that_is_not_json_is_a_runtime_error() -> None:
    outcome = interpret_response({"x": object()}, RECORDS, report_batch_item_failures=True)
    assert (outcome.kind, outcome.function_error) == (OutcomeKind.FAILED, "Runtime.MarshalError")


def test_on_failure_record_has_aws_exact_shape() -> None:
    record = on_failure_record(
        RECORDS,
        shard_id="shardId-000000000001",
        who=WHO,
        condition=Condition.RETRY_ATTEMPTS_EXHAUSTED,
        invoke_count=4,
        last=Outcome.error("boom"),
        request_id="c9b8fa9f-5a7f-4e4b-af9c-0c604cde93a5",
        now_s=1573691886.021,
    )
    assert record == {
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4e4b-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:eu-west-1:000000000000:function:applier",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": SEQ,
            "endSequenceNumber": SEQ2,
            "approximateArrivalOfFirstRecord": "2018-12-17T22:10:50.987Z",
            "approximateArrivalOfLastRecord": "2018-12-17T22:10:51.500Z",
            "batchSize": 2,
            "streamArn": "arn:aws:kinesis:eu-west-1:000000000000:stream/s",
        },
    }
    assert list(record) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KinesisBatchInfo",
    ]


def test_on_failure_record_without_a_function_error_has_no_function_error_field() -> None:
    record = on_failure_record(
        RECORDS[:1],
        shard_id="shardId-000000000001",
        who=WHO,
        condition=Condition.RECORD_AGE_EXCEEDED,
        invoke_count=0,
        last=None,
        request_id="r",
        now_s=0.0,
    )
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
