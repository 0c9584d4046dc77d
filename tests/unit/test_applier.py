"""The applier's edge paths against in-process moto: exact outcomes and table contents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
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


# -- the prefetch: fewer requests per record, the same outcomes --------------------------


def keyed(n: int, action: Action, seq: int, pk: str, **fields: Any) -> SourcedRecord:
    envelope = Envelope(f"id{n}-{pk}", 0, action, "t", {"pk": {"S": pk}}, **fields)
    return SourcedRecord(envelope, Position("shardId-000000000001", str(seq)))


def count_requests(client: Any) -> Counter[str]:
    """Every request the client sends, by operation (botocore's own event: nothing mocked)."""
    counts: Counter[str] = Counter()

    def before_call(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    client.meta.events.register("before-call.dynamodb", before_call)
    return counts


def rows(client: Any) -> dict[str, dict[str, Any]]:
    found = client.scan(TableName="t", ConsistentRead=True)["Items"]
    return {i["pk"]["S"]: {k: v for k, v in i.items() if not k.startswith("_lr_")} for i in found}


PKS = [f"p{n:02}" for n in range(20)]
SET_S = {"update": "SET #s = :s", "names": {"#s": "s"}, "values": {":s": {"S": "u"}}}


def test_a_batch_of_creations_costs_one_request_a_record_plus_two_batch_reads(
    dynamodb: Any,
) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA}, config=ApplierConfig(max_workers=4))
    counts = count_requests(dynamodb)
    # GIVEN 20 new items, one record each (40 keys: one BatchGetItem)
    creations = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS)
    ]
    # WHEN applied as one batch
    results = applier.apply_batch(creations)
    # THEN each costs its create; the prefetch and the second tombstone reads are batched
    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert counts == Counter({"BatchGetItem": 2, "PutItem": 20})
    assert rows(dynamodb) == {pk: {"pk": {"S": pk}} for pk in PKS}
    # AND a batch of updates of those items costs one write each
    counts.clear()
    updates = [keyed(2, Action.UPDATE, 100 + n, pk, **SET_S) for n, pk in enumerate(PKS)]
    assert {r.outcome for r in applier.apply_batch(updates)} == {Outcome.APPLIED}
    assert counts == Counter({"BatchGetItem": 1, "UpdateItem": 20})
    # AND the same batch redelivered costs only the prefetch and the id checks' reads
    counts.clear()
    assert {r.outcome for r in applier.apply_batch(updates)} == {Outcome.STALE}
    assert counts == Counter({"BatchGetItem": 1, "UpdateItem": 20, "GetItem": 20})
    # AND an older range replayed costs only the prefetch
    counts.clear()
    assert {r.outcome for r in applier.apply_batch(creations)} == {Outcome.STALE}
    assert counts == Counter({"BatchGetItem": 1})
    assert rows(dynamodb) == {pk: {"pk": {"S": pk}, "s": {"S": "u"}} for pk in PKS}
    # AND once the items are deleted, replaying their creations costs only the prefetch
    deletes = [keyed(3, Action.DELETE, 200 + n, pk) for n, pk in enumerate(PKS)]
    assert {r.outcome for r in applier.apply_batch(deletes)} == {Outcome.APPLIED}
    counts.clear()
    assert {r.outcome for r in applier.apply_batch(creations + updates)} == {Outcome.STALE}
    # (the updates, second in their items, go today's way: failed write, tombstone read)
    assert counts == Counter({"BatchGetItem": 1, "UpdateItem": 20, "GetItem": 20})
    assert rows(dynamodb) == {}


