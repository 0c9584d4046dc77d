"""The published JSON Schema: valid, shipped in the package, and in step with the codec and docs."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from binlog.codec import decode
from binlog.errors import RecordError
from binlog.schema import load_schema
from binlog.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
FORMAT_DOC = ROOT / "docs" / "FORMAT.md"
TABLES = load_topology(ROOT / "examples" / "topology.toml").tables
VALIDATOR = jsonschema.Draft202012Validator(load_schema())

PUT: dict[str, Any] = {
    "format": 1,
    "id": "a1",
    "time": 1718000000000,
    "action": "PutItem",
    "table": "orders",
    "key": {"customer_id": {"S": "c-1"}, "order_no": {"N": "7"}},
    "item": {"customer_id": {"S": "c-1"}, "order_no": {"N": "7"}, "total": {"N": "1.10"}},
}
DELETE: dict[str, Any] = {
    "format": 1,
    "id": "a2",
    "time": 1718000000000,
    "action": "DeleteItem",
    "table": "attachments",
    "key": {"sha256": {"B": "AAH+/w=="}},
}
UPDATE: dict[str, Any] = {
    "format": 1,
    "id": "a3",
    "time": 1718000000000,
    "action": "UpdateItem",
    "table": "users",
    "key": {"user_id": {"S": "u-1"}},
    "update": "SET #n = :v",
    "names": {"#n": "name"},
    "values": {":v": {"S": "Ann"}},
}


def _doc_examples() -> list[dict[str, Any]]:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    # GIVEN the schema shipped in the package WHEN checked against its metaschema THEN valid
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_description_names_what_the_schema_cannot_express() -> None:
    # GIVEN the schema's description THEN it points at the limits only consumers enforce
    description = load_schema()["description"]
    for limit in ("1 MiB", "400 KB", "32 levels", "38 significant digits", "key schema"):
        assert limit in description


def test_load_schema_returns_a_fresh_dict() -> None:
    # GIVEN two loads WHEN one is mutated THEN the other is not
    first = load_schema()
    first["title"] = "changed"
    assert load_schema()["title"] != "changed"


@pytest.mark.parametrize("doc", [PUT, DELETE, UPDATE], ids=["put", "delete", "update"])
def test_valid_records_of_each_action(doc: dict[str, Any]) -> None:
    # GIVEN a valid record of each action
    # WHEN validated and decoded THEN both accept it
    VALIDATOR.validate(doc)
    assert decode(json.dumps(doc).encode(), TABLES).id == doc["id"]


def test_format_doc_examples_are_valid_and_decode() -> None:
    # GIVEN every ```json example of docs/FORMAT.md
    examples = _doc_examples()
    # THEN there is one per action at least
    assert {doc["action"] for doc in examples} == {"PutItem", "DeleteItem", "UpdateItem"}
    for doc in examples:
        # AND each is valid under the schema AND decodes for the example topology
        VALIDATOR.validate(doc)
        assert decode(json.dumps(doc).encode(), TABLES).id == doc["id"]


def test_the_put_example_shows_every_value_type() -> None:
    # GIVEN the PutItem example WHEN its value types are collected THEN all ten are there
    put = next(doc for doc in _doc_examples() if doc["action"] == "PutItem")
    kinds: set[str] = set()

    def collect(value: dict[str, Any]) -> None:
        ((kind, inner),) = value.items()
        kinds.add(kind)
        children = inner if kind == "L" else inner.values() if kind == "M" else []
        for child in children:
            collect(child)

    for value in put["item"].values():
        collect(value)
    assert kinds == {"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"}


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = doc
        for name in parents:
            target = target[name]
        target[last] = value

    return mutate


def _drop(name: str) -> Mutation:
    return lambda doc: doc.pop(name)


# (base record, mutation, does the codec refuse it too?)
INVALID: list[tuple[str, dict[str, Any], Mutation, bool]] = [
    # required fields per action
    ("put-without-item", PUT, _drop("item"), True),
    ("put-with-update", PUT, _set("update", "SET a = b"), True),
    ("update-without-update", UPDATE, _drop("update"), True),
    ("update-with-item", UPDATE, _set("item", {"user_id": {"S": "u-1"}}), True),
    ("delete-with-item", DELETE, _set("item", {"sha256": {"B": "AAH+/w=="}}), True),
    ("delete-with-update", DELETE, _set("update", "SET a = b"), True),
    ("missing-id", PUT, _drop("id"), True),
    ("missing-time", PUT, _drop("time"), True),
    ("missing-key", PUT, _drop("key"), True),
    ("missing-format", PUT, _drop("format"), True),
    # envelope fields
    ("format-2", PUT, _set("format", 2), True),
    ("format-string", PUT, _set("format", "1"), True),
    ("format-true", PUT, _set("format", True), True),
    ("unknown-field", PUT, _set("extra", 1), True),
    ("empty-id", PUT, _set("id", ""), True),
    ("time-fraction", PUT, _set("time", 1.5), True),
    ("time-string", PUT, _set("time", "1718000000000"), True),
    ("time-negative", PUT, _set("time", -1), False),
    ("bad-action", PUT, _set("action", "BatchWriteItem"), True),
    ("table-unknown-chars", PUT, _set("table", "orders/eu"), True),
    ("empty-condition", PUT, _set("condition", ""), True),
    ("origin-null", PUT, _set("origin", None), False),
    # keys
    (
        "key-three-attributes",
        PUT,
        _set("key", {"customer_id": {"S": "c-1"}, "order_no": {"N": "7"}, "x": {"S": "x"}}),
        True,
    ),
    ("key-empty", DELETE, _set("key", {}), True),
    ("key-list-type", DELETE, _set("key/sha256", {"L": []}), True),
    ("key-empty-string", UPDATE, _set("key/user_id", {"S": ""}), True),
    ("key-empty-binary", DELETE, _set("key/sha256", {"B": ""}), True),
    # attribute values
    ("two-type-keys", PUT, _set("item/total", {"N": "1", "S": "1"}), True),
    ("no-type-key", PUT, _set("item/total", {}), True),
    ("unknown-type", PUT, _set("item/total", {"D": "1"}), True),
    ("null-false", PUT, _set("item/total", {"NULL": False}), True),
    ("bool-string", PUT, _set("item/total", {"BOOL": "true"}), True),
    ("number-as-json-number", PUT, _set("item/total", {"N": 1.1}), True),
    ("number-underscore", PUT, _set("item/total", {"N": "1_000"}), True),
    ("number-space", PUT, _set("item/total", {"N": " 1"}), True),
    ("number-nan", PUT, _set("item/total", {"N": "NaN"}), True),
    ("number-infinity", PUT, _set("item/total", {"N": "Infinity"}), True),
    ("number-empty", PUT, _set("item/total", {"N": ""}), True),
    ("number-plus", PUT, _set("item/total", {"N": "+1"}), True),
    ("base64-unpadded", PUT, _set("item/total", {"B": "AAE"}), True),
    ("base64-urlsafe", PUT, _set("item/total", {"B": "-_8="}), True),
    ("base64-non-ascii", PUT, _set("item/total", {"B": "é"}), True),
    ("ss-empty", PUT, _set("item/total", {"SS": []}), True),
    ("ss-duplicate", PUT, _set("item/total", {"SS": ["a", "a"]}), True),
    ("ns-duplicate", PUT, _set("item/total", {"NS": ["1", "1"]}), True),
    ("bs-duplicate", PUT, _set("item/total", {"BS": ["AA==", "AA=="]}), True),
    ("ns-bad-number", PUT, _set("item/total", {"NS": ["x"]}), True),
    ("list-of-plain-json", PUT, _set("item/total", {"L": [1]}), True),
    ("map-of-plain-json", PUT, _set("item/total", {"M": {"a": "b"}}), True),
    ("deep-bad-value", PUT, _set("item/total", {"L": [{"M": {"a": {"N": "x"}}}]}), True),
    # expressions
    ("names-without-expression", PUT, _set("names", {"#a": "x"}), True),
    ("values-without-expression", PUT, _set("values", {":a": {"S": "x"}}), True),
    ("name-placeholder-without-hash", UPDATE, _set("names", {"n": "name"}), True),
    ("value-placeholder-without-colon", UPDATE, _set("values", {"v": {"S": "Ann"}}), True),
    ("empty-names", DELETE, _set("names", {}), False),
]


@pytest.mark.parametrize(
    ("base", "mutate", "codec_refuses"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_records_fail_the_schema(
    base: dict[str, Any], mutate: Mutation, codec_refuses: bool
) -> None:
    # GIVEN a valid record with one thing wrong
    doc = copy.deepcopy(base)
    mutate(doc)
    # WHEN validated THEN the schema refuses it
    assert not VALIDATOR.is_valid(doc)
    # AND the decoder refuses it too, unless the schema is deliberately stricter
    # (it asks producers to omit rather than send null or {}, and for a time >= 0)
    if codec_refuses:
        with pytest.raises(RecordError):
            decode(json.dumps(doc).encode(), TABLES)
    else:
        decode(json.dumps(doc).encode(), TABLES)


def test_schema_accepts_every_value_type_at_the_edges() -> None:
    # GIVEN an item with empty strings, empty binary, empty list and map, and extreme numbers
    doc = copy.deepcopy(PUT)
    doc["item"].update(
        {
            "s": {"S": ""},
            "b": {"B": ""},
            "l": {"L": []},
            "m": {"M": {}},
            "tiny": {"N": "1E-130"},
            "big": {"N": "-9.99e+125"},
            "plain": {"N": ".5"},
            "sets": {"L": [{"SS": [""]}, {"NS": ["0"]}, {"BS": [""]}]},
        }
    )
    # WHEN validated and decoded THEN both accept it
    VALIDATOR.validate(doc)
    decode(json.dumps(doc).encode(), TABLES)
