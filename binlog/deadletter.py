"""The dead-letter store: where consumers park records they must not apply, with why and where.

Shared by the primary Lambda and the KCL consumers. A letter carries the raw record
(base64), the reason, and the record's position (stream, shard, sequence and
subsequence number), so an operator can fix the cause and replay it. `park` never
raises for AWS errors: it reports which letters failed, and the caller keeps those
records unacknowledged (DESIGN invariant 4: nothing is lost silently).

SQS: one JSON message per letter, SendMessageBatch (10 a call), failed entries retried.
A message holds at most the queue's MaximumMessageSize (1 KiB to 1 MiB; the default
was 256 KiB until 2025, when AWS raised the maximum to 1 MiB, and existing queues
keep what they were given). A letter that does not fit keeps the first bytes of
the record that do, plus the record's full length and SHA-256, and says
`"truncated": true`; the whole record stays readable in the stream at its position
until the stream's retention ends. S3 has no such limit: one object per letter,
`<prefix><consumer>/<shard id>/<sequence number>-<subsequence number>.json`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.config import Config

from binlog.awserrors import Failure, classify
from binlog.clients import boto3_client, client_config
from binlog.topology import DeadLetterConfig

logger = logging.getLogger(__name__)

# Reasons that are not a codec `Reason` (binlog.errors) nor a DynamoDB error code.
UNAUTHORIZED_TABLE = "unauthorized_table"
"""A valid record for a table outside the consumer's topology: parked, never written."""
BAD_AGGREGATE = "bad_aggregate"
"""A KPL aggregate whose checksum is right but whose contents are not (the whole aggregate)."""

MAX_DETAIL_CHARS = 2048
# SQS: at most 10 entries per SendMessageBatch; since 2025 a message (and a whole batch)
# may hold up to 1 MiB, 256 KiB before that and on queues configured so.
SQS_BATCH_ENTRIES = 10
SQS_MAX_MESSAGE_BYTES = 1024 * 1024
SQS_LEGACY_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked record: its raw bytes, why it was parked, and where it sits in the stream.

    `reason` is a `binlog.errors.Reason` value, a DynamoDB error code (a permanent
    apply failure), `unauthorized_table` or `bad_aggregate`. `consumer` names who
    parked it: `lambda:primary`, `kcl:<replica>`.
    """

    data: bytes
    reason: str
    detail: str
    stream: str
    shard_id: str
    sequence_number: str
    subsequence_number: int = 0
    partition_key: str = ""
    arrival: datetime | None = None
    consumer: str = ""
    parked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def letter_id(self) -> str:
        """Stable across redeliveries: `<shard>/<sequence>/<subsequence>` (deduplicate on it)."""
        return f"{self.shard_id}/{self.sequence_number}/{self.subsequence_number}"

    def document(self, *, max_bytes: int | None = None) -> bytes:
        """The JSON message (ASCII); with `max_bytes`, the record is cut to fit, flagged truncated.

        Raises:
            ValueError: even without the record, the letter exceeds `max_bytes`.
        """
        doc: dict[str, Any] = {
            "letter_id": self.letter_id,
            "reason": self.reason,
            "detail": self.detail[:MAX_DETAIL_CHARS],
            "stream": self.stream,
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "subsequence_number": self.subsequence_number,
            "partition_key": self.partition_key,
            "approximate_arrival": None if self.arrival is None else self.arrival.isoformat(),
            "consumer": self.consumer,
            "parked_at": self.parked_at.isoformat(),
            "data_bytes": len(self.data),
            "data_sha256": hashlib.sha256(self.data).hexdigest(),
            "truncated": False,
            "data": base64.b64encode(self.data).decode("ascii"),
        }
        # ensure_ascii: SQS accepts only some Unicode; escaped JSON is always accepted.
        body = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        if max_bytes is None or len(body) <= max_bytes:
            return body
        doc["truncated"] = True
        doc["data"] = ""
        empty = len(json.dumps(doc, ensure_ascii=True, separators=(",", ":")))
        keep = (max_bytes - empty) // 4 * 3  # base64: 4 characters per 3 bytes
        if keep < 0:
            raise ValueError(f"dead letter {self.letter_id} exceeds {max_bytes} bytes without data")
        doc["data"] = base64.b64encode(self.data[:keep]).decode("ascii")
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    def object_key(self, prefix: str) -> str:
        """Where the S3 store puts this letter (redelivery overwrites the same object)."""
        return (
            f"{prefix}{self.consumer or 'unknown'}/{self.shard_id}/"
            f"{self.sequence_number}-{self.subsequence_number}.json"
        )


def letter_from_document(body: bytes | str) -> DeadLetter:
    """Read a letter back (operators, tests); a truncated letter holds only its first bytes."""
    doc = json.loads(body)
    arrival = doc.get("approximate_arrival")
    return DeadLetter(
        data=base64.b64decode(doc["data"]),
        reason=doc["reason"],
        detail=doc["detail"],
        stream=doc["stream"],
        shard_id=doc["shard_id"],
        sequence_number=doc["sequence_number"],
        subsequence_number=doc["subsequence_number"],
        partition_key=doc["partition_key"],
        arrival=None if arrival is None else datetime.fromisoformat(arrival),
        consumer=doc["consumer"],
        parked_at=datetime.fromisoformat(doc["parked_at"]),
    )


class DeadLetterStore(Protocol):
    """Parks letters; the answer says, per letter and in order, None (parked) or the failure."""

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        """Park every letter; never raises for AWS errors (they come back as failures)."""
        ...


class MemoryDeadLetterStore:
    """Keeps letters in a list: for tests and in-process runs, never for production."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self._lock = threading.Lock()

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        """Append every letter (always succeeds)."""
        with self._lock:
            self.letters.extend(letters)
        return [None] * len(letters)


