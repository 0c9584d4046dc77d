"""verify and backfill refuse bad input before any AWS call: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lazyrep.cli_backfill import backfill
from lazyrep.cli_verify import verify

TOPOLOGY = """
[stream]
name = "s"
region = "us-east-1"

[tables.users]
partition_key = { name = "pk", type = "S" }

[replicas.eu]
region = "eu-west-1"
max_wcu = 10
deadline_hours = 20
"""


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(TOPOLOGY, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [verify, backfill])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replica", "us"], "no replica 'us' in the topology (known: eu)"),
        (
            ["--replica", "eu", "--tables", "users,orders"],
            "no table 'orders' in the topology (known: users)",
        ),
    ],
)
def test_unknown_names(
    command: click.Command, topology: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(command, ["--topology", str(topology), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"lazyrep: error: {command.name}: {message}"]


@pytest.mark.parametrize("command", [verify, backfill])
def test_a_missing_or_broken_topology(command: click.Command, tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        command, ["--topology", str(tmp_path / "no.toml"), "--replica", "eu"]
    )
    assert missing.exit_code == 2
    assert "no such file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[stream]\nname = 's'\nregion = 'mars'\n")
    result = CliRunner().invoke(command, ["--topology", str(broken), "--replica", "eu"])
    assert result.exit_code == 2
    assert result.stderr.startswith("lazyrep: error: ")
    assert "stream.region" in result.stderr


def test_option_ranges_are_usage_errors(topology: Path) -> None:
    base = ["--topology", str(topology), "--replica", "eu"]
    for extra in (["--sample", "0"], ["--segments", "0"], ["--lag", "maybe"]):
        assert CliRunner().invoke(verify, base + extra).exit_code == 2
    for extra in (["--rate", "0"], ["--start-margin", "soon"]):
        assert CliRunner().invoke(backfill, base + extra).exit_code == 2
    result = CliRunner().invoke(
        backfill, [*base, "--write-properties", "/nonexistent/eu.properties"]
    )
    assert result.exit_code == 2
