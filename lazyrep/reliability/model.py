"""The reference model of a run, computed in a separate process with in-process moto.

Every action the plans hold is applied once, in order, with plain DynamoDB calls
(lazyrep.reference.apply_plainly); writers own disjoint items, so one writer after
another is the same as any interleaving. Running it elsewhere costs the local
stack's moto server nothing while the scenario is loading it.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import boto3

from binlog.tables import create_table
from lazyrep.reference import apply_plainly, table_contents, unordered_sets
from lazyrep.reliability.workload import SCHEMAS
from lazyrep.workload import Op

Tables = dict[str, dict[str, dict[str, Any]]]
"""table (without the run prefix) -> item key -> item (attribute-value form)."""




def contents(client: Any, prefix: str) -> Tables:
    """The suite's tables of one run, bookkeeping attributes left out, sets sorted."""
    return {name: unordered_sets(table_contents(client, f"{prefix}{name}")) for name in SCHEMAS}


def compute(prefix: str, plans: list[list[Op]]) -> Tables:
    """Apply every action once, in order, to in-process moto; this process's AWS settings go."""
    from moto import mock_aws  # noqa: PLC0415 - only the model's process needs moto

    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name, schema in SCHEMAS.items():
            create_table(client, f"{prefix}{name}", schema)
        for ops in plans:
            for op in ops:
                apply_plainly(client, op.table, op.method, op.kwargs)
        return contents(client, prefix)


class ModelProcess:
    """One spawned process that computes reference models; a context manager."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(self, prefix: str, plans: list[list[Op]]) -> Future[Tables]:
        """Start computing the model of these plans; `.result()` waits for it."""
        return self._pool.submit(compute, prefix, plans)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ModelProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
