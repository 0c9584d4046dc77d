"""Write the Kinesis event fixtures of this folder (run from the repository root).

    .venv/bin/python tests/events/regenerate.py

Each file is an event exactly as Lambda delivers it for a Kinesis event source
mapping (AWS's documented sample shape). What the records hold, and what the tests
expect of them, is spelled out below, next to the records themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from aws_kinesis_agg.aggregator import RecordAggregator  # type: ignore[import-untyped]

from binlog.codec import dumps
from lambda_consumer.events import StreamRecord, kinesis_event

HERE = Path(__file__).parent
STREAM = "lambda-stream"
ARRIVAL_MS = 1545084650987
# 56-digit sequence numbers as Kinesis gives them, increasing within the shard.
FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898


def action(
    envelope_id: str, action_name: str, table: str, key: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A record document (binlog format 1) with a fixed id and producer time."""
    return {
        "format": 1,
        "id": envelope_id,
        "time": ARRIVAL_MS - 20,
        "action": action_name,
        "table": table,
        "key": key,
        **fields,
    }


def user(user_id: str) -> dict[str, Any]:
    return {"user_id": {"S": user_id}}


PUT_U1 = action(
    "fx-put-u1",
    "PutItem",
    "users",
    user("u1"),
    item={"user_id": {"S": "u1"}, "name": {"S": "Ada"}, "visits": {"N": "1"}},
)
ADD_U1 = action(
    "fx-add-u1",
    "UpdateItem",
    "users",
    user("u1"),
    update="ADD #v :one",
    names={"#v": "visits"},
    values={":one": {"N": "1"}},
)
PUT_ORDER = action(
    "fx-put-order",
    "PutItem",
    "orders",
    {"customer_id": {"S": "u1"}, "order_no": {"N": "7"}},
    item={"customer_id": {"S": "u1"}, "order_no": {"N": "7"}, "total": {"N": "12.5"}},
)
PUT_U2 = action(
    "fx-put-u2", "PutItem", "users", user("u2"), item={"user_id": {"S": "u2"}, "name": {"S": "Bo"}}
)
DELETE_U2 = action("fx-delete-u2", "DeleteItem", "users", user("u2"))

# kinesis_stream_event.json, shard 6: u1 put then ADD 1 (visits 2), an order, u2 put then
# deleted. Expected: users = {u1: Ada, 2}, orders = {(u1, 7): 12.50}, no failures.
PLAIN = [PUT_U1, ADD_U1, PUT_ORDER, PUT_U2, DELETE_U2]

# kinesis_stream_event_poison.json, shard 3: valid records around one of each poison.
# Expected: u1 = Ada, visits 2; letters in this order with these reasons; no failures.
POISON: list[tuple[str, bytes]] = [
    ("", dumps(PUT_U1)),
    ("not_json", b"\xff\x00 not json"),
    ("not_object", b"[1, 2, 3]"),
    ("unknown_format", orjson.dumps({**PUT_U2, "format": 99})),
    ("missing_field", orjson.dumps({k: v for k, v in PUT_U2.items() if k != "id"})),
    ("key_mismatch", orjson.dumps({**DELETE_U2, "key": {"user_id": {"N": "2"}}})),
    (
        "unauthorized_table",
        orjson.dumps(action("fx-payroll", "DeleteItem", "payroll", {"emp": {"S": "e1"}})),
    ),
    ("bad_expression", orjson.dumps({**ADD_U1, "id": "fx-bad-expr", "update": "ADD #v :two"})),
    # In the test topology, but no such DynamoDB table: a permanent apply error.
    (
        "ResourceNotFoundException",
        orjson.dumps(action("fx-audit", "DeleteItem", "audit", {"entry": {"S": "a1"}})),
    ),
    ("", dumps(ADD_U1)),
]

# kinesis_stream_event_aggregated.json, shard 1: one KPL aggregate of u1 put, ADD 1 and the
# order (subsequence numbers 0-2), then a plain record adding 1 again. Expected: u1 visits 3.
AGGREGATED = [PUT_U1, ADD_U1, PUT_ORDER]
AFTER_AGGREGATE = {**ADD_U1, "id": "fx-add-u1-again"}


def records(shard: int, payloads: list[bytes]) -> list[StreamRecord]:
    return [
        StreamRecord(
            STREAM,
            f"shardId-{shard:012d}",
            str(FIRST_SEQUENCE + index * 10**22),
            f"pk-{index}",
            ARRIVAL_MS + index,
            data,
        )
        for index, data in enumerate(payloads)
    ]


def aggregate(documents: list[dict[str, Any]]) -> bytes:
    aggregator = RecordAggregator()
    for index, doc in enumerate(documents):
        assert aggregator.add_user_record(f"user-pk-{index}", dumps(doc)) is None
    _, _, data = aggregator.clear_and_get().get_contents()
    return bytes(data)


def write(name: str, shard: int, payloads: list[bytes]) -> None:
    event = kinesis_event(records(shard, payloads))
    (HERE / name).write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    write("kinesis_stream_event.json", 6, [dumps(doc) for doc in PLAIN])
    write("kinesis_stream_event_poison.json", 3, [data for _, data in POISON])
    write(
        "kinesis_stream_event_aggregated.json",
        1,
        [aggregate(AGGREGATED), dumps(AFTER_AGGREGATE)],
    )


if __name__ == "__main__":
    main()
