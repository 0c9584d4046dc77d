"""A replica and its primary as the operator tools see them: tables, regions, clients, scans.

Shared by `lazyrep verify` and `lazyrep backfill`: resolve the replica and the table
subset from the topology (refusing unknown names with the known ones listed), build
one DynamoDB client per region plus the stream's Kinesis client, check that every
table exists where the topology says with the key it says (the wrong region shows
up here, as a table that is not there), and scan tables in parallel segments.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from binlog.awserrors import classify
from binlog.clients import boto3_client, client_config
from binlog.errors import LazyRepError
from binlog.topology import KeySchema, ReplicaTarget, Topology

MAX_SEGMENTS = 1000
_BATCH_GET_KEYS = 100  # DynamoDB: BatchGetItem reads at most 100 items per call

T = TypeVar("T")


class TargetError(LazyRepError, ValueError):
    """The command names something the topology or the account does not have (exit 2)."""


@dataclass(frozen=True, slots=True)
class TablePair:
    """One primary table and its copy on the replica."""

    primary: str
    replica: str
    schema: KeySchema


@dataclass(frozen=True, slots=True)
class ReplicaPair:
    """A replica target of the topology with the tables an operator command works on."""

    topology: Topology
    replica: ReplicaTarget
    tables: tuple[TablePair, ...]

    @property
    def primary_region(self) -> str:
        """The primary tables live in the stream's region."""
        return self.topology.stream.region


def resolve(topology: Topology, replica_name: str, tables: Sequence[str] = ()) -> ReplicaPair:
    """The replica target and the tables (all of the topology's when `tables` is empty).

    Raises:
        TargetError: an unknown replica or table, naming the known ones.
    """
    replica = topology.replicas.get(replica_name)
    if replica is None:
        known = ", ".join(sorted(topology.replicas)) or "none"
        raise TargetError(f"no replica {replica_name!r} in the topology (known: {known})")
    unknown = [t for t in tables if t not in topology.tables]
    if unknown:
        raise TargetError(
            f"no table {unknown[0]!r} in the topology (known: {', '.join(sorted(topology.tables))})"
        )
    names = list(dict.fromkeys(tables)) or list(topology.tables)
    pairs = tuple(
        TablePair(name, replica.replica_table(name), topology.tables[name]) for name in names
    )
    return ReplicaPair(topology, replica, pairs)


def parse_table_list(text: str | None) -> list[str]:
    """`a,b` -> ["a", "b"] (blanks dropped)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class Clients:
    """One DynamoDB client per side, and the stream's Kinesis client."""

    primary: Any
    replica: Any
    kinesis: Any


def make_clients(pair: ReplicaPair, *, pool: int = 10) -> Clients:
    """Clients with the endpoints the environment sets (AWS_ENDPOINT_URL_* or AWS)."""
    config = client_config(pool=pool)
    return Clients(
        boto3_client("dynamodb", region=pair.primary_region, config=config),
        boto3_client("dynamodb", region=pair.replica.region, config=config),
        boto3_client("kinesis", region=pair.primary_region, config=client_config()),
    )


def check_table(client: Any, name: str, schema: KeySchema, region: str, side: str) -> int:
    """The table exists in `region` with the topology's key; its approximate item count.

    Raises:
        TargetError: no such table there, or another key schema.
        ClientError: any other refusal (access denied: see lazyrep.errors_cli).
    """
    try:
        table = client.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if classify(exc).code != "ResourceNotFoundException":
            raise
        raise TargetError(
            f"{side} table {name!r} does not exist in {region} (wrong region or account?)"
        ) from exc
    keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
    expected = {"HASH": schema.partition.name}
    if schema.sort is not None:
        expected["RANGE"] = schema.sort.name
    if keys != expected:
        raise TargetError(
            f"{side} table {name!r} in {region} has key {keys}, the topology says {expected}"
        )
    return int(table.get("ItemCount", 0))


