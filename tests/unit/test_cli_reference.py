"""docs/CLI.md and the README's command table are what `make cli-docs` generates now.

Commands and their help change in code; these files follow only when regenerated. The
generator renders at a fixed width, so the comparison does not depend on the terminal.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lazyrep import cli_reference
from lazyrep.cli import main as lazyrep_main
from lazyrep.cli_reference import (
    CLI_DOC,
    END_MARKER,
    README,
    START_MARKER,
    expected_files,
    generate,
    render_cli_doc,
    render_readme_block,
    replace_block,
    walk,
)
from lazyrep.cli_verify import verify

HINT = "is stale: run `make cli-docs` (python -m lazyrep.cli_reference) and commit the result"


def test_docs_cli_md_is_current() -> None:
    expected = expected_files()[CLI_DOC]
    assert CLI_DOC.read_text(encoding="utf-8") == expected, f"docs/CLI.md {HINT}"


def test_readme_command_table_is_current() -> None:
    expected = expected_files()[README]
    assert README.read_text(encoding="utf-8") == expected, f"README.md's command table {HINT}"


def test_the_readme_block_sits_in_the_command_line_section() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## The command line\n", 1)[1].split("\n## ", 1)[0]
    assert START_MARKER in section
    assert END_MARKER in section


@click.group()
def tool() -> None:
    """A tool."""


@tool.command()
@click.option("--fast", is_flag=True, help="Go fast | or not.")
def run(fast: bool) -> None:
    """Run it. More text that the table leaves out."""


@tool.command(hidden=True)
def secret() -> None:
    """Not listed."""


def test_every_visible_command_gets_a_heading_and_a_linked_row() -> None:
    # GIVEN a group with a visible and a hidden command
    entries = list(walk(tool))
    # WHEN both files are rendered
    doc = render_cli_doc(entries)
    block = render_readme_block(entries)
    # THEN the visible command has its full help under a heading, and a row linking there
    assert [e.name for e in entries] == ["lazyrep", "lazyrep run"]
    assert "## lazyrep run\n\n```text\nUsage: lazyrep run [OPTIONS]\n" in doc
    assert "--fast  Go fast | or not." in doc
    assert "| [`lazyrep run`](docs/CLI.md#lazyrep-run) | Run it. |" in block
    assert "secret" not in doc + block
    assert block.startswith(START_MARKER)
    assert block.endswith(END_MARKER)


def test_the_terminal_does_not_change_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    before = expected_files()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *_, **__: os.terminal_size((37, 20)))
    assert expected_files() == before


def test_replace_block_needs_one_pair_of_markers_in_order() -> None:
    text = f"a\n{START_MARKER}\nold\n{END_MARKER}\nb\n"
    assert replace_block(text, "NEW") == "a\nNEW\nb\n"
    for broken in ("no markers", f"{END_MARKER}{START_MARKER}", text + START_MARKER):
        with pytest.raises(ValueError, match="cli-reference:start"):
            replace_block(broken, "NEW")


def test_check_mode_names_stale_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN a stale docs/CLI.md (a copy elsewhere, the real one untouched)
    stale = tmp_path / "CLI.md"
    stale.write_text("old\n")
    monkeypatch.setattr(cli_reference, "CLI_DOC", stale)
    monkeypatch.setattr(cli_reference, "REPO", stale.parent)
    monkeypatch.setattr(cli_reference, "README", stale.parent / "README.md")
    (stale.parent / "README.md").write_text(f"{START_MARKER}\n{END_MARKER}\n")
    # WHEN the generator checks
    result = CliRunner().invoke(generate, ["--check"])
    # THEN it exits 1 and says how to fix it, writing nothing
    assert result.exit_code == 1
    assert "CLI.md is stale: run make cli-docs" in result.output
    assert stale.read_text() == "old\n"


def test_a_subcommand_run_on_its_own_first_still_renders_the_short_help_option() -> None:
    # click caches the help option on first use; run alone, `verify` caches a bare --help.
    verify._help_option = None  # as in a fresh process, whatever ran before in this one
    assert CliRunner().invoke(verify, ["--help"]).exit_code == 0
    entry = next(e for e in walk(lazyrep_main) if e.path == ("verify",))
    assert "-h, --help" in entry.help_text
