"""`lazyrep replay`, the logic: check the request against the stream and the tables, then run it.

`prepare` makes every check that can fail before anything is written (the stream,
its shards and their lineage, the start and the bound against the retention, the
target tables and their keys, the tombstone table) and returns the plan and a
runner; `cli_replay.py` prints the plan, runs it and prints what it did.

AWS is reached through the caller's configuration only: the standard credential
chain (or `--profile`), and the `AWS_ENDPOINT_URL_*` variables the local stack
exports (`eval "$(lazyrep local env)"`); nothing here names an endpoint.

`--force` and tombstones (docs/REPLAY.md has the long version): the applier keeps
a tombstone for each deleted item so that replaying an older range cannot bring
the item back. Those tombstones are right for a table that holds the stream's
whole history, but wrong for one rebuilt up to a bound in the past: a delete
after the bound left a tombstone that makes the item's earlier records look
stale, so the item would stay missing although it existed at the bound. With
`--force` the replay uses a tombstone namespace of its own (kept in the same
tombstone table under the replay's id): tombstones written by anyone else are
ignored, its own still protect it against its retries and resumes. Items keep
their versions either way: `--force` never overwrites an item newer than a record.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from binlog.applier import Applier, ApplierConfig
from binlog.capacity import write_units
from binlog.clients import client_config, dynamodb_client, kinesis_client
from binlog.topology import KeySchema, Topology, load_topology
from binlog.version import LineageError, check_lineage
from kcl_consumer.pacer import Pacer, PacerConfig
from lazyrep.replay_plan import (
    ReplayInputError,
    ReplayPlan,
    ReplayRequest,
    ShardInfo,
    StartKind,
    choose_tables,
    iso,
    plan_shards,
)
from lazyrep.replay_run import CHUNK_RECORDS, ReplayError, ReplayRunner, Snapshot, StopRequested
from lazyrep.replay_state import ReplayState, default_state_path, new_run_id
from lazyrep.replay_stream import (
    StreamFacts,
    check_sequence_available,
    check_time_available,
    describe_stream,
    list_shards,
    tip_time,
)

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_kinesis import KinesisClient

logger = logging.getLogger(__name__)

APPLY_WORKERS = 16
"""Items applied at once (one item's records always in order)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked replay, ready to run."""

    plan: ReplayPlan
    state: ReplayState | None
    runner: ReplayRunner
    topology: Topology
    rate_wcu: float | None
    run_id: str
    applier: Applier | None

    def close(self) -> None:
        """Stop the applier's worker threads (after the run)."""
        if self.applier is not None:
            self.applier.close()


def prepare(
    request: ReplayRequest,
    *,
    resume: ReplayState | None = None,
    state_path: Path | None = None,
    state_dir: Path = Path(".lazyrep"),
    rate_wcu: float | None = None,
    shard_workers: int = 4,
    on_progress: Callable[[Snapshot], None] | None = None,
    stop_after_records: int | None = None,
) -> Prepared:
    """Check everything the replay needs and build its plan, state and runner.

    Raises:
        ReplayInputError: anything the operator must change (exit 2).
        TopologyError: the topology file is wrong.
        ReplayError: the stream's shard lineage is inconsistent.
        botocore errors: credentials, endpoints (errors_cli explains them).
    """
    topology = load_topology(request.topology_path)
    started_at = datetime.now(UTC)
    stream_region = request.region or topology.stream.region
    target_region = request.target_region or stream_region
    source = boto3.Session(profile_name=request.profile) if request.profile else None
    target_profile = request.target_profile or request.profile
    target = boto3.Session(profile_name=target_profile) if target_profile else None
    kinesis = kinesis_client(region=stream_region, session=source)
    dynamodb = dynamodb_client(
        region=target_region, session=target, config=client_config(pool=APPLY_WORKERS + 4)
    )

    stream = resume.stream if resume is not None else topology.stream.name
    facts = describe_stream(kinesis, stream, stream_region)
    shards = list_shards(kinesis, stream)
    _check_lineage(shards)
    progress = resume.shards if resume is not None else None
    plans, done = plan_shards(shards, request, progress)
    _check_starts(kinesis, facts, shards, plans, request)

    if resume is not None:
        stop_time = resume.stop_time
        bound = _describe_bound(request, stop_time, resumed=True)
    else:
        stop_time = _stop_time(request, facts)
        bound = _describe_bound(request, stop_time, resumed=False)

    tables, other = choose_tables(topology.tables, request.tables, request.mapping)
    notes = _check_targets(dynamodb, topology, tables, request, target_region)
    if facts.retention_hours != topology.stream.retention_hours:
        notes.append(
            f"the stream keeps records {facts.retention_hours} h, the topology says "
            f"{topology.stream.retention_hours} h: fix stream.retention_hours"
        )
    run_id = resume.run_id if resume is not None else new_run_id()
    plan = ReplayPlan(
        request=request,
        stream=stream,
        stream_region=stream_region,
        kinesis_endpoint=facts.endpoint,
        retention_hours=facts.retention_hours,
        shards=tuple(plans),
        done=done,
        stop_time=stop_time,
        bound=bound,
        tables=tables,
        other_tables=other,
        target_region=target_region,
        dynamodb_endpoint=dynamodb.meta.endpoint_url,
        tombstone_table=topology.applier.tombstone_table,
        started_at=started_at,
        notes=tuple(notes),
    )

    state: ReplayState | None = None
    if resume is not None:
        state = resume
        state.set_status("running")
    elif not request.dry_run:
        path = state_path or default_state_path(state_dir, stream, started_at, run_id)
        state = ReplayState(
            path.resolve(),
            request,
            stream=stream,
            stop_time=stop_time,
            run_id=run_id,
            created_at=started_at,
            shards=dict(progress or {}),
        )
        state.save()

    stop = threading.Event()
    applier = None if request.dry_run else _applier(dynamodb, topology, request, tables, run_id)
    pacer = None
    chunk = CHUNK_RECORDS
    if rate_wcu is not None:
        pacer = _pacer(rate_wcu, stop)
        chunk = max(1, min(CHUNK_RECORDS, int(rate_wcu)))
    names = topology.applier
    runner = ReplayRunner(
        plan,
        kinesis=kinesis,
        schemas=topology.tables,
        applier=applier,
        write_units=functools.partial(
            write_units, version_attribute=names.version_attribute, id_attribute=names.id_attribute
        ),
        pacer=pacer,
        state=state,
        on_progress=on_progress,
        shard_workers=shard_workers,
        stop_after_records=stop_after_records,
        chunk_records=chunk,
        stop=stop,
    )
    return Prepared(plan, state, runner, topology, rate_wcu, run_id, applier)


def _check_lineage(shards: list[ShardInfo]) -> None:
    for shard in shards:
        try:
            check_lineage(shard.shard_id, list(shard.parents))
        except LineageError as exc:
            raise ReplayError(f"refusing to replay: {exc}") from exc


def _check_starts(
    kinesis: KinesisClient,
    facts: StreamFacts,
    shards: list[ShardInfo],
    plans: list[Any],
    request: ReplayRequest,
) -> None:
    """Every start position must still be in the stream: nothing may be skipped silently."""
    timed = False
    for plan in plans:
        start = plan.start
        if start.sequence is not None:
            given = plan.role == "origin" and start.sequence == request.from_sequence
            option = "--from-sequence" if given else f"the resume position of {plan.shard_id}"
            check_sequence_available(kinesis, facts, plan.shard_id, start.sequence, option)
        elif start.iterator_type == "AT_TIMESTAMP":
            timed = True
    if timed and request.from_time is not None:
        check_time_available(kinesis, facts, shards, request.from_time)


def _stop_time(request: ReplayRequest, facts: StreamFacts) -> datetime | None:
    if request.to_sequence is not None:
        return None
    if request.to_time is not None:
        if request.to_time > facts.server_now:
            raise ReplayInputError(
                f"--to-time {iso(request.to_time)} is in the future (the stream's clock says "
                f"{iso(facts.server_now)}); leave it out to stop at the tip as it is at the start"
            )
        return request.to_time
    return tip_time(facts)


def _describe_bound(request: ReplayRequest, stop_time: datetime | None, *, resumed: bool) -> str:
    if request.to_sequence is not None:
        return f"sequence {request.to_sequence} of {request.shard} (inclusive)"
    assert stop_time is not None
    if request.to_time is not None:
        return f"records that arrived by {iso(stop_time)} (--to-time)"
    when = "when the replay first started" if resumed else "now"
    return f"the tip {when}: records that arrived by {iso(stop_time)} (the stream's clock)"


def _check_targets(
    dynamodb: DynamoDBClient,
    topology: Topology,
    tables: tuple[Any, ...],
    request: ReplayRequest,
    region: str,
) -> list[str]:
    """Every target table exists with the primary's key, and so does the tombstone table.

    In a dry run a missing table is a note, not an error.
    """
    notes: list[str] = []
    endpoint = dynamodb.meta.endpoint_url

    def missing(name: str, what: str) -> None:
        message = (
            f"{what} {name!r} not found in region {region} (DynamoDB at {endpoint}): create it, "
            "or check --map / --replica / --target-region"
        )
        if not request.dry_run:
            raise ReplayInputError(message)
        notes.append(message)

    for table in tables:
        described = _describe_table(dynamodb, table.target)
        if described is None:
            missing(table.target, f"target table of {table.primary}")
            continue
        problem = _key_mismatch(described, topology.tables[table.primary])
        if problem:
            raise ReplayInputError(
                f"target table {table.target!r} has the key {problem}, but tables."
                f"{table.primary} in the topology has {_key_text(topology.tables[table.primary])}"
            )
        if request.force and not request.dry_run and described.get("ItemCount", 0):
            notes.append(
                f"{table.target} is not empty: its items keep their versions (newer items are "
                "not overwritten)"
            )
    if not request.dry_run and _describe_table(dynamodb, topology.applier.tombstone_table) is None:
        missing(topology.applier.tombstone_table, "tombstone table")
    if request.force:
        notes.append(
            "--force: tombstones written by others are ignored (this replay keeps its own); "
            "nothing else may write the target tables until it finishes"
        )
    elif request.bounded:
        notes.append(
            "bounded replay without --force: items deleted after the bound stay deleted; to "
            "rebuild tables as they were at the bound, replay into empty tables with --force"
        )
    return notes


def _describe_table(dynamodb: DynamoDBClient, name: str) -> Mapping[str, Any] | None:
    try:
        return dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


def _key_text(schema: KeySchema) -> str:
    return ", ".join(f"{a.name} ({a.type})" for a in schema.attributes)


def _key_mismatch(described: Mapping[str, Any], schema: KeySchema) -> str | None:
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    keys = sorted(described["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    actual = [(k["AttributeName"], types.get(k["AttributeName"], "?")) for k in keys]
    wanted = [(a.name, a.type) for a in schema.attributes]
    if actual == wanted:
        return None
    return ", ".join(f"{name} ({kind})" for name, kind in actual)


def _applier(
    dynamodb: DynamoDBClient,
    topology: Topology,
    request: ReplayRequest,
    tables: tuple[Any, ...],
    run_id: str,
) -> Applier:
    schemas = {t.primary: topology.tables[t.primary] for t in tables}
    mapping = {t.primary: t.target for t in tables}
    config = ApplierConfig.from_topology(topology, max_workers=APPLY_WORKERS)
    if request.force:
        # Its own tombstones: deletes after the replay's bound must not hide its items.
        config = dataclasses.replace(config, tombstone_namespace=f"replay/{run_id}/")
    return Applier(dynamodb, schemas, table_map=mapping, config=config)


def _pacer(rate_wcu: float, stop: threading.Event) -> Pacer:
    """kcl_consumer's token bucket held at one rate (min = max); throttling still lowers it."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise StopRequested

    config = PacerConfig(max_wcu=rate_wcu, min_wcu=rate_wcu, deadline_s=3600.0)
    return Pacer(config, sleep=sleep)


def start_kind(
    from_start: bool, from_time: str | None, from_sequence: str | None, after: bool
) -> StartKind:
    """The start option given (exactly one).

    Raises:
        ReplayInputError: none or several.
    """
    given = [from_start, from_time is not None, from_sequence is not None]
    if sum(given) != 1:
        raise ReplayInputError(
            "say where to start, once: --from-start, --from-time TIME, or --shard ID "
            "--from-sequence N (--after to start after it)"
        )
    if after and from_sequence is None:
        raise ReplayInputError("--after goes with --from-sequence")
    if from_start:
        return StartKind.TRIM_HORIZON
    if from_time is not None:
        return StartKind.TIME
    return StartKind.AFTER if after else StartKind.SEQUENCE