class SqsDeadLetterStore:
    """Letters as JSON messages on an SQS queue (standard or FIFO).

    The queue URL and its MaximumMessageSize are looked up once, at the first park
    (`max_message_bytes` skips the second look-up). FIFO queues get the shard id as
    message group and the letter id as deduplication id.
    """

    def __init__(
        self,
        client: Any,
        queue: str,
        *,
        max_message_bytes: int | None = None,
        max_attempts: int = 4,
        backoff_s: float = 0.1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_message_bytes is not None and not 1024 <= max_message_bytes <= SQS_MAX_MESSAGE_BYTES:
            raise ValueError("max_message_bytes must be between 1024 and 1048576 (SQS's range)")
        if not 1 <= max_attempts <= 20:
            raise ValueError("max_attempts must be between 1 and 20")
        self._client = client
        self._queue = queue
        self._url: str | None = queue if queue.startswith(("https://", "http://")) else None
        self._max_bytes = max_message_bytes
        self._fifo = queue.endswith(".fifo")
        self._attempts = max_attempts
        self._backoff_s = backoff_s
        self._sleep = sleep

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        """Send every letter; entries SQS refuses as transient are sent again."""
        results: list[Failure | None] = [None] * len(letters)
        if not letters:
            return results
        unusable: Failure | None = None
        try:
            url, limit = self._queue_url(), self._message_limit()
        except Exception as exc:  # reported per letter, never raised
            unusable = classify(exc)
        if unusable is not None:
            logger.error("dead-letter queue %s unusable: %s", self._queue, unusable.message)
            return [unusable] * len(letters)
        bodies: list[bytes | None] = []
        for index, letter in enumerate(letters):
            try:
                bodies.append(letter.document(max_bytes=limit))
            except ValueError as exc:
                bodies.append(None)
                results[index] = Failure("MessageTooLong", str(exc), False)
        pending = [i for i, body in enumerate(bodies) if body is not None]
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            retry: list[int] = []
            for chunk in _chunks(pending, bodies, limit):
                retry += self._send(url, chunk, letters, bodies, results)
            pending = retry
            if not pending:
                break
        for index in pending:
            logger.error(
                "dead letter %s not parked after %d attempts: %s",
                letters[index].letter_id,
                self._attempts,
                results[index],
            )
        return results

    def _send(
        self,
        url: str,
        chunk: list[int],
        letters: Sequence[DeadLetter],
        bodies: Sequence[bytes | None],
        results: list[Failure | None],
    ) -> list[int]:
        """One SendMessageBatch; returns the indexes worth sending again."""
        entries = []
        for n, index in enumerate(chunk):
            body = bodies[index]
            assert body is not None
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": body.decode("ascii")}
            if self._fifo:
                letter = letters[index]
                entry["MessageGroupId"] = letter.shard_id
                entry["MessageDeduplicationId"] = hashlib.sha256(
                    f"{letter.consumer}/{letter.letter_id}".encode()
                ).hexdigest()
            entries.append(entry)
        try:
            answer = self._client.send_message_batch(QueueUrl=url, Entries=entries)
        except Exception as exc:  # classified, reported per letter
            failure = classify(exc)
            for index in chunk:
                results[index] = failure
            return list(chunk) if failure.retriable else []
        for index in chunk:
            results[index] = None
        retry = []
        for failed in answer.get("Failed", []):
            index = chunk[int(failed["Id"])]
            code = str(failed.get("Code", "Unknown"))
            transient = not failed.get("SenderFault", False)
            results[index] = Failure(code, str(failed.get("Message", code)), transient)
            if transient:
                retry.append(index)
        return retry

    def _queue_url(self) -> str:
        if self._url is None:
            self._url = str(self._client.get_queue_url(QueueName=self._queue)["QueueUrl"])
        return self._url

    def _message_limit(self) -> int:
        if self._max_bytes is None:
            try:
                attributes = self._client.get_queue_attributes(
                    QueueUrl=self._queue_url(), AttributeNames=["MaximumMessageSize"]
                )["Attributes"]
                self._max_bytes = int(attributes["MaximumMessageSize"])
            except Exception as exc:  # a safe default beats no dead letters
                self._max_bytes = SQS_LEGACY_MESSAGE_BYTES
                logger.warning(
                    "cannot read MaximumMessageSize of %s (%s); assuming %d bytes",
                    self._queue,
                    classify(exc).code,
                    self._max_bytes,
                )
        return self._max_bytes


def _chunks(pending: list[int], bodies: Sequence[bytes | None], limit: int) -> list[list[int]]:
    """Batches of at most 10 entries whose bodies total at most the message limit."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in pending:
        body = bodies[index]
        assert body is not None
        if current and (len(current) == SQS_BATCH_ENTRIES or size + len(body) > limit):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += len(body)
    if current:
        chunks.append(current)
    return chunks


class S3DeadLetterStore:
    """Letters as JSON objects in a bucket; no size limit, and redelivery overwrites."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, max_workers: int = 8) -> None:
        if not 1 <= max_workers <= 64:
            raise ValueError("max_workers must be between 1 and 64")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._workers = max_workers

    def park(self, letters: Sequence[DeadLetter]) -> list[Failure | None]:
        """PutObject per letter (botocore retries transient errors)."""
        if len(letters) <= 1 or self._workers == 1:
            return [self._put(letter) for letter in letters]
        with ThreadPoolExecutor(
            max_workers=min(self._workers, len(letters)), thread_name_prefix="lazyrep-dlq"
        ) as pool:
            return list(pool.map(self._put, letters))

    def _put(self, letter: DeadLetter) -> Failure | None:
        key = letter.object_key(self._prefix)
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=letter.document(),
                ContentType="application/json",
            )
        except Exception as exc:  # classified, reported to the caller
            failure = classify(exc)
        else:
            return None
        logger.error("dead letter s3://%s/%s not parked: %s", self._bucket, key, failure)
        return failure


def dead_letter_store(
    config: DeadLetterConfig,
    *,
    session: Any = None,
    config_overrides: Config | None = None,
) -> DeadLetterStore:
    """The store a topology's `[dead_letter]` describes, with a client in its region."""
    client = boto3_client(
        config.kind, region=config.region, session=session, config=client_config(config_overrides)
    )
    if config.kind == "sqs":
        return SqsDeadLetterStore(client, config.name)
    return S3DeadLetterStore(client, config.name, config.prefix)
