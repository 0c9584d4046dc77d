"""The templates of a whole deployment, generated from its topology, and writing them.

`render_templates` returns file name -> template: `primary.json` for the stream's
region, `replica-NAME.json` per replica target (in its region), and
`dead-letters.json` when `[dead_letter]` names another region than the stream's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from binlog.topology import Topology
from lazyrep.infra_cfn import Json
from lazyrep.infra_primary import InfraError, dead_letter_template, primary_template
from lazyrep.infra_replica import replica_template
from lazyrep.infra_settings import InfraSettings

__all__ = ["InfraError", "InfraSettings", "StackFile", "render_templates", "write_templates"]

PRIMARY_FILE = "primary.json"
DEAD_LETTER_FILE = "dead-letters.json"


@dataclass(frozen=True, slots=True)
class StackFile:
    """One generated template: its file name, the region to deploy it in, its body."""

    file_name: str
    region: str
    body: Json

    @property
    def text(self) -> str:
        """The template as written: JSON, two-space indent, a final newline."""
        return json.dumps(self.body, indent=2) + "\n"


def replica_file(name: str) -> str:
    """The template file of replica target `name`."""
    return f"replica-{name}.json"


def render_templates(topology: Topology, settings: InfraSettings | None = None) -> list[StackFile]:
    """Every template of the deployment, in the order to deploy them.

    Raises:
        InfraError: the topology cannot be deployed as asked (no dead-letter store, a
            setting that does not fit it).
    """
    settings = settings or InfraSettings()
    files: list[StackFile] = []
    dead_letter = topology.dead_letter
    if dead_letter is not None and dead_letter.region != topology.stream.region:
        files.append(
            StackFile(DEAD_LETTER_FILE, dead_letter.region, dead_letter_template(topology))
        )
    files.append(
        StackFile(PRIMARY_FILE, topology.stream.region, primary_template(topology, settings))
    )
    for name, replica in topology.replicas.items():
        files.append(
            StackFile(
                replica_file(name), replica.region, replica_template(topology, name, settings)
            )
        )
    return files


def write_templates(files: list[StackFile], out: Path) -> list[Path]:
    """Write `files` into `out` (created if missing); the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stack_file in files:
        path = out / stack_file.file_name
        path.write_text(stack_file.text, encoding="utf-8")
        paths.append(path)
    return paths
