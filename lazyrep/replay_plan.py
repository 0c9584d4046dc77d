"""What a replay will read: the request as the operator gave it, and the per-shard plan.

Pure logic, no AWS calls: `replay_stream.py` fetches the shard list, this module
decides which shards to read from where to where, in lineage order, and refuses
input that cannot work with an `ReplayInputError` that says what would.

Shard lineage: an item's records move to a child shard after SplitShard or
MergeShards, so a child is read only after every parent in the plan has been read
to its end (a parent cut short by the bound means every record of its children
lies beyond the bound too). Starting from a sequence number in one shard takes its
descendants too, keeping only their records whose partition key hashes into the
starting shard's range: the keys that shard held (a merged child also holds its
other parent's keys, whose earlier history the replay does not have).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from binlog.errors import LazyRepError

_SEQUENCE = re.compile(r"\d{1,128}", re.ASCII)
_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)([smhd])", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")


class ReplayInputError(LazyRepError, ValueError):
    """Input the replay refuses; the message says what is wrong and what would work (exit 2)."""


IteratorType = Literal[
    "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP", "TRIM_HORIZON"
]


class StartKind(StrEnum):
    """Where the replay starts (one per request)."""

    SEQUENCE = "at_sequence"  # --shard S --from-sequence N
    AFTER = "after_sequence"  # --shard S --from-sequence N --after
    TIME = "at_timestamp"  # --from-time T
    TRIM_HORIZON = "trim_horizon"  # --from-start


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """Everything the operator asked for, normalised; the state file stores it for --resume.

    `table_map` renames primary tables for the target (a replica's mapping already
    merged in); `tables` empty means every table of the topology.
    """

    topology_path: str
    start: StartKind
    shard: str | None = None
    from_sequence: str | None = None
    from_time: datetime | None = None
    to_sequence: str | None = None
    to_time: datetime | None = None
    tables: tuple[str, ...] = ()
    table_map: tuple[tuple[str, str], ...] = ()
    replica: str | None = None
    region: str | None = None
    target_region: str | None = None
    profile: str | None = None
    target_profile: str | None = None
    force: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.start in (StartKind.SEQUENCE, StartKind.AFTER):
            if not self.shard or not self.from_sequence:
                raise ReplayInputError(
                    "--from-sequence needs --shard: sequence numbers are per shard"
                )
        elif self.from_sequence is not None:
            raise ReplayInputError(
                "--from-sequence cannot be combined with --from-time or --from-start"
            )
        if self.start is StartKind.TIME and self.from_time is None:
            raise ReplayInputError("--from-time needs a time")
        if self.to_sequence is not None and not self.shard:
            raise ReplayInputError("--to-sequence needs --shard: sequence numbers are per shard")
        if self.to_sequence is not None and self.to_time is not None:
            raise ReplayInputError("give at most one of --to-sequence and --to-time")
        for name in ("from_sequence", "to_sequence"):
            value = getattr(self, name)
            if value is not None and _SEQUENCE.fullmatch(value) is None:
                option = "--" + name.replace("_", "-")
                raise ReplayInputError(f"{option} {value!r:.60} is not a Kinesis sequence number")
        if (
            self.from_sequence is not None
            and self.to_sequence is not None
            and int(self.to_sequence) < int(self.from_sequence)
        ):
            raise ReplayInputError(
                f"--to-sequence {self.to_sequence} is before --from-sequence {self.from_sequence}"
            )
        if (
            self.from_time is not None
            and self.to_time is not None
            and self.to_time < self.from_time
        ):
            raise ReplayInputError(
                f"--to-time {iso(self.to_time)} is before --from-time {iso(self.from_time)}"
            )

    @property
    def mapping(self) -> dict[str, str]:
        """Primary table -> target table, for the tables that are renamed."""
        return dict(self.table_map)

    @property
    def bounded(self) -> bool:
        """True if the replay stops before the tip (--to-sequence or --to-time)."""
        return self.to_sequence is not None or self.to_time is not None

    def to_json(self) -> dict[str, Any]:
        """The request as a JSON object (times ISO 8601 in UTC)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = iso(value)
            elif isinstance(value, StartKind):
                value = value.value
            elif name == "tables":
                value = list(value)
            elif name == "table_map":
                value = dict(value)
            out[name] = value
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReplayRequest:
        """Read `to_json`'s output back.

        Raises:
            ReplayInputError: a field is missing or malformed (a damaged state file).
        """
        try:
            values = dict(doc)
            values["start"] = StartKind(values["start"])
            for name in ("from_time", "to_time"):
                if values.get(name) is not None:
                    values[name] = parse_time(values[name], option=name)
            values["tables"] = tuple(values.get("tables") or ())
            values["table_map"] = tuple(sorted((values.get("table_map") or {}).items()))
            return cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayInputError(f"the state file's request is damaged: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One shard as ListShards describes it."""

    shard_id: str
    parents: tuple[str, ...]
    hash_range: tuple[int, int]
    starting_sequence: str
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        """A closed shard (split or merged) takes no more records; its end is known."""
        return self.ending_sequence is not None

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> ShardInfo:
        """From one entry of ListShards' `Shards`."""
        parents = tuple(
            p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
        )
        hashes = shard["HashKeyRange"]
        sequences = shard["SequenceNumberRange"]
        return cls(
            shard["ShardId"],
            parents,
            (int(hashes["StartingHashKey"]), int(hashes["EndingHashKey"])),
            sequences["StartingSequenceNumber"],
            sequences.get("EndingSequenceNumber"),
        )


@dataclass(frozen=True, slots=True)
class ShardStart:
    """Where to open a shard: a GetShardIterator type and its argument."""

    iterator_type: IteratorType
    sequence: str | None = None
    time: datetime | None = None

    def describe(self) -> str:
        """`at sequence N`, `after sequence N`, `at 2026-...Z`, `from the trim horizon`."""
        if self.iterator_type == "AT_SEQUENCE_NUMBER":
            return f"at sequence {self.sequence}"
        if self.iterator_type == "AFTER_SEQUENCE_NUMBER":
            return f"after sequence {self.sequence}"
        if self.iterator_type == "AT_TIMESTAMP" and self.time is not None:
            return f"at {iso(self.time)}"
        return "from the oldest record (trim horizon)"


class ShardStatus(StrEnum):
    """Where a shard stands in a replay (kept in the state file)."""

    PENDING = "pending"  # not read yet, or read part of the way (see `after`)
    ENDED = "ended"  # read to its end (closed) or to the tip (open): children may follow
    CUT = "cut"  # stopped at the bound: its children lie beyond it
    SKIPPED = "skipped"  # not read: a parent was cut, so every record is beyond the bound


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """One shard to read: after which parents, from where, to where, which keys."""

    shard_id: str
    parents: tuple[str, ...]
    start: ShardStart
    closed: bool
    stop_sequence: str | None = None
    hash_range: tuple[int, int] | None = None
    role: Literal["shard", "origin", "descendant"] = "shard"


@dataclass(frozen=True, slots=True)
class ShardProgress:
    """A shard's progress as the state file keeps it: resume after `after`."""

    status: ShardStatus = ShardStatus.PENDING
    after: str | None = None
    records: int = 0


@dataclass(frozen=True, slots=True)
class TableTarget:
    """A primary table and the table its records are written to."""

    primary: str
    target: str


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """A resolved replay: the stream, the shards in lineage order, the bound, the targets."""

    request: ReplayRequest
    stream: str
    stream_region: str
    kinesis_endpoint: str
    retention_hours: int
    shards: tuple[ShardPlan, ...]
    done: Mapping[str, ShardStatus]
    stop_time: datetime | None
    bound: str
    tables: tuple[TableTarget, ...]
    other_tables: tuple[str, ...]
    target_region: str
    dynamodb_endpoint: str
    tombstone_table: str
    started_at: datetime
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def target_of(self) -> dict[str, str]:
        """Primary table -> target table, for every table replayed."""
        return {t.primary: t.target for t in self.tables}


# -- parsing ---------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """UTC, ISO 8601, milliseconds, `Z`: one spelling in plans, state files and commands."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, *, option: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (no zone: UTC), or `-90m` / `-2h` / `-1d` before `now`.

    Raises:
        ReplayInputError: naming the option and the accepted forms.
    """
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ReplayInputError(
            f"{option} {text!r:.60} is not a time: give ISO 8601 (2026-01-31T04:00:00Z; "
            "no zone means UTC) or a time ago (-90m, -2h, -1d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_table_map(pairs: Iterable[str]) -> dict[str, str]:
    """`primary=target` pairs (each argument may hold several, comma-separated).

    Raises:
        ReplayInputError: a pair without `=`, an invalid table name, or a table mapped twice.
    """
    mapping: dict[str, str] = {}
    for argument in pairs:
        for pair in filter(None, (p.strip() for p in argument.split(","))):
            primary, sep, target = (s.strip() for s in pair.partition("="))
            if not sep or not primary or not target:
                raise ReplayInputError(
                    f"--map {pair!r}: give primary=target, e.g. orders=orders-restore"
                )
            if _TABLE_NAME.fullmatch(target) is None:
                raise ReplayInputError(
                    f"--map {pair!r}: {target!r} is not a DynamoDB table name "
                    "(3-255 characters of A-Z a-z 0-9 _ . -)"
                )
            if mapping.get(primary, target) != target:
                raise ReplayInputError(f"--map names table {primary!r} twice")
            mapping[primary] = target
    return mapping


def parse_tables(values: Iterable[str]) -> tuple[str, ...]:
    """`a,b` (the option may also be repeated), in order, without repeats."""
    names: list[str] = []
    for value in values:
        for name in filter(None, (n.strip() for n in value.split(","))):
            if name not in names:
                names.append(name)
    return tuple(names)


# -- choosing tables and shards ---------------------------------------------------------------


def choose_tables(
    known: Iterable[str], wanted: Sequence[str], mapping: Mapping[str, str]
) -> tuple[tuple[TableTarget, ...], tuple[str, ...]]:
    """The tables to replay (with their targets) and the topology's other tables.

    Raises:
        ReplayInputError: --tables or --map names a table the topology does not have.
    """
    known = list(known)
    for name in [*wanted, *mapping]:
        if name not in known:
            option = "--tables" if name in wanted else "--map"
            raise ReplayInputError(
                f"{option}: unknown table {name!r}: the topology's tables are {', '.join(known)}"
            )
    chosen = [name for name in known if not wanted or name in wanted]
    targets = tuple(TableTarget(name, mapping.get(name, name)) for name in chosen)
    seen: dict[str, str] = {}
    for target in targets:
        other = seen.setdefault(target.target, target.primary)
        if other != target.primary:
            raise ReplayInputError(
                f"--map: tables {other!r} and {target.primary!r} would both be written to "
                f"{target.target!r}"
            )
    return targets, tuple(name for name in known if name not in chosen)


def lineage_order(shards: Iterable[ShardInfo]) -> list[ShardInfo]:
    """Every shard after its parents (parents no longer listed are ignored), else by index."""
    by_id = {s.shard_id: s for s in shards}
    ordered: list[ShardInfo] = []
    seen: set[str] = set()

    def visit(shard: ShardInfo) -> None:
        if shard.shard_id in seen:
            return
        seen.add(shard.shard_id)
        for parent in shard.parents:
            if parent in by_id:
                visit(by_id[parent])
        ordered.append(shard)

    for shard in sorted(by_id.values(), key=lambda s: s.shard_id):
        visit(shard)
    return ordered


def descendants(shards: Iterable[ShardInfo], shard_id: str) -> set[str]:
    """The shard ids that descend from `shard_id` (children, their children, ...)."""
    shards = list(shards)
    found: set[str] = set()
    frontier = {shard_id}
    while frontier:
        children = {
            s.shard_id
            for s in shards
            if s.shard_id not in found and any(p in frontier for p in s.parents)
        }
        found |= children
        frontier = children
    return found


def check_sequence_in_shard(shard: ShardInfo, sequence: str, option: str) -> None:
    """Refuse a sequence number outside the shard's range (numbers compare within a shard).

    Raises:
        ReplayInputError: naming the shard's range.
    """
    number = int(sequence)
    low = int(shard.starting_sequence)
    high = int(shard.ending_sequence) if shard.ending_sequence is not None else None
    if number < low or (high is not None and number > high):
        span = f"{shard.starting_sequence} to {shard.ending_sequence or '(open)'}"
        raise ReplayInputError(
            f"{option} {sequence} is not in {shard.shard_id}: its sequence numbers run {span}; "
            "sequence numbers belong to one shard (the producer's result and the dead letters "
            "name both)"
        )


def plan_shards(
    shards: Sequence[ShardInfo],
    request: ReplayRequest,
    progress: Mapping[str, ShardProgress] | None = None,
) -> tuple[list[ShardPlan], dict[str, ShardStatus]]:
    """The shards to read, in lineage order, and those already finished (from `progress`).

    Raises:
        ReplayInputError: --shard is not a shard of the stream, or a sequence number is not in it.
    """
    progress = progress or {}
    by_id = {s.shard_id: s for s in shards}
    origin = request.shard
    hash_range: tuple[int, int] | None = None
    if origin is not None:
        if origin not in by_id:
            listed = ", ".join(sorted(by_id)) or "none"
            raise ReplayInputError(
                f"--shard {origin} is not a shard of the stream (its shards: {listed}); "
                "closed shards older than the retention are no longer listed"
            )
        for option, value in (
            ("--from-sequence", request.from_sequence),
            ("--to-sequence", request.to_sequence),
        ):
            if value is not None:
                check_sequence_in_shard(by_id[origin], value, option)
        selected = {origin}
        if request.to_sequence is None:
            selected |= descendants(shards, origin)
        hash_range = by_id[origin].hash_range
    else:
        selected = set(by_id)
    plans: list[ShardPlan] = []
    done: dict[str, ShardStatus] = {}
    for shard in lineage_order(by_id[s] for s in selected):
        saved = progress.get(shard.shard_id, ShardProgress())
        if saved.status is not ShardStatus.PENDING:
            done[shard.shard_id] = saved.status
            continue
        is_origin = shard.shard_id == origin
        if saved.after is not None:
            start = ShardStart("AFTER_SEQUENCE_NUMBER", sequence=saved.after)
        else:
            start = _first_start(request, is_origin=is_origin or origin is None)
        plans.append(
            ShardPlan(
                shard.shard_id,
                tuple(p for p in shard.parents if p in selected),
                start,
                shard.closed,
                request.to_sequence if is_origin else None,
                None if is_origin or origin is None else hash_range,
                "shard" if origin is None else "origin" if is_origin else "descendant",
            )
        )
    return plans, done


def _first_start(request: ReplayRequest, *, is_origin: bool) -> ShardStart:
    if request.start is StartKind.TIME:
        return ShardStart("AT_TIMESTAMP", time=request.from_time)
    if not is_origin or request.start is StartKind.TRIM_HORIZON:
        # A descendant's records all follow its parent's end, so all of them follow the start.
        return ShardStart("TRIM_HORIZON")
    kind: IteratorType = (
        "AT_SEQUENCE_NUMBER" if request.start is StartKind.SEQUENCE else "AFTER_SEQUENCE_NUMBER"
    )
    return ShardStart(kind, sequence=request.from_sequence)


def hash_key(partition_key: str) -> int:
    """Where Kinesis routes a partition key: MD5 of its UTF-8 bytes as a 128-bit integer."""
    return int.from_bytes(
        hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest()
    )


def ready(plan: ShardPlan, finished: Mapping[str, ShardStatus]) -> bool:
    """True once every parent in the replay has ended (or been cut: see `blocked`)."""
    return all(parent in finished for parent in plan.parents)


def blocked(plan: ShardPlan, finished: Mapping[str, ShardStatus]) -> bool:
    """True if a parent stopped at the bound or was skipped: this shard lies beyond it."""
    return any(
        finished.get(parent) in (ShardStatus.CUT, ShardStatus.SKIPPED) for parent in plan.parents
    )


def lost_window(
    *,
    from_time: datetime,
    now: datetime,
    retention_hours: int,
    created: datetime | None,
) -> tuple[datetime, datetime] | None:
    """The span of arrival times whose records Kinesis has deleted, if the replay needs them.

    Records older than the retention are gone; the stream holds nothing from before
    its creation anyway, so a stream younger than its retention has lost nothing.
    """
    horizon = now - timedelta(hours=retention_hours)
    begin = max(from_time, created) if created is not None else from_time
    return (begin, horizon) if begin < horizon else None
