"""The replay runner and shard reader against a scripted Kinesis and a scripted applier.

GIVEN shards with records (and lineage), an applier that answers per record;
WHEN the runner reads them;
THEN parents go before children, bounds cut where they should, transient failures are
retried, positions are saved only past finished records, and a stopped replay resumed
from its state applies every record (none skipped).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from binlog.applier import Applier, ApplierConfig, ApplyResult, Outcome
from binlog.capacity import write_units
from binlog.codec import encode
from binlog.envelope import Action, Envelope
from binlog.records import SourcedRecord
from binlog.topology import KeyAttribute, KeySchema
from lazyrep.cli_replay import replay
from lazyrep.replay_plan import (
    ReplayPlan,
    ReplayRequest,
    ShardInfo,
    ShardPlan,
    ShardProgress,
    ShardStart,
    ShardStatus,
    StartKind,
    TableTarget,
    hash_key,
    plan_shards,
)
from lazyrep.replay_run import ReplayError, ReplayRunner
from lazyrep.replay_state import ReplayState
from lazyrep.replay_stream import EndReason, ShardReader

T0 = datetime(2026, 1, 31, 4, 0, tzinfo=UTC)
SCHEMAS = {
    "users": KeySchema(KeyAttribute("pk", "S")),
    "orders": KeySchema(KeyAttribute("pk", "S")),
}


def envelope(n: int, table: str = "users", key: str | None = None) -> Envelope:
    pk = {"pk": {"S": key or f"item-{n}"}}
    return Envelope(f"id-{n}", n, Action.PUT, table, pk, item={**pk, "n": {"N": str(n)}})


@dataclass
class Rec:
    sequence: int
    data: bytes
    arrival: datetime
    partition_key: str = "pk"


@dataclass
class FakeKinesis:
    """Shards of records; iterators are `shard|index`; pages of `Limit` records."""

    shards: dict[str, list[Rec]]
    closed: set[str] = field(default_factory=set)
    expire_once: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def get_shard_iterator(self, **kw: Any) -> dict[str, str]:
        records = self.shards[kw["ShardId"]]
        kind = kw["ShardIteratorType"]
        if kind == "TRIM_HORIZON":
            index = 0
        elif kind == "AT_TIMESTAMP":
            index = next(
                (i for i, r in enumerate(records) if r.arrival >= kw["Timestamp"]), len(records)
            )
        else:
            n = int(kw["StartingSequenceNumber"])
            after = kind == "AFTER_SEQUENCE_NUMBER"
            index = next(
                (
                    i
                    for i, r in enumerate(records)
                    if r.sequence > n or (not after and r.sequence == n)
                ),
                len(records),
            )
        return {"ShardIterator": f"{kw['ShardId']}|{index}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        shard_id, index_text = ShardIterator.split("|")
        self.calls.append(ShardIterator)
        if shard_id in self.expire_once:
            self.expire_once.discard(shard_id)
            raise ClientError(
                {"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}}, "GetRecords"
            )
        index = int(index_text)
        records = self.shards[shard_id]
        page = records[index : index + Limit]
        end = index + len(page)
        at_end = end >= len(records)
        next_iterator = None if at_end and shard_id in self.closed else f"{shard_id}|{end}"
        return {
            "Records": [
                {
                    "SequenceNumber": str(r.sequence),
                    "PartitionKey": r.partition_key,
                    "ApproximateArrivalTimestamp": r.arrival,
                    "Data": r.data,
                }
                for r in page
            ],
            "NextShardIterator": next_iterator,
            "MillisBehindLatest": 0 if at_end else 1000,
        }


class ScriptedApplier:
    """Answers APPLIED unless `script(record, attempt)` says otherwise; keeps the order."""

    def __init__(self, script: Callable[[SourcedRecord, int], Outcome] | None = None) -> None:
        self.script = script or (lambda record, attempt: Outcome.APPLIED)
        self.attempts: dict[str, int] = {}
        self.applied: list[str] = []
        self.lock = threading.Lock()

    def apply_batch(self, records: Sequence[SourcedRecord]) -> list[ApplyResult]:
        results = []
        with self.lock:
            for record in records:
                attempt = self.attempts.get(record.envelope.id, 0)
                self.attempts[record.envelope.id] = attempt + 1
                outcome = self.script(record, attempt)
                if outcome is Outcome.APPLIED:
                    self.applied.append(record.envelope.id)
                code = "ThrottlingException" if outcome is Outcome.RETRY else ""
                results.append(ApplyResult(outcome, code, "scripted"))
        return results


def records(shard: int, count: int, *, first: int = 0, table: str = "users") -> list[Rec]:
    return [
        Rec(
            shard * 1000 + i,
            encode(envelope(shard * 1000 + i, table)),
            T0 + timedelta(seconds=shard * 100 + i),
        )
        for i in range(first, first + count)
    ]


def info(index: int, parents: tuple[int, ...] = (), closed: bool = False) -> ShardInfo:
    return ShardInfo(
        f"shardId-{index:012d}",
        tuple(f"shardId-{p:012d}" for p in parents),
        (0, 2**128 - 1),
        "0",
        "999999" if closed else None,
    )


def make_plan(
    shards: list[ShardInfo],
    request: ReplayRequest,
    *,
    stop_time: datetime | None = T0 + timedelta(days=1),
    progress: dict[str, ShardProgress] | None = None,
    tables: tuple[str, ...] = ("users",),
) -> ReplayPlan:
    plans, done = plan_shards(shards, request, progress)
    return ReplayPlan(
        request=request,
        stream="binlog",
        stream_region="us-east-1",
        kinesis_endpoint="http://kinesis",
        retention_hours=24,
        shards=tuple(plans),
        done=done,
        stop_time=stop_time,
        bound="test",
        tables=tuple(TableTarget(t, t) for t in tables),
        other_tables=(),
        target_region="us-east-1",
        dynamodb_endpoint="http://dynamodb",
        tombstone_table="tombstones",
        started_at=T0,
    )


def runner(plan: ReplayPlan, kinesis: FakeKinesis, applier: Any, **kw: Any) -> ReplayRunner:
    return ReplayRunner(
        plan,
        kinesis=kinesis,  # type: ignore[arg-type]
        schemas=SCHEMAS,
        applier=applier,
        write_units=write_units,
        backoff_s=0.001,
        **kw,
    )


FROM_START = ReplayRequest("t.toml", StartKind.TRIM_HORIZON)
SPLIT = [info(0, closed=True), info(1, (0,)), info(2, (0,))]


def split_stream() -> FakeKinesis:
    return FakeKinesis(
        {
            "shardId-000000000000": records(0, 5),
            "shardId-000000000001": records(1, 4),
            "shardId-000000000002": records(2, 4),
        },
        closed={"shardId-000000000000"},
    )


# -- the runner ------------------------------------------------------------------------------


def test_parents_are_replayed_before_their_children() -> None:
    applier = ScriptedApplier()
    report = runner(make_plan(SPLIT, FROM_START), split_stream(), applier).run()
    assert report.status == "finished"
    assert applier.applied[:5] == [f"id-{i}" for i in range(5)]
    assert sorted(applier.applied[5:]) == sorted(
        [f"id-{1000 + i}" for i in range(4)] + [f"id-{2000 + i}" for i in range(4)]
    )
    assert report.shards == {s.shard_id: "ended" for s in SPLIT}
    assert report.tables["users"].applied == 13
    assert report.records_read == report.user_records == 13


def test_a_parent_cut_by_the_bound_skips_its_children(tmp_path: Path) -> None:
    plan = make_plan(SPLIT, FROM_START, stop_time=T0 + timedelta(seconds=2))
    state = ReplayState(
        tmp_path / "s.json",
        FROM_START,
        stream="binlog",
        stop_time=plan.stop_time,
        run_id="r",
        created_at=T0,
    )
    applier = ScriptedApplier()
    report = runner(plan, split_stream(), applier, state=state).run()
    assert report.status == "finished"
    assert applier.applied == ["id-0", "id-1", "id-2"]
    assert report.shards == {
        "shardId-000000000000": "cut",
        "shardId-000000000001": "skipped",
        "shardId-000000000002": "skipped",
    }
    saved = ReplayState.load(tmp_path / "s.json")
    assert saved.status == "finished"
    assert saved.shards["shardId-000000000000"] == ShardProgress(ShardStatus.CUT, "2", 3)


def test_transient_failures_are_retried_and_slow_the_pacer() -> None:
    class Pacer:
        throttles = 0
        spent = 0.0

        def acquire(self, wcu: float, arrival_ms: int | None = None) -> float:
            self.spent += wcu
            return 0.0

        def record_throttle(self) -> None:
            self.throttles += 1

    def flaky(record: SourcedRecord, attempt: int) -> Outcome:
        return Outcome.RETRY if record.envelope.id == "id-1" and attempt < 2 else Outcome.APPLIED

    pacer = Pacer()
    kinesis = FakeKinesis({"shardId-000000000000": records(0, 3)})
    applier = ScriptedApplier(flaky)
    report = runner(make_plan([info(0)], FROM_START), kinesis, applier, pacer=pacer).run()
    assert report.status == "finished"
    assert applier.applied == ["id-0", "id-2", "id-1"]
    assert pacer.throttles == 2
    assert pacer.spent == report.wcu > 0


def test_a_lasting_failure_stops_the_replay_without_moving_past_it(tmp_path: Path) -> None:
    def broken(record: SourcedRecord, attempt: int) -> Outcome:
        return Outcome.RETRY if record.envelope.id == "id-7" else Outcome.APPLIED

    kinesis = FakeKinesis({"shardId-000000000000": records(0, 10)})
    state = ReplayState(
        tmp_path / "s.json",
        FROM_START,
        stream="binlog",
        stop_time=None,
        run_id="r",
        created_at=T0,
    )
    run = runner(
        make_plan([info(0)], FROM_START),
        kinesis,
        ScriptedApplier(broken),
        state=state,
        chunk_records=5,
        max_attempts=3,
    )
    report = run.run()
    assert report.status == "failed"
    assert isinstance(report.error, ReplayError)
    assert "from sequence 7 after 3 attempts: ThrottlingException" in str(report.error)
    saved = ReplayState.load(tmp_path / "s.json")
    assert saved.status == "failed"
    assert saved.shards["shardId-000000000000"] == ShardProgress(ShardStatus.PENDING, "4", 5)


def test_undecodable_records_and_other_tables_are_counted_not_applied() -> None:
    recs = records(0, 3)
    recs.insert(1, Rec(50, b"not json", T0))
    recs.append(Rec(60, encode(envelope(60, "orders")), T0))
    recs.append(Rec(70, encode(envelope(70, "secrets")), T0))
    kinesis = FakeKinesis({"shardId-000000000000": recs})
    applier = ScriptedApplier()
    report = runner(make_plan([info(0)], FROM_START), kinesis, applier).run()
    assert applier.applied == ["id-0", "id-1", "id-2"]
    assert report.undecodable == 2
    assert report.filtered_tables == 1
    assert [(e["sequence_number"], e["reason"]) for e in report.not_applied] == [
        ("50", "not_json"),
        ("70", "unauthorized_table"),
    ]
    assert report.not_applied_total == 2


def test_descendants_keep_only_the_starting_shards_keys() -> None:
    keys = [f"key-{i}" for i in range(40)]
    low = sorted(hash_key(k) for k in keys)[20]
    recs = [
        Rec(i, encode(envelope(i, key=k)), T0 + timedelta(seconds=i), partition_key=k)
        for i, k in enumerate(keys)
    ]
    shard = ShardPlan(
        "shardId-000000000001",
        (),
        ShardStart("TRIM_HORIZON"),
        False,
        None,
        (low, 2**128 - 1),
        "descendant",
    )
    plan = dataclasses.replace(make_plan([info(1)], FROM_START), shards=(shard,))
    applier = ScriptedApplier()
    report = runner(plan, FakeKinesis({"shardId-000000000001": recs}), applier).run()
    assert report.filtered_keys == 20
    assert sorted(applier.applied) == sorted(
        f"id-{i}" for i, k in enumerate(keys) if hash_key(k) >= low
    )


def test_a_dry_run_counts_actions_and_applies_nothing() -> None:
    report = runner(make_plan(SPLIT, FROM_START), split_stream(), None).run()
    counts = report.tables["users"]
    assert dict(counts.actions) == {"PutItem": 13}
    assert counts.applied == 0
    assert len(counts.samples) == 3
    assert counts.samples[0].startswith("shardId-000000000000/0 PutItem users {pk=item-0}")


def test_stopped_then_resumed_from_the_state_applies_every_record(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    state = ReplayState(
        path,
        FROM_START,
        stream="binlog",
        stop_time=T0 + timedelta(days=1),
        run_id="r",
        created_at=T0,
    )
    first = ScriptedApplier()
    stopped = runner(
        make_plan(SPLIT, FROM_START),
        split_stream(),
        first,
        state=state,
        chunk_records=2,
        stop_after_records=4,
        shard_workers=1,
    ).run()
    assert stopped.status == "interrupted"
    assert first.applied == ["id-0", "id-1", "id-2", "id-3"]

    saved = ReplayState.load(path)
    assert saved.status == "interrupted"
    second = ScriptedApplier()
    resumed = runner(
        make_plan(SPLIT, FROM_START, progress=saved.shards),
        split_stream(),
        second,
        state=saved,
    ).run()
    assert resumed.status == "finished"
    assert second.applied[0] == "id-4"
    assert sorted(first.applied + second.applied) == sorted(
        [f"id-{i}" for i in range(5)]
        + [f"id-{1000 + i}" for i in range(4)]
        + [f"id-{2000 + i}" for i in range(4)]
    )
    assert ReplayState.load(path).finished


# -- the shard reader ------------------------------------------------------------------------


def read(
    kinesis: FakeKinesis, plan: ShardPlan, stop_time: datetime | None = None
) -> tuple[list[str], EndReason | None]:
    reader = ShardReader(
        kinesis, "binlog", plan, stop_time=stop_time, wait=lambda s: False, page_limit=3
    )  # type: ignore[arg-type]
    got: list[str] = []
    end = None
    for page in reader.pages():
        got += [r.sequence_number for r in page.records]
        end = page.end
    return got, end


def test_reader_bounds_and_ends() -> None:
    kinesis = FakeKinesis({"s": records(0, 7)}, closed=set())
    open_plan = ShardPlan("s", (), ShardStart("TRIM_HORIZON"), False)
    assert read(kinesis, open_plan) == ([str(i) for i in range(7)], EndReason.ENDED)
    assert read(kinesis, open_plan, T0 + timedelta(seconds=4)) == (
        [str(i) for i in range(5)],
        EndReason.CUT,
    )
    to_sequence = ShardPlan("s", (), ShardStart("AT_SEQUENCE_NUMBER", "2"), False, "5")
    assert read(kinesis, to_sequence) == (["2", "3", "4", "5"], EndReason.CUT)
    after = ShardPlan("s", (), ShardStart("AFTER_SEQUENCE_NUMBER", "5"), False)
    assert read(kinesis, after) == (["6"], EndReason.ENDED)
    closed = FakeKinesis({"s": records(0, 4)}, closed={"s"})
    assert read(closed, ShardPlan("s", (), ShardStart("TRIM_HORIZON"), True)) == (
        ["0", "1", "2", "3"],
        EndReason.ENDED,
    )


def test_reader_reopens_an_expired_iterator_after_the_last_record() -> None:
    kinesis = FakeKinesis({"s": records(0, 7)})
    plan = ShardPlan("s", (), ShardStart("TRIM_HORIZON"), False)
    reader = ShardReader(
        kinesis, "binlog", plan, stop_time=None, wait=lambda s: False, page_limit=3
    )  # type: ignore[arg-type]
    pages = reader.pages()
    assert [r.sequence_number for r in next(pages).records] == ["0", "1", "2"]
    kinesis.expire_once.add("s")
    rest = [r.sequence_number for page in pages for r in page.records]
    assert rest == ["3", "4", "5", "6"]


# -- --force ---------------------------------------------------------------------------------


def test_force_keeps_tombstones_in_the_replays_own_namespace() -> None:
    config = ApplierConfig(tombstone_namespace="replay/run1/")
    forced = Applier(None, SCHEMAS, table_map={"users": "users-r"}, config=config)  # type: ignore[arg-type]
    identity = forced.item_identity(envelope(1))
    assert identity.startswith(b"users-r\n")
    # Table names cannot contain "/": these keys never meet the live consumers' tombstones.
    assert forced._tombstone_key(envelope(1)) == {"k": {"B": b"replay/run1/" + identity}}


# -- command-line mistakes caught before any AWS call ----------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--topology", "t.toml"], "say where to start"),
        (["--topology", "t.toml", "--from-start", "--from-time", "-1h"], "say where to start"),
        (["--topology", "t.toml", "--from-sequence", "1"], "--from-sequence needs --shard"),
        (["--topology", "t.toml", "--from-start", "--after"], "--after goes with --from-sequence"),
        (["--topology", "t.toml", "--from-start", "--map", "x"], "give primary=target"),
        (["--topology", "t.toml", "--from-time", "soon"], "is not a time"),
        (["--from-start"], "--topology FILE is required"),
        (["--resume", "s.json", "--force"], "leave out --force"),
        (["--topology", "no-such.toml", "--from-start"], "no such file"),
    ],
)
def test_usage_mistakes_give_one_line_and_exit_2(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(replay, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lazyrep: error: ")
    assert needle in lines[0]
