"""The topology file: the stream, the primary tables, the replica targets, the dead letters.

One TOML file describes the whole deployment, so onboarding a table or a region is
an edit here. The loader validates everything up front and names the field and
what it allows, because a typo found by a consumer at 3 a.m. is a lost night.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from binlog.errors import TopologyError

KeyType = Literal["S", "N", "B"]
KEY_TYPES: tuple[KeyType, ...] = ("S", "N", "B")

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d", re.ASCII)
_MIN_RETENTION_HOURS = 24
_MAX_RETENTION_HOURS = 8760


@dataclass(frozen=True, slots=True)
class KeyAttribute:
    """One attribute of a table's primary key."""

    name: str
    type: KeyType

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("key attribute name must not be empty")
        if self.type not in KEY_TYPES:
            raise ValueError(f"key attribute type must be one of {', '.join(KEY_TYPES)}")


@dataclass(frozen=True, slots=True)
class KeySchema:
    """A table's primary key: a partition key and an optional sort key."""

    partition: KeyAttribute
    sort: KeyAttribute | None = None
    # Derived once: every record's key is checked against them.
    attributes: tuple[KeyAttribute, ...] = field(init=False, repr=False, compare=False)
    names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        attributes = (self.partition,) if self.sort is None else (self.partition, self.sort)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "names", frozenset(a.name for a in attributes))


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """The Kinesis stream that is the binlog."""

    name: str
    region: str
    retention_hours: int = 24
    shards: int = 2


@dataclass(frozen=True, slots=True)
class ReplicaTarget:
    """One lazily replicated copy: its own region, table names, capacity and deadline."""

    name: str
    region: str
    max_wcu: float
    deadline_hours: float
    tables: Mapping[str, str] = field(default_factory=dict)
    application_name: str = ""

    def replica_table(self, primary: str) -> str:
        """The replica's table name for a primary table (the same name unless mapped)."""
        return self.tables.get(primary, primary)


@dataclass(frozen=True, slots=True)
class DeadLetterConfig:
    """Where consumers park records they cannot apply."""

    kind: Literal["sqs", "s3"]
    name: str
    region: str
    prefix: str = "dead-letters/"


@dataclass(frozen=True, slots=True)
class ApplierNames:
    """Names the appliers store and use: every consumer of one stream must agree on them."""

    version_attribute: str = "_lr_version"
    id_attribute: str = "_lr_id"
    tombstone_table: str = "lazyrep-tombstones"


