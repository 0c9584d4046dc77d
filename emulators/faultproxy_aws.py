"""AWS wire shapes the fault proxy fakes: error answers and truthful partial failures.

Pure functions over bytes, so each shape is unit-tested against what botocore
parses (``parsers.BaseJSONParser._do_error_parse``: the code is ``__type`` after
``#``, the message is ``message``) without a network.
"""

from __future__ import annotations

import json
import random
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from emulators.faultproxy_rules import (
    PARTIAL_FAILURE_OPERATIONS,
    SERVER_ERROR_CODES,
    Rule,
    choose_failed_indices,
    operation_name,
)

INJECTED = "(injected by faultproxy)"


class Reply(NamedTuple):
    """An HTTP answer made by the proxy itself (or rewritten by it)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Service:
    """What an error answer of one service looks like on the wire."""

    json_version: str  # the x-amz-json-1.x content type the service speaks
    type_prefix: str  # the namespace DynamoDB puts before the code in __type
    crc32: bool  # DynamoDB signs its bodies with x-amz-crc32; botocore checks it


_SERVICES: Mapping[str, Service] = {
    "Kinesis_20131202": Service("1.1", "", crc32=False),
    "DynamoDB_20120810": Service("1.0", "com.amazonaws.dynamodb.v20120810#", crc32=True),
    "DynamoDBStreams_20120810": Service("1.0", "com.amazonaws.dynamodb.v20120810#", crc32=True),
}
_GENERIC = Service("1.1", "", crc32=False)

_MESSAGES: Mapping[str, str] = {
    "ProvisionedThroughputExceededException": "Rate exceeded for shard or table.",
    "LimitExceededException": "Rate exceeded.",
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "RequestLimitExceeded": "Throughput exceeds the current throughput limit for your account.",
    "KMSThrottlingException": "Request was denied due to KMS request throttling.",
    "InternalFailure": "Internal service failure.",
    "InternalServerError": "Internal server error.",
    "ServiceUnavailable": "Service unavailable.",
}


def service_of(target: str) -> Service:
    """The service behind an X-Amz-Target (``Kinesis_20131202.PutRecords``)."""
    return _SERVICES.get(target.partition(".")[0], _GENERIC)


def is_cbor(content_type: str | None) -> bool:
    """The AWS Java SDK talks CBOR to Kinesis unless CBOR is disabled."""
    return content_type is not None and "cbor" in content_type.lower()


def is_json(content_type: str | None) -> bool:
    """True for the JSON protocol bodies (``application/x-amz-json-1.x``)."""
    return content_type is not None and "json" in content_type.lower()


def message_for(code: str) -> str:
    """A realistic message, marked so a log reader knows the proxy made it."""
    return f"{_MESSAGES.get(code, code)} {INJECTED}"


def error_reply(target: str, code: str, *, cbor: bool = False, message: str | None = None) -> Reply:
    """An AWS JSON-protocol error answer for the service behind ``target``.

    Status 400 for throttling codes, the code's 5xx for server errors. The
    ``x-amzn-ErrorType`` header lets SDKs that read the code from the header
    (the Java SDK) see it whatever the body encoding.
    """
    service = service_of(target)
    status = SERVER_ERROR_CODES.get(code, 400)
    doc = {"__type": service.type_prefix + code, "message": message or message_for(code)}
    if cbor:
        body = cbor_text_map(doc)
        content_type = "application/x-amz-cbor-1.1"
    else:
        body = _dumps(doc)
        content_type = f"application/x-amz-json-{service.json_version}"
    headers = [
        ("x-amzn-RequestId", str(uuid.uuid4())),
        ("x-amzn-ErrorType", code),
        ("Content-Type", content_type),
    ]
    if service.crc32:
        headers.append(("x-amz-crc32", crc32_of(body)))
    return Reply(status, tuple(headers), body)


def crc32_of(body: bytes) -> str:
    """The x-amz-crc32 header value botocore checks on DynamoDB answers."""
    return str(zlib.crc32(body) & 0xFFFFFFFF)


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + n.to_bytes(4, "big")


def cbor_text_map(doc: Mapping[str, str]) -> bytes:
    """Encode a map of text to text as CBOR (RFC 8949): all an error body needs."""
    out = bytearray(_cbor_head(5, len(doc)))
    for key, value in doc.items():
        for text in (key, value):
            raw = text.encode("utf-8")
            out += _cbor_head(3, len(raw)) + raw
    return bytes(out)


@dataclass(frozen=True)
class PartialPlan:
    """A truthful partial failure of one PutRecords or BatchWriteItem request.

    The chosen records are removed from ``forward_body`` so the server really
    does not write them; :meth:`splice` puts them back into the server's answer
    as failed (PutRecords) or unprocessed (BatchWriteItem). ``forward_body`` is
    ``None`` when every record was chosen: nothing is forwarded then.
    """

    operation: str
    total: int
    failed: tuple[int, ...]
    forward_body: bytes | None
    error_code: str
    error_message: str
    removed_items: Mapping[str, list[Any]] = field(default_factory=dict)

    def splice(self, upstream_body: bytes) -> bytes:
        """Merge the server's answer for the forwarded part with the injected failures.

        Raises:
            ValueError: the server's answer does not fit the forwarded request.
        """
        doc = _load_object(upstream_body)
        if self.operation == "PutRecords":
            return _dumps(self._splice_put_records(doc))
        unprocessed = doc.get("UnprocessedItems") or {}
        if not isinstance(unprocessed, dict):
            raise ValueError("UnprocessedItems is not an object")  # noqa: TRY004 - bad input
        merged = {t: list(v) for t, v in unprocessed.items()}
        for table, items in self.removed_items.items():
            merged.setdefault(table, []).extend(items)
        doc["UnprocessedItems"] = merged
        return _dumps(doc)

    def _splice_put_records(self, doc: dict[str, Any]) -> dict[str, Any]:
        entries = doc.get("Records")
        kept = self.total - len(self.failed)
        if not isinstance(entries, list) or len(entries) != kept:
            raise ValueError(f"expected {kept} PutRecords result entries, got {entries!r:.200}")
        upstream_failed = doc.get("FailedRecordCount") or 0
        failed = set(self.failed)
        served = iter(entries)
        doc["Records"] = [
            {"ErrorCode": self.error_code, "ErrorMessage": self.error_message}
            if i in failed
            else next(served)
            for i in range(self.total)
        ]
        doc["FailedRecordCount"] = int(upstream_failed) + len(self.failed)
        return doc

    def local_reply(self, target: str) -> Reply:
        """The answer when every record was chosen and nothing was forwarded.

        PutRecords answers 200 with every entry failed, as Kinesis does. A
        BatchWriteItem whose every item is throttled is answered by DynamoDB
        with ProvisionedThroughputExceededException, not with all unprocessed.
        """
        if self.operation == "BatchWriteItem":
            return error_reply(target, "ProvisionedThroughputExceededException")
        body = _dumps(
            {
                "FailedRecordCount": self.total,
                "Records": [{"ErrorCode": self.error_code, "ErrorMessage": self.error_message}]
                * self.total,
            }
        )
        headers = (
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Type", f"application/x-amz-json-{service_of(target).json_version}"),
        )
        return Reply(200, headers, body)


def _load_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - bad input
    return doc


def plan_partial_failure(
    target: str, body: bytes, rule: Rule, rng: random.Random
) -> PartialPlan | None:
    """Choose the records to fail and build the request to forward.

    Returns ``None`` (forward unchanged) when the body is not a request of a
    splittable operation or no record was chosen (``failed_indices`` past the end).
    """
    operation = operation_name(target)
    if operation not in PARTIAL_FAILURE_OPERATIONS:
        return None
    try:
        doc = _load_object(body)
    except ValueError:
        return None
    if operation == "PutRecords":
        return _plan_put_records(doc, rule, rng)
    return _plan_batch_write(doc, rule, rng)


def _plan_put_records(doc: dict[str, Any], rule: Rule, rng: random.Random) -> PartialPlan | None:
    records = doc.get("Records")
    if not isinstance(records, list):
        return None
    failed = choose_failed_indices(len(records), rule, rng)
    if not failed:
        return None
    chosen = set(failed)
    kept = [r for i, r in enumerate(records) if i not in chosen]
    code = rule.error_code or "ProvisionedThroughputExceededException"
    stream = doc.get("StreamName") or doc.get("StreamARN") or "?"
    message = message_for(code)
    if code == "ProvisionedThroughputExceededException":
        message = f"Rate exceeded for shard in stream {stream}. {INJECTED}"
    return PartialPlan(
        operation="PutRecords",
        total=len(records),
        failed=failed,
        forward_body=_dumps({**doc, "Records": kept}) if kept else None,
        error_code=code,
        error_message=message,
    )


def _plan_batch_write(doc: dict[str, Any], rule: Rule, rng: random.Random) -> PartialPlan | None:
    request_items = doc.get("RequestItems")
    if not isinstance(request_items, dict) or not all(
        isinstance(v, list) for v in request_items.values()
    ):
        return None
    flat = [(table, item) for table, items in request_items.items() for item in items]
    failed = choose_failed_indices(len(flat), rule, rng)
    if not failed:
        return None
    chosen = set(failed)
    kept: dict[str, list[Any]] = {}
    removed: dict[str, list[Any]] = {}
    for i, (table, item) in enumerate(flat):
        (removed if i in chosen else kept).setdefault(table, []).append(item)
    return PartialPlan(
        operation="BatchWriteItem",
        total=len(flat),
        failed=failed,
        forward_body=_dumps({**doc, "RequestItems": kept}) if kept else None,
        error_code="ProvisionedThroughputExceededException",
        error_message=message_for("ProvisionedThroughputExceededException"),
        removed_items=removed,
    )
