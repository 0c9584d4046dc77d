"""The wire shapes Lambda uses with a Kinesis mapping: the event, the context, the reply.

Shapes follow AWS's documented examples (the Kinesis record event, the partial batch
response, the on-failure invocation record), so a handler tested here meets the same
input on AWS. Everything in this module is pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, NotRequired, Protocol, TypedDict

ACCOUNT_ID = "000000000000"
"""kinesalite's account in its ARNs; reused for the function and role ARNs."""


class StreamRecord(NamedTuple):
    """One Kinesis record as read by GetRecords, kept for invoking and on-failure info."""

    sequence_number: str
    partition_key: str
    data: bytes
    arrival_s: float
    """ApproximateArrivalTimestamp, seconds since the epoch (millisecond precision)."""


class KinesisData(TypedDict):
    kinesisSchemaVersion: str
    partitionKey: str
    sequenceNumber: str
    data: str
    approximateArrivalTimestamp: float


class KinesisEventRecord(TypedDict):
    kinesis: KinesisData
    eventSource: str
    eventVersion: str
    eventID: str
    eventName: str
    invokeIdentityArn: str
    awsRegion: str
    eventSourceARN: str


class KinesisEvent(TypedDict):
    Records: list[KinesisEventRecord]


class RequestContext(TypedDict):
    requestId: str
    functionArn: str
    condition: str
    approximateInvokeCount: int


class ResponseContext(TypedDict):
    statusCode: int
    executedVersion: str
    functionError: NotRequired[str]


class BatchInfo(TypedDict):
    shardId: str
    startSequenceNumber: str
    endSequenceNumber: str
    approximateArrivalOfFirstRecord: str
    approximateArrivalOfLastRecord: str
    batchSize: int
    streamArn: str


class OnFailureRecord(TypedDict):
    requestContext: RequestContext
    responseContext: ResponseContext
    version: str
    timestamp: str
    KinesisBatchInfo: BatchInfo


class Condition(StrEnum):
    """Why records went to the on-failure destination (requestContext.condition)."""

    RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """Who is invoked and from where: fills the ARNs and region of every event."""

    function_name: str
    region: str
    stream_arn: str
    account_id: str = ACCOUNT_ID

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def role_arn(self) -> str:
        """invokeIdentityArn: the mapping's execution role (a fixed local name)."""
        return f"arn:aws:iam::{self.account_id}:role/{self.function_name}-role"


def build_event(
    records: Sequence[StreamRecord], shard_id: str, who: FunctionIdentity
) -> KinesisEvent:
    """The event Lambda passes for one batch of one shard, in AWS's exact shape."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64.b64encode(r.data).decode("ascii"),
                    "approximateArrivalTimestamp": round(r.arrival_s, 3),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": who.role_arn,
                "awsRegion": who.region,
                "eventSourceARN": who.stream_arn,
            }
            for r in records
        ]
    }


class Handler(Protocol):
    """A Lambda handler: `handle(event, context)`, returning the partial batch response."""

    def __call__(self, event: dict[str, Any], context: Any, /) -> Mapping[str, Any] | None: ...


@dataclass(slots=True)
class LambdaContext:
    """The attributes and method of the Python runtime's context object.

    `get_remaining_time_in_millis` counts down from the function's timeout like the
    real one; identity and client_context are None, as for any stream invocation.
    """

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: None = None
    client_context: None = None
    tenant_id: None = None
    started_monotonic: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        return f"{day}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started_monotonic
        return max(0, int((self.timeout_s - elapsed) * 1000))


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one invocation meant for its batch, as Lambda interprets the handler's reply."""

    kind: OutcomeKind
    failed_index: int | None = None
    """PARTIAL: index in the batch of the record to resume from."""
    function_error: str | None = None
    """FAILED by an error: responseContext.functionError ("Unhandled", ...)."""
    detail: str = ""

    @classmethod
    def success(cls) -> Outcome:
        return cls(OutcomeKind.SUCCESS)

    @classmethod
    def error(cls, detail: str, function_error: str = "Unhandled") -> Outcome:
        return cls(OutcomeKind.FAILED, function_error=function_error, detail=detail)


def interpret_response(
    response: object, records: Sequence[StreamRecord], *, report_batch_item_failures: bool
) -> Outcome:
    """Read a handler's return value the way Lambda does for a Kinesis mapping.

    Without ReportBatchItemFailures any reply is success. With it: None, {}, a null or
    empty `batchItemFailures` mean success; the lowest reported sequence number is where
    processing resumes; an identifier that is empty, null, misnamed or not in the batch
    fails the whole batch (AWS: "Lambda treats the batch as a complete failure").
    """
    try:
        json.dumps(response)
    except (TypeError, ValueError) as exc:
        return Outcome.error(f"response is not JSON: {exc}", "Runtime.MarshalError")
    if not report_batch_item_failures or response is None:
        return Outcome.success()
    if not isinstance(response, dict):
        return Outcome(OutcomeKind.FAILED, detail=f"response is a {type(response).__name__}")
    failures = response.get("batchItemFailures")
    if not failures:
        return Outcome.success()
    if not isinstance(failures, list):
        return Outcome(OutcomeKind.FAILED, detail="batchItemFailures is not a list")
    index_of = {r.sequence_number: i for i, r in enumerate(records)}
    indexes: list[int] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in index_of:
            return Outcome(
                OutcomeKind.FAILED, detail=f"itemIdentifier {identifier!r} is not in the batch"
            )
        indexes.append(index_of[identifier])
    first = min(indexes)  # records are in sequence order, so the lowest index is the lowest number
    return Outcome(OutcomeKind.PARTIAL, failed_index=first, detail=f"resume at index {first}")


def _iso_ms(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def on_failure_record(
    records: Sequence[StreamRecord],
    *,
    shard_id: str,
    who: FunctionIdentity,
    condition: Condition,
    invoke_count: int,
    last: Outcome | None,
    request_id: str,
    now_s: float,
) -> OnFailureRecord:
    """The JSON document Lambda sends to an SQS on-failure destination for a Kinesis batch.

    It points at the records (shard and sequence range) instead of carrying them:
    whoever reads it fetches them with GetShardIterator AT_SEQUENCE_NUMBER.
    """
    response: ResponseContext = {"statusCode": 200, "executedVersion": "$LATEST"}
    if last is not None and last.function_error is not None:
        response["functionError"] = last.function_error
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": who.function_arn,
            "condition": condition.value,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": _iso_ms(now_s),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": _iso_ms(records[0].arrival_s),
            "approximateArrivalOfLastRecord": _iso_ms(records[-1].arrival_s),
            "batchSize": len(records),
            "streamArn": who.stream_arn,
        },
    }
