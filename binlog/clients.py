"""AWS client construction, the same for every part, overriding no endpoint.

Endpoints come from the standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`
variables that boto3 and aiobotocore read themselves: the local stack exports them,
production leaves them unset. Retries use botocore's standard mode; callers that
retry on top (the producer's per-record loop) keep botocore's attempts low.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import boto3
from aiobotocore.config import AioConfig
from botocore.config import Config

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_kinesis import KinesisClient

USER_AGENT = "lazy-replication/0.1"


def client_config(
    user: Config | None = None,
    *,
    max_attempts: int = 3,
    pool: int = 10,
    parameter_validation: bool = True,
) -> Config:
    """Our defaults (standard retries, bounded timeouts, a pool size), then the user's.

    `parameter_validation=False` suits callers that build requests they validated
    themselves (the producer's PutRecords): botocore's check costs ~2 us a record.
    """
    base = Config(
        parameter_validation=parameter_validation,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=pool,
        user_agent_extra=USER_AGENT,
    )
    return base if user is None else base.merge(user)


def aio_client_config(
    user: AioConfig | None = None,
    *,
    max_attempts: int = 3,
    pool: int = 10,
    parameter_validation: bool = True,
) -> AioConfig:
    """`client_config` for aiobotocore, whose clients need an `AioConfig`."""
    base = AioConfig(
        parameter_validation=parameter_validation,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=pool,
        user_agent_extra=USER_AGENT,
    )
    return base if user is None else base.merge(user)


def boto3_client(
    service: str,
    *,
    region: str | None = None,
    session: boto3.Session | None = None,
    config: Config | None = None,
) -> Any:
    """A boto3 client; `Any` because each service's client type differs."""
    session = session or boto3.Session()
    factory: Any = session.client
    return factory(service, region_name=region, config=config or client_config())


def kinesis_client(
    *, region: str | None = None, session: boto3.Session | None = None, config: Config | None = None
) -> KinesisClient:
    """A typed boto3 Kinesis client (see `boto3_client`)."""
    return cast(
        "KinesisClient", boto3_client("kinesis", region=region, session=session, config=config)
    )


def dynamodb_client(
    *, region: str | None = None, session: boto3.Session | None = None, config: Config | None = None
) -> DynamoDBClient:
    """A typed boto3 DynamoDB client (see `boto3_client`)."""
    client = boto3_client("dynamodb", region=region, session=session, config=config)
    return cast("DynamoDBClient", client)
