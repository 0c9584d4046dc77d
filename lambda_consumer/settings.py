"""The consumer's settings: explicit arguments win over environment variables, resolved here only.

| variable | default | meaning |
| --- | --- | --- |
| `LAZYREP_TOPOLOGY` | required | path of the topology TOML file (packaged with the function) |
| `LAZYREP_CONSUMER_NAME` | `lambda:primary` | who parked a dead letter |
| `LAZYREP_MAX_WORKERS` | `16` | items applied at once (each item in order) |
| `LAZYREP_DYNAMODB_MAX_ATTEMPTS` | `3` | botocore attempts per DynamoDB call, then Lambda's |
| `LAZYREP_CHECK_LINEAGE` | `true` | verify each shard's parents once per container (ListShards) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_TOPOLOGY = "LAZYREP_TOPOLOGY"
ENV_CONSUMER_NAME = "LAZYREP_CONSUMER_NAME"
ENV_MAX_WORKERS = "LAZYREP_MAX_WORKERS"
ENV_DYNAMODB_MAX_ATTEMPTS = "LAZYREP_DYNAMODB_MAX_ATTEMPTS"
ENV_CHECK_LINEAGE = "LAZYREP_CHECK_LINEAGE"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """What the Lambda consumer needs beyond the topology file itself."""

    topology_path: str
    consumer_name: str = "lambda:primary"
    max_workers: int = 16
    dynamodb_max_attempts: int = 3
    check_lineage: bool = True

    def __post_init__(self) -> None:
        if not self.topology_path:
            raise ValueError(f"ConsumerSettings.topology_path (or {ENV_TOPOLOGY}) is required")
        if not self.consumer_name or len(self.consumer_name) > 200:
            raise ValueError("ConsumerSettings.consumer_name must be 1-200 characters")
        if not 1 <= self.max_workers <= 256:
            raise ValueError("ConsumerSettings.max_workers must be between 1 and 256")
        if not 1 <= self.dynamodb_max_attempts <= 20:
            raise ValueError("ConsumerSettings.dynamodb_max_attempts must be between 1 and 20")

    @classmethod
    def resolve(
        cls,
        *,
        topology_path: str | None = None,
        consumer_name: str | None = None,
        max_workers: int | None = None,
        dynamodb_max_attempts: int | None = None,
        check_lineage: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ConsumerSettings:
        """Each setting from its argument, else its environment variable, else the default.

        Raises:
            ValueError: a value is missing or out of range (naming the setting).
        """
        env = os.environ if environ is None else environ
        defaults = cls("-")
        return cls(
            topology_path=topology_path or env.get(ENV_TOPOLOGY, ""),
            consumer_name=consumer_name or env.get(ENV_CONSUMER_NAME) or defaults.consumer_name,
            max_workers=_integer(max_workers, env, ENV_MAX_WORKERS, defaults.max_workers),
            dynamodb_max_attempts=_integer(
                dynamodb_max_attempts,
                env,
                ENV_DYNAMODB_MAX_ATTEMPTS,
                defaults.dynamodb_max_attempts,
            ),
            check_lineage=_boolean(check_lineage, env, ENV_CHECK_LINEAGE, defaults.check_lineage),
        )


def _integer(explicit: int | None, env: Mapping[str, str], name: str, default: int) -> int:
    if explicit is not None:
        return explicit
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r:.40} is not a whole number") from None


def _boolean(explicit: bool | None, env: Mapping[str, str], name: str, default: bool) -> bool:
    if explicit is not None:
        return explicit
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r:.40} is not true or false")
