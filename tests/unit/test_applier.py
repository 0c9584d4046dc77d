"""The applier's edge paths against in-process moto: exact outcomes and table contents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from binlog.applier import Applier, ApplierConfig, Outcome
from binlog.envelope import Action, Envelope
from binlog.expressions import free_guard, merge_update
from binlog.records import Position, SourcedRecord
from binlog.tables import create_table, create_tombstone_table
from binlog.topology import KeyAttribute, KeySchema

SCHEMA = KeySchema(KeyAttribute("pk", "S"))
KEY = {"pk": {"S": "a"}}


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "t", SCHEMA)
        create_tombstone_table(client, "lazyrep-tombstones")
        yield client


def record(n: int, action: Action, seq: int, **fields: Any) -> SourcedRecord:
    envelope = Envelope(f"id{n}", 0, action, "t", KEY, **fields)
    return SourcedRecord(envelope, Position("shardId-000000000001", str(seq)))


def item(client: Any) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(TableName="t", Key=KEY).get("Item")
    if found:
        found = {k: v for k, v in found.items() if not k.startswith("_lr_")}
    return found


def test_an_item_written_without_a_version_is_overwritten_by_any_record(dynamodb: Any) -> None:
    # GIVEN an item someone wrote directly, with no version
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "5"}})
    applier = Applier(dynamodb, {"t": SCHEMA})
    add = record(
        1, Action.UPDATE, 10, update="ADD #n :one", names={"#n": "n"}, values={":one": {"N": "1"}}
    )
    # WHEN a record updates it, and is delivered twice
    first, second = applier.apply(add), applier.apply(add)
    # THEN it applies once
    assert (first.outcome, second.outcome) == (Outcome.APPLIED, Outcome.STALE)
    assert item(dynamodb) == {"pk": {"S": "a"}, "n": {"N": "6"}}


def test_a_crash_between_tombstone_and_delete_is_repaired_by_redelivery(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    assert (
        applier.apply(record(1, Action.PUT, 10, item={"pk": {"S": "a"}})).outcome is Outcome.APPLIED
    )
    delete = record(2, Action.DELETE, 20)
    # GIVEN the delete's tombstone written, then a crash before the item was deleted
    original = dynamodb.delete_item

    def crash(**_: Any) -> None:
        raise ConnectionResetError("the connection dropped")

    dynamodb.delete_item = crash
    assert applier.apply(delete).outcome is Outcome.RETRY
    dynamodb.delete_item = original
    assert item(dynamodb) is not None
    # WHEN the delete is delivered again
    result = applier.apply(delete)
    # THEN the item is deleted, and a third delivery is stale
    assert result.outcome is Outcome.APPLIED
    assert item(dynamodb) is None
    assert applier.apply(delete).outcome is Outcome.STALE
    # AND the put replayed after it does not resurrect the item
    assert (
        applier.apply(record(1, Action.PUT, 10, item={"pk": {"S": "a"}})).outcome is Outcome.STALE
    )
    assert item(dynamodb) is None


def test_a_record_botocore_refuses_is_parked_not_retried(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    bad = record(1, Action.PUT, 10, item={"pk": {"S": "a"}, "x": {"N": 1}})  # N must be text
    result = applier.apply(bad)
    assert (result.outcome, result.code) == (Outcome.PARKED, "ParamValidationError")


def test_user_placeholders_that_collide_with_ours_are_left_alone(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA}, config=ApplierConfig(max_workers=1))
    names = {"#lrv": "count", "#lrk": "other"}
    values = {":lrv": {"N": "2"}}
    result = applier.apply(
        record(
            1, Action.UPDATE, 10, update="SET #lrv = :lrv, #lrk = :lrv", names=names, values=values
        )
    )
    assert result.outcome is Outcome.APPLIED
    assert item(dynamodb) == {"pk": {"S": "a"}, "count": {"N": "2"}, "other": {"N": "2"}}


@pytest.mark.parametrize(
    ("update", "merged"),
    [
        ("ADD #n :one", "ADD #n :one SET #lrv = :lrv, #lri = :lri"),
        ("SET #a = :a REMOVE #b", "SET #lrv = :lrv, #lri = :lri, #a = :a REMOVE #b"),
        ("REMOVE #b set #a = :set", "REMOVE #b set #lrv = :lrv, #lri = :lri, #a = :set"),
        ("ADD #settings :one", "ADD #settings :one SET #lrv = :lrv, #lri = :lri"),
    ],
)
def test_our_set_actions_join_the_users_set_clause(update: str, merged: str) -> None:
    assert merge_update(update, free_guard(None, None)) == merged


def test_a_condition_that_fails_on_a_missing_item_is_a_recorded_no_op(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    update = record(
        1,
        Action.UPDATE,
        10,
        update="SET #s = :s",
        names={"#s": "s"},
        values={":s": {"S": "x"}},
        condition="attribute_exists(pk)",
    )
    assert applier.apply(update).outcome is Outcome.CONDITION_FAILED
    assert item(dynamodb) is None
    delete = record(2, Action.DELETE, 20, condition="attribute_exists(pk)")
    assert applier.apply(delete).outcome is Outcome.CONDITION_FAILED


def test_a_delete_slipping_in_during_a_creation_wins(dynamodb: Any) -> None:
    """Two appliers at once (a replay beside the live consumer) on one missing item."""
    replay = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    live = Applier(dynamodb, {"t": SCHEMA})
    old_put = record(1, Action.PUT, 10, item={"pk": {"S": "a"}})
    newer_delete = record(2, Action.DELETE, 20)
    # GIVEN the replay has just seen no tombstone for the item...
    client = replay._client  # the boto3 client the replay applier was given
    real_get = client.get_item
    calls = []

    def get_then_live_deletes(**kwargs: Any) -> Any:
        response = real_get(**kwargs)
        if not calls:
            calls.append(1)
            # ...when the live consumer applies the newer delete
            assert live.apply(newer_delete).outcome is Outcome.APPLIED
        return response

    client.get_item = get_then_live_deletes
    # WHEN the replay creates the item from its older put
    result = replay.apply(old_put)
    # THEN it sees the delete's tombstone afterwards and takes the item back
    assert result.outcome is Outcome.STALE
    assert item(dynamodb) is None
