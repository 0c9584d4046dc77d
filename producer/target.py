"""Where a producer writes and which tables it may write, resolved in one place.

Explicit arguments win; then the topology file (argument, or `LAZYREP_TOPOLOGY`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from binlog.topology import KeySchema, Topology, load_topology

TOPOLOGY_ENV = "LAZYREP_TOPOLOGY"


@dataclass(frozen=True, slots=True)
class Target:
    """The stream (name or ARN), its region, and the writable tables with their keys."""

    stream: str
    region: str | None
    tables: Mapping[str, KeySchema]

    def stream_argument(self) -> dict[str, str]:
        """`StreamARN` or `StreamName`, as the Kinesis API wants it."""
        if self.stream.startswith("arn:"):
            return {"StreamARN": self.stream}
        return {"StreamName": self.stream}


def resolve_target(
    topology: Topology | str | Path | None,
    *,
    stream: str | None,
    tables: Mapping[str, KeySchema] | None,
    region: str | None,
) -> Target:
    """Combine explicit arguments with the topology file.

    Raises:
        ValueError: no stream or no tables could be found, naming what to pass.
        TopologyError: the topology file is invalid.
    """
    if topology is None and (stream is None or tables is None):
        path = os.environ.get(TOPOLOGY_ENV)
        if path:
            topology = path
    if isinstance(topology, str | Path):
        topology = load_topology(topology)
    if topology is not None:
        stream = stream or topology.stream.name
        tables = tables if tables is not None else topology.tables
        region = region or topology.stream.region
    if not stream:
        raise ValueError(f"no stream: pass topology= or stream=, or set {TOPOLOGY_ENV}")
    if not tables:
        raise ValueError(f"no tables: pass topology= or tables=, or set {TOPOLOGY_ENV}")
    return Target(stream, region, dict(tables))