def test_a_batch_of_one_item_is_not_prefetched_and_two_are(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    counts = count_requests(dynamodb)
    # GIVEN a batch creating one item and updating it twice: one item, no prefetch
    one = [keyed(1, Action.PUT, 10, PKS[0], item={"pk": {"S": PKS[0]}})]
    one += [keyed(2 + n, Action.UPDATE, 20 + n, PKS[0], **SET_S) for n in range(2)]
    assert {r.outcome for r in applier.apply_batch(one)} == {Outcome.APPLIED}
    # THEN the creation goes the long way (failed write, read, write, read)
    assert counts == Counter({"PutItem": 2, "GetItem": 2, "UpdateItem": 2})
    # AND two items' creations are prefetched, and their second reads batched
    counts.clear()
    two = [
        keyed(1, Action.PUT, 30 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS[1:3])
    ]
    assert {r.outcome for r in applier.apply_batch(two)} == {Outcome.APPLIED}
    assert counts == Counter({"BatchGetItem": 2, "PutItem": 2})


def test_only_the_first_record_of_an_item_uses_the_prefetch(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA}, config=ApplierConfig(max_workers=4))
    counts = count_requests(dynamodb)
    # GIVEN a batch creating 10 items, then updating each, then deleting and recreating one
    batch = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS[:10])
    ]
    batch += [keyed(2, Action.UPDATE, 100 + n, pk, **SET_S) for n, pk in enumerate(PKS[:10])]
    batch += [
        keyed(3, Action.DELETE, 200, PKS[0]),
        keyed(4, Action.PUT, 201, PKS[0], item={"pk": {"S": PKS[0]}, "again": {"BOOL": True}}),
    ]
    # WHEN applied as one batch
    results = applier.apply_batch(batch)
    # THEN the updates take the fast path: the prefetched "missing" is not theirs
    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert counts == Counter(
        # creations: 10 x (put, read: not the items' last records); updates: 10;
        # delete: tombstone + delete; re-creation, the item's last record: failed
        # guarded write, read, put, and its second read in the batch's BatchGetItem
        {
            "BatchGetItem": 2,
            "PutItem": 10 + 1 + 2,
            "GetItem": 10 + 1,
            "UpdateItem": 10,
            "DeleteItem": 1,
        }
    )
    expected = {pk: {"pk": {"S": pk}, "s": {"S": "u"}} for pk in PKS[:10]}
    expected[PKS[0]] = {"pk": {"S": PKS[0]}, "again": {"BOOL": True}}
    assert rows(dynamodb) == expected


def test_unprocessed_keys_are_read_again(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA}, config=ApplierConfig(max_workers=4))
    creations = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS)
    ]
    assert {r.outcome for r in applier.apply_batch(creations)} == {Outcome.APPLIED}
    counts = count_requests(dynamodb)

    # GIVEN DynamoDB leaves every key of the first BatchGetItem unprocessed (no error)
    def leave_unprocessed(parsed: dict[str, Any], **_: Any) -> None:
        if counts["BatchGetItem"] == 1:
            parsed["UnprocessedKeys"] = {
                table: {"Keys": [{k: v for k, v in i.items() if k in ("pk", "k")} for i in items]}
                for table, items in parsed["Responses"].items()
            }
            parsed["Responses"] = {}

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", leave_unprocessed)
    updates = [keyed(2, Action.UPDATE, 100 + n, pk, **SET_S) for n, pk in enumerate(PKS)]
    # WHEN a batch of updates is applied
    assert {r.outcome for r in applier.apply_batch(updates)} == {Outcome.APPLIED}
    # THEN the keys were read again, and the items known to exist: one write each
    assert counts == Counter({"BatchGetItem": 2, "UpdateItem": 20})


def test_a_delete_slipping_in_after_the_prefetch_wins(dynamodb: Any) -> None:
    """A replay beside the live consumer: the prefetch saw no tombstones, then deletes came."""
    replay = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    live = Applier(dynamodb, {"t": SCHEMA})
    old_puts = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS[:8])
    ]

    # GIVEN the replay has just prefetched 8 missing items and no tombstones...
    def live_deletes(**_: Any) -> None:
        if replay_counts["BatchGetItem"] != 1:
            return
        # ...when the live consumer applies newer deletes of them
        for pk in PKS[:8]:
            assert live.apply(keyed(2, Action.DELETE, 100, pk)).outcome is Outcome.APPLIED

    replay_counts = count_requests(replay._client)
    replay._client.meta.events.register("after-call.dynamodb.BatchGetItem", live_deletes)
    # WHEN the replay applies its older creations
    results = replay.apply_batch(old_puts)
    # THEN each sees the newer tombstone after writing and takes its item back
    assert {r.outcome for r in results} == {Outcome.STALE}
    assert rows(dynamodb) == {}
    assert replay_counts == Counter({"BatchGetItem": 2, "PutItem": 8, "DeleteItem": 8})


