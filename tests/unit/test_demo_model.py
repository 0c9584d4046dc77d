"""The demo's plain-Python model equals the reference model (real DynamoDB calls on moto)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from binlog.tables import create_table
from binlog.topology import load_topology
from lazyrep.demo_model import ModelError, apply_op, expected_tables
from lazyrep.reference import apply_plainly, table_contents, unordered_sets
from lazyrep.workload import Op, plan_writers

TOPOLOGY = Path(__file__).resolve().parents[2] / "lazyrep" / "demo_topology.toml"


def test_plan_writers_shares_out_the_actions() -> None:
    plans = plan_writers(3, 1000)
    counts = [sum(len(op.actions) for op in ops) for ops in plans]
    # each writer stops at the first call that reaches its share (a batch adds up to 6)
    assert all(333 <= count <= 339 for count in counts)
    assert plans == plan_writers(3, 1000)  # deterministic


def test_model_equals_the_reference_on_moto() -> None:
    # GIVEN the demo workload of four writers
    topology = load_topology(TOPOLOGY)
    plans = plan_writers(4, 1600)
    # WHEN the model computes the tables, and the reference applies every call to moto
    model = expected_tables(plans, topology.tables)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name, schema in topology.tables.items():
            create_table(client, name, schema)
        for ops in plans:
            for op in ops:
                apply_plainly(client, op.table, op.method, op.kwargs)
        reference = {name: table_contents(client, name) for name in topology.tables}
    # THEN they are equal, table by table, and not trivially so
    assert unordered_sets(model) == unordered_sets(reference)
    assert all(len(items) > 20 for items in reference.values())


def test_model_refuses_what_it_does_not_know() -> None:
    topology = load_topology(TOPOLOGY)
    op = Op("update_item", "users", {"key": {"user_id": "u"}, "update": "REMOVE a"})
    with pytest.raises(ModelError, match="REMOVE a"):
        apply_op({}, topology.tables, op)
