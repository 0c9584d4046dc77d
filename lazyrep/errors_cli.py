"""Errors on the command line: one clear line on stderr and an exit code, never a traceback.

Operators run these commands at the worst moment; a stack trace hides the one thing
they need (which table, which region, which credential). Every `lazyrep` command wraps
its body in `cli_errors()` (or decorates it with `handle_errors`), which turns the
project's errors and botocore's into one line:

    lazyrep: error: <what went wrong, naming the resource and the region>

Exit codes: 2 for usage and input errors (a wrong flag, an unknown table or replica,
the wrong region, missing credentials, an unreachable endpoint: nothing was done and
running again unchanged will not help), 1 for failures while running (throttling that
outlasted the retries, a service error), 130 after Ctrl-C. `LAZYREP_DEBUG=1` lets an
unexpected exception through with its traceback, for bug reports.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn, ParamSpec, TypeVar

import click
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from binlog.awserrors import classify
from binlog.errors import LazyRepError, TopologyError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "LAZYREP_DEBUG"

# Codes that mean "you asked for something that is not there or not yours": input errors.
_INPUT_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "ValidationException",
        "InvalidArgumentException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)

P = ParamSpec("P")
R = TypeVar("R")


class CliError(LazyRepError):
    """Raised by command code to stop with `message` and `exit_code` (default: usage)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    """Print `lazyrep: error: <message>` on stderr and exit."""
    click.echo(f"lazyrep: error: {_one_line(message)}", err=True)
    sys.exit(exit_code)


def describe(exc: BaseException) -> tuple[str, int] | None:
    """One line and an exit code for an error we know; None for anything else (a bug)."""
    if isinstance(exc, CliError):
        return exc.message, exc.exit_code
    if isinstance(exc, TopologyError):
        return f"topology: {exc}", EXIT_USAGE
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return (
            f"no usable AWS credentials ({exc}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where a role provides them",
            EXIT_USAGE,
        )
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)", EXIT_USAGE
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        endpoint = exc.kwargs.get("endpoint_url", "the endpoint")
        return (
            f"cannot reach {endpoint}: check the region and any AWS_ENDPOINT_URL* variable "
            '(for the local stack: eval "$(lazyrep local env)")',
            EXIT_USAGE,
        )
    if isinstance(exc, ReadTimeoutError):
        endpoint = exc.kwargs.get("endpoint_url", "the endpoint")
        return f"{endpoint} did not answer in time; try again", EXIT_FAILURE
    if isinstance(exc, ParamValidationError):
        return f"invalid request: {exc}", EXIT_USAGE
    if isinstance(exc, ClientError):
        failure = classify(exc)
        operation = getattr(exc, "operation_name", "") or "request"
        line = f"{operation}: {failure.code}: {failure.message}"
        if failure.code in _CREDENTIAL_CODES:
            line += " (check the credentials and that they belong to this account and region)"
        return line, EXIT_USAGE if failure.code in _INPUT_CODES else EXIT_FAILURE
    if isinstance(exc, LazyRepError):
        return str(exc), EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE
    return None


@contextlib.contextmanager
def cli_errors(context: str = "", *, resume_hint: str = "") -> Iterator[None]:
    """Turn the errors raised inside the block into one line and an exit code.

    `context` prefixes the line (`"verify"` gives `lazyrep: error: verify: ...`).
    `resume_hint` (e.g. the command that resumes) ends the line after a failure while
    running or Ctrl-C, not after a usage error. click's own exits pass through.
    """
    try:
        yield
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        tail = f"; {resume_hint}" if resume_hint else ""
        click.echo(f"lazyrep: interrupted{tail}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        known = describe(exc)
        if known is None:
            if os.environ.get(DEBUG_ENV):
                raise
            known = (
                f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
                EXIT_FAILURE,
            )
        message, code = known
        if resume_hint and code != EXIT_USAGE:
            message = f"{message}; {resume_hint}"
        fail(f"{context}: {message}" if context else message, code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `cli_errors()` for a click command's function."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with cli_errors():
            return func(*args, **kwargs)

    return wrapper


def _one_line(message: str) -> str:
    return " ".join(message.split())