def test_a_failed_batched_second_read_falls_back_to_one_read_each(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    live = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    counts = count_requests(dynamodb)
    puts = [keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS)]

    # GIVEN a newer delete of one item applied between the prefetch and the creations
    def delete_after_prefetch(**_: Any) -> None:
        if counts["BatchGetItem"] == 1:
            assert live.apply(keyed(2, Action.DELETE, 100, PKS[3])).outcome is Outcome.APPLIED

    # AND the batched tombstone read after the creations fails after botocore's retries
    def refuse_second(model: Any, **_: Any) -> None:
        if model.name == "BatchGetItem" and counts["BatchGetItem"] == 2:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "BatchGetItem",
            )

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", delete_after_prefetch)
    dynamodb.meta.events.register("before-call.dynamodb", refuse_second)
    # WHEN the batch is applied
    results = applier.apply_batch(puts)
    # THEN each creation reads its tombstone on its own, and the resurrected one is taken back
    assert [r.outcome for r in results] == [
        Outcome.STALE if pk == PKS[3] else Outcome.APPLIED for pk in PKS
    ]
    assert counts == Counter({"BatchGetItem": 2, "PutItem": 20, "GetItem": 20, "DeleteItem": 1})
    assert set(rows(dynamodb)) == set(PKS) - {PKS[3]}


def test_a_creation_whose_second_read_cannot_be_made_is_retried_and_checked_again(
    dynamodb: Any,
) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    live = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    puts = [keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS)]
    counts = count_requests(dynamodb)

    # GIVEN a newer delete of one item applied between the prefetch and the creations
    def delete_after_prefetch(**_: Any) -> None:
        if counts["BatchGetItem"] == 1:
            assert live.apply(keyed(2, Action.DELETE, 100, PKS[3])).outcome is Outcome.APPLIED

    # AND no read after the creations gets through
    def refuse(model: Any, **_: Any) -> None:
        if counts["BatchGetItem"] >= 2 and model.name in ("BatchGetItem", "GetItem"):
            raise ConnectionResetError("the connection dropped")

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", delete_after_prefetch)
    dynamodb.meta.events.register("before-call.dynamodb", refuse)
    # WHEN the batch is applied
    results = applier.apply_batch(puts)
    # THEN every creation is to be delivered again (created, but not known to be right)
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert PKS[3] in rows(dynamodb)  # resurrected, for now
    dynamodb.meta.events.unregister("before-call.dynamodb", refuse)
    dynamodb.meta.events.unregister("after-call.dynamodb.BatchGetItem", delete_after_prefetch)
    # AND delivered again, the deleted item is taken back and the others stand
    assert {r.outcome for r in applier.apply_batch(puts)} == {Outcome.STALE}
    assert set(rows(dynamodb)) == set(PKS) - {PKS[3]}