def check_tombstone_table(client: Any, name: str, region: str, side: str) -> None:
    """The applier's tombstone table exists in `region`.

    Raises:
        TargetError: it does not.
    """
    try:
        client.describe_table(TableName=name)
    except ClientError as exc:
        if classify(exc).code != "ResourceNotFoundException":
            raise
        raise TargetError(
            f"the {side}'s tombstone table {name!r} does not exist in {region} "
            "(applier.tombstone_table in the topology)"
        ) from exc


class ScanStoppedError(LazyRepError):
    """A segment of a parallel scan stopped because another failed (or Ctrl-C)."""


def scan_segment(
    client: Any,
    table: str,
    segment: int,
    total: int,
    *,
    consistent: bool,
    start_key: Mapping[str, Any] | None = None,
    page_items: int = 0,
) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
    """The pages of one segment of a parallel scan (Segment / TotalSegments), each with
    the key to resume after it (None after the segment's last page). `page_items` caps a
    page (Scan's Limit); 0 leaves DynamoDB's 1 MB pages."""
    request: dict[str, Any] = {"TableName": table, "ConsistentRead": consistent}
    if page_items:
        request["Limit"] = page_items
    if total > 1:
        request.update(Segment=segment, TotalSegments=total)
    if start_key:
        request["ExclusiveStartKey"] = dict(start_key)
    while True:
        page = client.scan(**request)
        last = page.get("LastEvaluatedKey")
        yield page.get("Items", []), last
        if not last:
            return
        request["ExclusiveStartKey"] = last


def parallel_scan(
    client: Any,
    table: str,
    segments: Sequence[int],
    total: int,
    consume: Callable[[list[dict[str, Any]]], T],
    *,
    consistent: bool,
    workers: int,
    start_keys: Mapping[int, Mapping[str, Any]] | None = None,
    page_done: Callable[[int, dict[str, Any] | None], None] | None = None,
    stop: threading.Event | None = None,
    page_items: int = 0,
) -> list[list[T]]:
    """Scan the given segments of `table` with `workers` threads, calling `consume` per page.

    Returns, per segment, what `consume` returned for each of its pages. `start_keys`
    resumes segments after a saved key; `page_done(segment, key)` is called after each
    consumed page with the key to resume from (None: the segment is done). When any
    segment fails, or the caller is interrupted, `stop` is set so that the others end
    at their next page (long consumers should watch it too), and the error is raised
    once every thread has stopped.
    """
    stop = stop or threading.Event()
    starts = start_keys or {}

    def run(segment: int) -> list[T]:
        results = []
        pages = scan_segment(
            client,
            table,
            segment,
            total,
            consistent=consistent,
            start_key=starts.get(segment),
            page_items=page_items,
        )
        try:
            for items, last in _until(stop, pages, f"scan of {table} segment {segment}"):
                results.append(consume(items))
                if page_done is not None:
                    page_done(segment, last)
        except BaseException:
            stop.set()
            raise
        return results

    if len(segments) == 1 or workers == 1:
        return [run(segment) for segment in segments]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lazyrep-scan")
    try:
        futures = [pool.submit(run, segment) for segment in segments]
        wait(futures)
    except BaseException:  # Ctrl-C while waiting: let the segments end at their next page
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:  # the segment that failed first, not those it stopped
        raise next((e for e in errors if not isinstance(e, ScanStoppedError)), errors[0])
    return [f.result() for f in futures]


def _until(stop: threading.Event, pages: Iterator[T], what: str) -> Iterator[T]:
    for page in pages:
        if stop.is_set():
            raise ScanStoppedError(f"{what} stopped")
        yield page


def batch_get(
    client: Any, table: str, keys: Sequence[dict[str, Any]], *, consistent: bool = True
) -> list[dict[str, Any]]:
    """The items of `keys` that exist (BatchGetItem, 100 keys a call, unprocessed retried)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), _BATCH_GET_KEYS):
        pending: dict[str, Any] = {
            table: {
                "Keys": list(keys[start : start + _BATCH_GET_KEYS]),
                "ConsistentRead": consistent,
            }
        }
        delay = 0.05
        while pending:
            response = client.batch_get_item(RequestItems=pending)
            found += response.get("Responses", {}).get(table, [])
            pending = response.get("UnprocessedKeys") or {}
            if pending:  # throttled: DynamoDB asks the caller to back off
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
    return found
