"""The mapping's AWS edge: Kinesis reads (ListShards, GetShardIterator, GetRecords) and
the SQS on-failure destination. `ClientError` is translated here, in `_translate`, once.

Clients are injected (boto3, honouring AWS_ENDPOINT_URL_<SERVICE>); nothing here picks
an endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from emulators.esm_errors import EsmIOError, QueueNotFoundError, StreamNotFoundError
from emulators.esm_events import OnFailureRecord, StreamRecord
from emulators.esm_plan import ShardInfo
from emulators.esm_state import Position

logger = logging.getLogger(__name__)

_NOT_FOUND = {
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}


def _endpoint(client: Any) -> str:
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "?"))


def _error(
    what: str, client: Any, exc: Exception, not_found: Callable[[str], Exception]
) -> Exception:
    """Our error for a botocore failure: a missing resource is a config error, the rest
    (throttling, 5xx, connection trouble) retriable I/O errors."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _NOT_FOUND:
            return not_found(f"{what}: not found at {_endpoint(client)}")
        return EsmIOError(f"{what}: {code or exc}")
    return EsmIOError(f"{what}: {exc}")


@contextmanager
def _translate(what: str, client: Any, not_found: Callable[[str], Exception]) -> Iterator[None]:
    """Raise `_error`'s translation of any botocore failure in the block."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _error(what, client, exc, not_found) from exc


class Page(NamedTuple):
    """One GetRecords answer, reduced to what the poller needs."""

    records: list[StreamRecord]
    millis_behind_latest: int
    shard_ended: bool
    """No NextShardIterator: a closed shard read to its end."""


@dataclass(slots=True)
class ShardCursor:
    """A read position in one shard: the iterator, and what rebuilds it when it expires
    (Kinesis iterators last five minutes; a long retry can outlive one)."""

    shard_id: str
    start: Position
    iterator: str | None = None
    last_read: str | None = None

    def position(self) -> Position:
        if self.last_read is not None:
            return Position("AFTER_SEQUENCE_NUMBER", sequence_number=self.last_read)
        return self.start


class KinesisSource:
    """Reads one stream for the mapping."""

    def __init__(self, client: Any, stream_name: str) -> None:
        self.client = client
        self.stream_name = stream_name

    def _not_found(self, message: str) -> StreamNotFoundError:
        return StreamNotFoundError(f"stream {self.stream_name!r} {message.split(': ', 1)[1]}")

    def stream_arn(self) -> str:
        """The stream's ARN (also checks that it exists).

        Raises:
            StreamNotFoundError: no such stream at the Kinesis endpoint.
            EsmIOError: the call failed otherwise.
        """
        with _translate("DescribeStreamSummary", self.client, self._not_found):
            summary = self.client.describe_stream_summary(StreamName=self.stream_name)
        return str(summary["StreamDescriptionSummary"]["StreamARN"])

    def list_shards(self) -> list[ShardInfo]:
        """Every shard of the stream, open and closed, with their parents."""
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            with _translate("ListShards", self.client, self._not_found):
                page = self.client.list_shards(**kwargs)
            shards += [
                ShardInfo(
                    s["ShardId"],
                    s.get("ParentShardId"),
                    s.get("AdjacentParentShardId"),
                    "EndingSequenceNumber" in s.get("SequenceNumberRange", {}),
                )
                for s in page["Shards"]
            ]
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def latest_iterator(self, shard_id: str) -> str:
        """A LATEST iterator, taken when the mapping starts so no later record is missed."""
        return self._iterator(shard_id, Position("LATEST"))

    def _iterator(self, shard_id: str, position: Position) -> str:
        kwargs: dict[str, Any] = {
            "StreamName": self.stream_name,
            "ShardId": shard_id,
            "ShardIteratorType": position.type,
        }
        if position.sequence_number is not None:
            kwargs["StartingSequenceNumber"] = position.sequence_number
        if position.timestamp_s is not None:
            kwargs["Timestamp"] = datetime.fromtimestamp(position.timestamp_s, UTC)
        with _translate(f"GetShardIterator {shard_id}", self.client, self._not_found):
            return str(self.client.get_shard_iterator(**kwargs)["ShardIterator"])

    def read(self, cursor: ShardCursor, limit: int) -> Page:
        """The next page of the shard, renewing an expired iterator from the cursor.

        Raises:
            EsmIOError: a retriable failure; the cursor is unchanged, so call again.
        """
        if cursor.iterator is None:
            cursor.iterator = self._iterator(cursor.shard_id, cursor.position())
        try:
            reply = self.client.get_records(ShardIterator=cursor.iterator, Limit=limit)
        except (ClientError, BotoCoreError) as exc:
            expired = isinstance(exc, ClientError) and (
                exc.response.get("Error", {}).get("Code") == "ExpiredIteratorException"
            )
            if not expired:
                what = f"GetRecords {cursor.shard_id}"
                raise _error(what, self.client, exc, self._not_found) from exc
            logger.info("iterator of %s expired; renewing it", cursor.shard_id)
            cursor.iterator = None
            return self.read(cursor, limit)
        records = [
            StreamRecord(
                r["SequenceNumber"],
                r["PartitionKey"],
                bytes(r["Data"]),
                r["ApproximateArrivalTimestamp"].timestamp(),
            )
            for r in reply["Records"]
        ]
        if records:
            cursor.last_read = records[-1].sequence_number
        cursor.iterator = reply.get("NextShardIterator")
        return Page(records, int(reply.get("MillisBehindLatest", 0)), cursor.iterator is None)


class SqsDestination:
    """DestinationConfig.OnFailure for an SQS queue, given by ARN, URL or name."""

    def __init__(self, client: Any, destination: str) -> None:
        self.client = client
        self.destination = destination
        self.queue_url: str | None = None

    def resolve(self) -> str:
        """The queue's URL (also checks that it exists).

        Raises:
            QueueNotFoundError: no such queue at the SQS endpoint.
            EsmIOError: the call failed otherwise.
        """
        if self.destination.startswith(("http://", "https://")):
            self.queue_url = self.destination
            return self.queue_url
        name = self.destination.rsplit(":", 1)[-1]

        def not_found(message: str) -> QueueNotFoundError:
            return QueueNotFoundError(
                f"on-failure queue {name!r} not found at {_endpoint(self.client)}; create it "
                f"first (aws sqs create-queue --queue-name {name})"
            )

        with _translate("GetQueueUrl", self.client, not_found):
            self.queue_url = str(self.client.get_queue_url(QueueName=name)["QueueUrl"])
        return self.queue_url

    def send(self, record: OnFailureRecord) -> None:
        """Send one on-failure record as the message body, JSON as Lambda sends it.

        Raises:
            EsmIOError: the send failed; the caller retries (records are not dropped).
        """
        url = self.queue_url or self.resolve()
        with _translate("SendMessage", self.client, EsmIOError):
            self.client.send_message(QueueUrl=url, MessageBody=json.dumps(record))