def test_a_creation_that_crashed_before_its_second_read_is_taken_back_on_redelivery(
    dynamodb: Any,
) -> None:
    replay = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    live = Applier(dynamodb, {"t": SCHEMA})
    old_put = record(1, Action.PUT, 10, item={"pk": {"S": "a"}})
    client = replay._client
    real_get = client.get_item
    calls: list[int] = []

    def race_then_crash(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:  # GIVEN the replay saw no tombstone, then a newer delete applied
            response = real_get(**kwargs)
            assert live.apply(record(2, Action.DELETE, 20)).outcome is Outcome.APPLIED
            return response
        if len(calls) == 2:  # AND the replay created the item and crashed before reading again
            raise ConnectionResetError("the connection dropped")
        return real_get(**kwargs)

    client.get_item = race_then_crash
    assert replay.apply(old_put).outcome is Outcome.RETRY
    assert item(dynamodb) == {"pk": {"S": "a"}}  # resurrected, for now
    # WHEN the record is delivered again
    result = replay.apply(old_put)
    # THEN the item holding it is taken back: the newer delete wins
    assert result.outcome is Outcome.STALE
    assert item(dynamodb) is None


def test_a_redelivery_leaves_an_item_whose_newer_delete_was_refused(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA})
    put = record(1, Action.PUT, 10, item={"pk": {"S": "a"}, "n": {"N": "0"}})
    refused = record(
        2, Action.DELETE, 20, condition="#n > :z", names={"#n": "n"}, values={":z": {"N": "2"}}
    )
    # GIVEN a put, and a newer delete whose condition was false (its tombstone stays)
    assert applier.apply(put).outcome is Outcome.APPLIED
    assert applier.apply(refused).outcome is Outcome.CONDITION_FAILED
    # WHEN the put is delivered again
    assert applier.apply(put).outcome is Outcome.STALE
    # THEN the item is still there, as if each record were applied once
    assert item(dynamodb) == {"pk": {"S": "a"}, "n": {"N": "0"}}


@pytest.mark.parametrize(("live_seq", "expected"), [(5, Outcome.APPLIED), (100, Outcome.STALE)])
def test_an_item_appearing_after_the_prefetch_is_judged_by_its_version(
    dynamodb: Any, live_seq: int, expected: Outcome
) -> None:
    replay = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    live = Applier(dynamodb, {"t": SCHEMA})
    puts = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS[:8])
    ]

    # GIVEN the replay has just prefetched 8 missing items...
    def live_creates(**_: Any) -> None:
        # ...when the live consumer creates them, from older or newer records
        for pk in PKS[:8]:
            live_put = keyed(
                2, Action.PUT, live_seq, pk, item={"pk": {"S": pk}, "live": {"N": "1"}}
            )
            assert live.apply(live_put).outcome is Outcome.APPLIED

    replay._client.meta.events.register("after-call.dynamodb.BatchGetItem", live_creates)
    # WHEN the replay applies its creations
    results = replay.apply_batch(puts)
    # THEN the creations fail, and each record is judged against the item now there
    assert {r.outcome for r in results} == {expected}
    live_item = {"pk": {"S": "_"}, "live": {"N": "1"}}
    assert rows(dynamodb) == {
        pk: {"pk": {"S": pk}} if expected is Outcome.APPLIED else {**live_item, "pk": {"S": pk}}
        for pk in PKS[:8]
    }


def test_creations_are_checked_even_when_another_item_raises(dynamodb: Any) -> None:
    applier = Applier(dynamodb, {"t": SCHEMA}, config=ApplierConfig(max_workers=1))
    live = Applier(boto3.client("dynamodb", region_name="us-east-1"), {"t": SCHEMA})
    counts = count_requests(dynamodb)
    puts = [
        keyed(1, Action.PUT, 10 + n, pk, item={"pk": {"S": pk}}) for n, pk in enumerate(PKS[:3])
    ]

    # GIVEN a newer delete of the second item applied between the prefetch and the creations
    def delete_after_prefetch(**_: Any) -> None:
        if counts["BatchGetItem"] == 1:
            assert live.apply(keyed(2, Action.DELETE, 100, PKS[1])).outcome is Outcome.APPLIED

    # AND the third item's write fails with an error no retry helps (configuration)
    def no_credentials(params: dict[str, Any], **_: Any) -> None:
        if params["body"] and PKS[2].encode() in params["body"]:
            raise NoCredentialsError

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", delete_after_prefetch)
    dynamodb.meta.events.register("before-call.dynamodb.PutItem", no_credentials)
    # WHEN the batch is applied, THEN the error propagates...
    with pytest.raises(NoCredentialsError):
        applier.apply_batch(puts)
    # ...after the creations written so far were checked: the resurrected one is taken back
    assert set(rows(dynamodb)) == {PKS[0]}
