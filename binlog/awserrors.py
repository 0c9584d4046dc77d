"""Retriable or permanent: the one place that decides, for every AWS call of the project.

Throttling, 5xx and dropped connections are worth another attempt; validation,
missing resources and denied access are not, and retrying them only hides them.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

RETRIABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)


class Failure(NamedTuple):
    """What went wrong with one call or one record, and whether to try again."""

    code: str
    message: str
    retriable: bool


def is_retriable_code(code: str) -> bool:
    """True for error codes that AWS documents as transient."""
    return code in RETRIABLE_CODES


def classify(exc: BaseException) -> Failure:
    """Translate an exception raised by a boto3 or aiobotocore call."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return Failure(
            code, str(error.get("Message", exc)), status >= 500 or is_retriable_code(code)
        )
    if isinstance(exc, ConnectionError | HTTPClientError):
        return Failure(type(exc).__name__, str(exc), True)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | OSError):
        return Failure(type(exc).__name__, str(exc) or type(exc).__name__, True)
    if isinstance(exc, BotoCoreError):
        # Credentials, parameter validation, unknown endpoints: configuration, not weather.
        return Failure(type(exc).__name__, str(exc), False)
    return Failure(type(exc).__name__, str(exc) or repr(exc), False)
