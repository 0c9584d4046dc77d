"""`lazyrep local`: start, inspect and stop the local emulators (emulators/stack.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import click

from emulators.stack import LocalStack, StackError
from emulators.tools import MissingToolError

STATE_FILE_NAME = "local-stack.json"

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".lazyrep"),
    envvar="LAZYREP_STATE_DIR",
    show_default=True,
    help="Where `up` records pids, endpoints and logs (env LAZYREP_STATE_DIR).",
)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2, the code for 'cannot run as asked'."""
    click.echo(f"lazyrep: error: {message}", err=True)
    sys.exit(2)


def _start() -> LocalStack:
    try:
        return LocalStack.start()
    except (MissingToolError, StackError) as exc:
        fail(str(exc).splitlines()[0])


def _load_running(state_dir: Path) -> LocalStack:
    state_file = state_dir / STATE_FILE_NAME
    try:
        stack = LocalStack.load(state_file)
    except FileNotFoundError:
        fail(f"no local stack recorded in {state_file}; start one with `lazyrep local up`")
    except StackError as exc:
        fail(f"{exc}; remove it and run `lazyrep local up`")
    if not stack.is_running():
        fail(f"the local stack in {state_file} is not running; run `lazyrep local down`, then `up`")
    return stack


@click.group()
def local() -> None:
    """Run the local AWS emulators on 127.0.0.1 and free ports.

    kinesalite serves Kinesis, nghttpx puts HTTP/2 cleartext in front of it for the KCL
    daemon, and moto server serves DynamoDB, SQS, S3 and CloudWatch. Programs reach them
    through the standard AWS_ENDPOINT_URL_<SERVICE> variables. See docs/EMULATORS.md.
    """


@local.command()
@state_dir_option
def up(state_dir: Path) -> None:
    """Start the stack in the background and print `export` lines for it.

    Use as `eval "$(lazyrep local up)"`; stop it with `lazyrep local down`.
    """
    state_file = state_dir / STATE_FILE_NAME
    try:
        previous = LocalStack.load(state_file)
    except (FileNotFoundError, StackError):
        previous = None
    if previous is not None and previous.is_running():
        fail(f"a local stack is already running ({state_file}); stop it with `lazyrep local down`")
    if previous is not None:
        previous.stop()  # Whatever is left of a stack that died.
    try:
        stack = LocalStack.start(log_dir=state_dir / "logs")
    except (MissingToolError, StackError) as exc:
        fail(str(exc).splitlines()[0])
    stack.save(state_file)
    for line in stack.export_lines():
        click.echo(line)
    click.echo(f"# local stack up, logs in {stack.log_dir}; stop: lazyrep local down", err=True)


@local.command()
@state_dir_option
def env(state_dir: Path) -> None:
    """Print `export` lines for the running stack (`eval "$(lazyrep local env)"`)."""
    for line in _load_running(state_dir).export_lines():
        click.echo(line)


@local.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop the stack started by `up`, leaving no process behind."""
    state_file = state_dir / STATE_FILE_NAME
    try:
        stack = LocalStack.load(state_file)
    except FileNotFoundError:
        click.echo(f"no local stack recorded in {state_file}", err=True)
        return
    except StackError as exc:
        fail(f"{exc}; stop its processes by hand and remove the file")
    stack.stop()
    state_file.unlink(missing_ok=True)
    click.echo("local stack stopped", err=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind through `finally` so the stack is stopped when we are told to stop.
    raise SystemExit(128 + signum)


@local.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(command: tuple[str, ...]) -> None:
    """Start a private stack, run COMMAND with its environment, stop the stack.

    Exits with COMMAND's exit code. Example: lazyrep local run -- pytest -m wire
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with _start() as stack:
            try:
                result = subprocess.run(command, env=stack.environ(), check=False)  # noqa: S603
            except FileNotFoundError:
                fail(f"command not found: {command[0]}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = result.returncode
    sys.exit(128 - code if code < 0 else code)