@dataclass(frozen=True, slots=True)
class Topology:
    """The whole deployment, as loaded and validated from the topology file."""

    stream: StreamConfig
    tables: Mapping[str, KeySchema]
    replicas: Mapping[str, ReplicaTarget]
    dead_letter: DeadLetterConfig | None = None
    safety_margin_hours: float = 2.0
    applier: ApplierNames = field(default_factory=ApplierNames)

    @property
    def tombstone_ttl_s(self) -> int:
        """How long tombstones must live: the stream's retention plus the safety margin."""
        return int((self.stream.retention_hours + self.safety_margin_hours) * 3600)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology TOML file.

    Raises:
        TopologyError: the file is missing, not TOML, or a field is wrong.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TopologyError(str(path), "no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(str(path), f"not valid TOML: {exc}") from exc
    return parse_topology(raw)


def parse_topology(raw: Mapping[str, Any]) -> Topology:
    """Validate an already parsed topology document (see `load_topology`).

    Raises:
        TopologyError: a field is missing, unknown or out of range.
    """
    _only(
        raw, "", {"stream", "tables", "replicas", "dead_letter", "safety_margin_hours", "applier"}
    )
    stream = _stream(_table(raw, "stream"))
    tables_raw = _table(raw, "tables")
    if not tables_raw:
        raise TopologyError("tables", "at least one primary table is required")
    tables = {name: _key_schema(f"tables.{name}", name, spec) for name, spec in tables_raw.items()}
    margin = _number(
        raw, "", "safety_margin_hours", default=2.0, low=0.0, high=stream.retention_hours
    )
    replicas_raw = raw.get("replicas", {})
    if not isinstance(replicas_raw, dict):
        raise TopologyError("replicas", "must be a table of replica targets")
    replicas = {
        name: _replica(f"replicas.{name}", name, spec, tables, stream, margin)
        for name, spec in replicas_raw.items()
    }
    applications: dict[str, str] = {}
    for name, replica in replicas.items():
        other = applications.setdefault(replica.application_name, name)
        if other != name:
            raise TopologyError(
                f"replicas.{name}.application_name",
                f"{replica.application_name!r} is also replica {other!r}'s: each replica needs "
                "its own KCL application (own lease table and checkpoints)",
            )
    dead_letter = None
    if "dead_letter" in raw:
        dead_letter = _dead_letter(_table(raw, "dead_letter"), stream.region)
    applier = _applier(raw.get("applier", {}))
    return Topology(stream, tables, replicas, dead_letter, margin, applier)


def _applier(raw: object) -> ApplierNames:
    if not isinstance(raw, dict):
        raise TopologyError("applier", "must be a table")
    _only(raw, "applier", {"version_attribute", "id_attribute", "tombstone_table"})
    defaults = ApplierNames()
    names = {}
    for name in ("version_attribute", "id_attribute"):
        value = raw.get(name, getattr(defaults, name))
        if not isinstance(value, str) or not 1 <= len(value) <= 255:
            raise TopologyError(f"applier.{name}", "must be an attribute name of 1-255 characters")
        names[name] = value
    if names["version_attribute"] == names["id_attribute"]:
        raise TopologyError("applier.id_attribute", "must differ from applier.version_attribute")
    tombstones = raw.get("tombstone_table", defaults.tombstone_table)
    if not isinstance(tombstones, str) or _TABLE_NAME.fullmatch(tombstones) is None:
        raise TopologyError("applier.tombstone_table", f"{tombstones!r} is not a table name")
    return ApplierNames(names["version_attribute"], names["id_attribute"], tombstones)


def _table(raw: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    field_name = f"{where}.{name}" if where else name
    if name not in raw:
        raise TopologyError(field_name, "is required")
    value = raw[name]
    if not isinstance(value, dict):
        raise TopologyError(field_name, "must be a table")
    return value


def _only(raw: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        field_name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise TopologyError(field_name, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _string(
    raw: Mapping[str, Any],
    where: str,
    name: str,
    pattern: re.Pattern[str],
    what: str,
    default: str | None = None,
) -> str:
    field_name = f"{where}.{name}"
    value = raw.get(name, default)
    if value is None:
        raise TopologyError(field_name, "is required")
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise TopologyError(field_name, f"{value!r} is not {what}")
    return value


def _number(
    raw: Mapping[str, Any], where: str, name: str, *, default: float | None, low: float, high: float
) -> float:
    field_name = f"{where}.{name}" if where else name
    value = raw.get(name, default)
    if value is None:
        raise TopologyError(field_name, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TopologyError(field_name, f"must be a number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise TopologyError(field_name, f"{value:g} is out of range (allowed {low:g} to {high:g})")
    return float(value)


def _stream(raw: dict[str, Any]) -> StreamConfig:
    _only(raw, "stream", {"name", "region", "retention_hours", "shards"})
    name = _string(raw, "stream", "name", _STREAM_NAME, "a stream name ([A-Za-z0-9_.-], 1-128)")
    region = _string(raw, "stream", "region", _REGION, "a region name like us-east-1")
    retention = _number(
        raw,
        "stream",
        "retention_hours",
        default=24,
        low=_MIN_RETENTION_HOURS,
        high=_MAX_RETENTION_HOURS,
    )
    shards = _number(raw, "stream", "shards", default=2, low=1, high=10_000)
    if retention != int(retention) or shards != int(shards):
        raise TopologyError("stream", "retention_hours and shards must be whole numbers")
    return StreamConfig(name, region, int(retention), int(shards))


def _key_attribute(where: str, raw: object) -> KeyAttribute:
    if not isinstance(raw, dict):
        raise TopologyError(where, 'must be a table like { name = "pk", type = "S" }')
    _only(raw, where, {"name", "type"})
    name = raw.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise TopologyError(f"{where}.name", "must be an attribute name of 1-255 characters")
    kind = raw.get("type")
    if kind not in KEY_TYPES:
        raise TopologyError(f"{where}.type", f"{kind!r} is not a key type (allowed: S, N, B)")
    return KeyAttribute(name, cast(KeyType, kind))


def _key_schema(where: str, table: str, raw: object) -> KeySchema:
    if _TABLE_NAME.fullmatch(table) is None:
        raise TopologyError(where, "table names are 3-255 characters of [A-Za-z0-9_.-]")
    if not isinstance(raw, dict):
        raise TopologyError(where, "must be a table with partition_key (and sort_key)")
    _only(raw, where, {"partition_key", "sort_key"})
    if "partition_key" not in raw:
        raise TopologyError(f"{where}.partition_key", "is required")
    partition = _key_attribute(f"{where}.partition_key", raw["partition_key"])
    sort = _key_attribute(f"{where}.sort_key", raw["sort_key"]) if "sort_key" in raw else None
    if sort is not None and sort.name == partition.name:
        raise TopologyError(f"{where}.sort_key.name", "must differ from the partition key")
    return KeySchema(partition, sort)


def _replica(
    where: str,
    name: str,
    raw: object,
    tables: Mapping[str, KeySchema],
    stream: StreamConfig,
    margin: float,
) -> ReplicaTarget:
    if _APP_NAME.fullmatch(name) is None:
        raise TopologyError(where, "replica names are [A-Za-z0-9_.-], 1-200 characters")
    if not isinstance(raw, dict):
        raise TopologyError(where, "must be a table")
    _only(raw, where, {"region", "max_wcu", "deadline_hours", "tables", "application_name"})
    region = _string(raw, where, "region", _REGION, "a region name like eu-west-1")
    max_wcu = _number(raw, where, "max_wcu", default=None, low=1, high=40_000)
    limit = stream.retention_hours - margin
    deadline = _number(
        raw, where, "deadline_hours", default=None, low=0.01, high=stream.retention_hours
    )
    if deadline > limit:
        raise TopologyError(
            f"{where}.deadline_hours",
            f"{deadline:g} h does not fit the stream's {stream.retention_hours} h retention minus "
            f"the {margin:g} h safety margin (at most {limit:g}); shorten it or raise "
            "stream.retention_hours",
        )
    mapping_raw = raw.get("tables", {})
    if not isinstance(mapping_raw, dict):
        raise TopologyError(f"{where}.tables", "must map primary table names to replica names")
    mapping: dict[str, str] = {}
    for primary, replica in mapping_raw.items():
        if primary not in tables:
            raise TopologyError(
                f"{where}.tables.{primary}",
                f"not a primary table (known: {', '.join(sorted(tables))})",
            )
        if not isinstance(replica, str) or _TABLE_NAME.fullmatch(replica) is None:
            raise TopologyError(f"{where}.tables.{primary}", f"{replica!r} is not a table name")
        mapping[primary] = replica
    app = _string(
        raw,
        where,
        "application_name",
        _APP_NAME,
        "a KCL application name",
        default=f"lazyrep-{name}",
    )
    return ReplicaTarget(name, region, max_wcu, deadline, mapping, app)


def _dead_letter(raw: dict[str, Any], default_region: str) -> DeadLetterConfig:
    _only(raw, "dead_letter", {"kind", "name", "region", "prefix"})
    kind = raw.get("kind")
    if kind not in ("sqs", "s3"):
        raise TopologyError("dead_letter.kind", f"{kind!r} is not a store (allowed: sqs, s3)")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise TopologyError("dead_letter.name", "must be the queue or bucket name")
    region = _string(raw, "dead_letter", "region", _REGION, "a region name", default=default_region)
    prefix = raw.get("prefix", "dead-letters/")
    if not isinstance(prefix, str):
        raise TopologyError("dead_letter.prefix", "must be a string")
    return DeadLetterConfig(cast(Literal["sqs", "s3"], kind), name, region, prefix)
