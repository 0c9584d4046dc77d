"""Every `lazyrep` command documents itself: `--help` works and nothing is undocumented.

An option without help text shows up in `--help` (and in docs/CLI.md) as a bare flag an
operator has to guess at; an argument the command's help never names is the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from lazyrep.cli import main


def commands(
    command: click.Command = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every visible command with its path below `lazyrep`, the root first."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, (*path, name))


COMMANDS = dict(commands())


def label(path: tuple[str, ...]) -> str:
    return " ".join(("lazyrep", *path))


@pytest.fixture(params=sorted(COMMANDS), ids=label)
def path(request: pytest.FixtureRequest) -> tuple[str, ...]:
    value: tuple[str, ...] = request.param
    return value


def test_the_walk_finds_the_subcommands() -> None:
    assert {("local", "up"), ("lambda", "run"), ("replica", "run"), ("verify",)} <= set(COMMANDS)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_zero(path: tuple[str, ...], flag: str) -> None:
    # WHEN the command is asked for its help
    result = CliRunner().invoke(main, [*path, flag], prog_name="lazyrep")
    # THEN it prints its usage and exits 0
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {label(path)} "), result.output


def test_the_command_has_help_text(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"{label(path)} has no docstring or help="
    assert command.get_short_help_str().strip(), label(path)


def test_every_option_has_help_and_every_argument_is_named(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    text = command.help or ""
    for param in command.params:
        if isinstance(param, click.Option):
            if param.hidden:
                continue
            assert (param.help or "").strip(), f"{label(path)} {param.opts[0]}: no help="
        else:
            # click arguments take no help=: the command's help must name them.
            name = (param.metavar or param.name or "").upper()
            assert name in text, f"{label(path)}: argument {name} not named in its help"
