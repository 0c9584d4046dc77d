"""Partition keys: the documented rule (docs/FORMAT.md), its test vectors, and its properties."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binlog.attrvalue import item_from_wire
from binlog.envelope import MAX_PARTITION_KEY_CHARS
from binlog.partition import canonical_key, partition_key
from binlog.topology import KeyAttribute, KeySchema

FORMAT_DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"

USERS = KeySchema(KeyAttribute("user_id", "S"))
ORDERS = KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N"))
SCORES = KeySchema(KeyAttribute("score", "N"))
ATTACHMENTS = KeySchema(KeyAttribute("sha256", "B"))
LONG_TABLE = "t" * 255

# The test vectors of docs/FORMAT.md, section "Partition key": keep both in step.
VECTORS: list[tuple[str, KeySchema, dict[str, dict[str, Any]], bytes, str]] = [
    (
        "users",
        USERS,
        {"user_id": {"S": "alice"}},
        b"S:5:alice",
        "users:788161098e28abb577e47e336e69d2ad",
    ),
    (
        "orders",
        ORDERS,
        {"customer_id": {"S": "c-42"}, "order_no": {"N": "7"}},
        b"S:4:c-42N:1:7",
        "orders:7b1d5078b549b52bb563480adedb8ed2",
    ),
    ("scores", SCORES, {"score": {"N": "1"}}, b"N:1:1", "scores:ad2f103f757e5f3df54ca0beeb98f52e"),
    (
        "scores",
        SCORES,
        {"score": {"N": "1.0"}},
        b"N:1:1",
        "scores:ad2f103f757e5f3df54ca0beeb98f52e",
    ),
    (
        "scores",
        SCORES,
        {"score": {"N": "1E+2"}},
        b"N:3:100",
        "scores:e89b3ea44473857cff052cdefcb2ebc2",
    ),
    (
        "scores",
        SCORES,
        {"score": {"N": "-0.50"}},
        b"N:4:-0.5",
        "scores:51f006efa288f032987ceaf471479ec6",
    ),
    ("scores", SCORES, {"score": {"N": "-0"}}, b"N:1:0", "scores:6340e68566e2cf4dda6ea8c08f2d3685"),
    (
        "scores",
        SCORES,
        {"score": {"N": "0.00012E-3"}},
        b"N:10:0.00000012",
        "scores:002c9a70b4d95b1d2d74cf3d5ffaf85e",
    ),
    (
        "attachments",
        ATTACHMENTS,
        {"sha256": {"B": b"\x00\x01\xfe\xff"}},
        b"B:4:\x00\x01\xfe\xff",
        "attachments:d066d7486bc8ac57888e5912f1f56252",
    ),
    (
        "users",
        USERS,
        {"user_id": {"S": "Zoë 東京"}},
        b"S:11:Zo\xc3\xab \xe6\x9d\xb1\xe4\xba\xac",
        "users:a77f2523503d8a92a276bdddd8ae941e",
    ),
    (
        LONG_TABLE,
        KeySchema(KeyAttribute("id", "S")),
        {"id": {"S": "x"}},
        b"S:1:x",
        "t" * 200 + ":8d8873c2d30ad488eff87962098e8a66",
    ),
]


@pytest.mark.parametrize(
    ("table", "schema", "key", "canonical", "expected"),
    VECTORS,
    ids=[f"{v[0][:12]}-{next(iter(v[2].values()))!s:.20}" for v in VECTORS],
)
def test_documented_vectors(
    table: str, schema: KeySchema, key: dict[str, dict[str, Any]], canonical: bytes, expected: str
) -> None:
    # GIVEN a key from the documented test vectors
    # WHEN its canonical bytes and partition key are computed
    # THEN they are exactly the documented ones
    assert canonical_key(schema, key) == canonical
    assert partition_key(table, schema, key) == expected


def test_vectors_follow_the_documented_hash() -> None:
    # GIVEN the documented rule, applied by hand
    for table, _, _, canonical, expected in VECTORS:
        digest = hashlib.sha256(table.encode("utf-8") + b"\n" + canonical).hexdigest()
        # THEN each vector is `<table, 200 chars at most>:<first 32 hex of the digest>`
        assert expected == f"{table[:200]}:{digest[:32]}"


def _doc_vectors() -> list[dict[str, Any]]:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    (block,) = re.findall(r"```jsonl\n(.*?)```", text, re.DOTALL)
    return [json.loads(line) for line in block.splitlines()]


def test_format_doc_vectors_match_the_code() -> None:
    # GIVEN the machine-readable vectors of docs/FORMAT.md
    vectors = _doc_vectors()
    assert len(vectors) >= 5
    for vector in vectors:
        schema = KeySchema(*(KeyAttribute(a["name"], a["type"]) for a in vector["key_schema"]))
        key, _ = item_from_wire(vector["key"])
        # WHEN computed by the code THEN the canonical bytes and partition key are the doc's
        assert canonical_key(schema, key).hex() == vector["canonical_hex"]
        assert partition_key(vector["table"], schema, key) == vector["partition_key"]
        # AND they are among this file's vectors (both documents stay in step)
        assert (
            vector["table"],
            bytes.fromhex(vector["canonical_hex"]),
            vector["partition_key"],
        ) in {(table, canonical, expected) for table, _, _, canonical, expected in VECTORS}


def test_format_doc_vectors_cover_the_promised_cases() -> None:
    # GIVEN the doc's vectors THEN they hold a string, composite, number, binary and
    # non-ASCII key, and the numbers 1, 1.0, 1E+2 and -0.50
    vectors = _doc_vectors()
    types = {tuple(a["type"] for a in v["key_schema"]) for v in vectors}
    assert {("S",), ("S", "N"), ("N",), ("B",)} <= types
    numbers = {v["key"]["score"]["N"] for v in vectors if "score" in v["key"]}
    assert {"1", "1.0", "1E+2", "-0.50"} <= numbers
    assert any(not v["key"].get("user_id", {}).get("S", "").isascii() for v in vectors)
    assert base64.b64decode(next(v for v in vectors if "sha256" in v["key"])["key"]["sha256"]["B"])


def test_binary_key_as_base64_text_gives_the_same_partition_key() -> None:
    # GIVEN a binary key as bytes (boto3 form) and as base64 (wire form)
    as_bytes = {"sha256": {"B": b"\x00\x01\xfe\xff"}}
    as_text = {"sha256": {"B": "AAH+/w=="}}
    # WHEN partition keys are computed THEN they are equal
    assert partition_key("attachments", ATTACHMENTS, as_bytes) == partition_key(
        "attachments", ATTACHMENTS, as_text
    )


def test_only_key_attributes_count() -> None:
    # GIVEN a key passed with extra attributes (a whole item)
    item = {"user_id": {"S": "alice"}, "name": {"S": "Alice"}}
    # WHEN the partition key is computed THEN only the schema's attributes count
    assert partition_key("users", USERS, item) == "users:788161098e28abb577e47e336e69d2ad"


def test_canonical_key_keeps_all_38_digits() -> None:
    # GIVEN two number keys that differ only in their 38th digit: two different items
    first = {"score": {"N": "1234567890123456789012345678901234567"}}
    second = {"score": {"N": "12345678901234567890123456789012345678"}}
    # WHEN their canonical bytes are computed
    # THEN they spell the exact numbers, as a producer in any language would
    assert canonical_key(SCORES, first) == b"N:37:1234567890123456789012345678901234567"
    assert canonical_key(SCORES, second) == b"N:38:12345678901234567890123456789012345678"
    # AND other spellings of them canonicalise to the same exact digits
    third = {"score": {"N": "1.2345678901234567890123456789012345678E+37"}}
    fourth = {"score": {"N": "-123456789012345678901234567.89012345678"}}
    assert canonical_key(SCORES, third) == b"N:38:12345678901234567890123456789012345678"
    assert canonical_key(SCORES, fourth) == b"N:40:-123456789012345678901234567.89012345678"


# --- an independent implementation of docs/FORMAT.md, for property tests ------------------------

_NUMBER_PARTS = re.compile(r"(-?)([0-9]*)\.?([0-9]*)(?:[eE]([+-]?[0-9]+))?")


def _reference_canonical_number(text: str) -> str:
    """The documented canonical decimal, by string manipulation only (no Decimal context)."""
    match = _NUMBER_PARTS.fullmatch(text)
    assert match is not None
    sign, whole, fraction, exponent = match.groups()
    digits = (whole + fraction).lstrip("0")
    # value = int(whole + fraction) * 10 ** (exp - len(fraction))
    scale = int(exponent or 0) - len(fraction)
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    scale += len(digits) - len(stripped)
    digits = stripped
    if scale >= 0:
        plain = digits + "0" * scale
    elif -scale < len(digits):
        plain = digits[:scale] + "." + digits[scale:]
    else:
        plain = "0." + "0" * (-scale - len(digits)) + digits
    return sign + plain


def _reference_partition_key(table: str, schema: KeySchema, key: dict[str, Any]) -> str:
    canonical = b""
    for attr in schema.attributes:
        value = key[attr.name][attr.type]
        if attr.type == "S":
            raw = value.encode("utf-8")
        elif attr.type == "N":
            raw = _reference_canonical_number(value).encode("ascii")
        else:
            raw = value
        canonical += attr.type.encode() + b":" + str(len(raw)).encode() + b":" + raw
    digest = hashlib.sha256(table.encode("utf-8") + b"\n" + canonical).hexdigest()
    return table[:200] + ":" + digest[:32]


@st.composite
def number_texts(draw: st.DrawFn, max_digits: int = 38) -> str:
    """A DynamoDB number in any spelling: plain or scientific, with redundant zeros."""
    digits = draw(st.integers(1, 9)).__str__() + draw(
        st.text("0123456789", max_size=max_digits - 1)
    )
    adjusted = draw(st.integers(-130, 125))
    sign = draw(st.sampled_from(["", "-"]))
    scientific = (
        f"{digits[0]}.{digits[1:]}E{adjusted:+d}" if len(digits) > 1 else f"{digits}E{adjusted}"
    )
    style = draw(st.sampled_from(["scientific", "plain", "padded"]))
    if style == "scientific":
        return sign + scientific
    plain = format(Decimal(scientific), "f")
    if style == "padded":
        plain = "00" + plain + ("" if "." in plain else ".") + "00"
    return sign + plain


_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_tables = st.from_regex(r"[A-Za-z0-9_.-]{3,255}", fullmatch=True)


@st.composite
def keys(draw: st.DrawFn) -> tuple[KeySchema, dict[str, Any]]:
    types = draw(st.lists(st.sampled_from(["S", "N", "B"]), min_size=1, max_size=2))
    names = draw(st.lists(_names, min_size=len(types), max_size=len(types), unique=True))
    attrs = [KeyAttribute(name, kind) for name, kind in zip(names, types, strict=True)]  # type: ignore[arg-type]
    key: dict[str, Any] = {}
    for attr in attrs:
        if attr.type == "S":
            key[attr.name] = {"S": draw(st.text(st.characters(codec="utf-8"), min_size=1))}
        elif attr.type == "N":
            key[attr.name] = {"N": draw(number_texts())}
        else:
            key[attr.name] = {"B": draw(st.binary(min_size=1, max_size=32))}
    return KeySchema(*attrs), key


@settings(max_examples=300, deadline=None, database=None)
@given(_tables, keys())
def test_partition_key_matches_the_documented_rule(
    table: str, schema_and_key: tuple[KeySchema, dict[str, Any]]
) -> None:
    # GIVEN any table and key
    schema, key = schema_and_key
    # WHEN the partition key is computed
    computed = partition_key(table, schema, key)
    # THEN it is the documented rule's and fits Kinesis's 256 characters
    assert computed == _reference_partition_key(table, schema, key)
    assert len(computed) <= MAX_PARTITION_KEY_CHARS


@settings(max_examples=200, deadline=None, database=None)
@given(number_texts(max_digits=28), st.sampled_from(["plain", "scientific", "padded"]))
def test_equal_numbers_share_a_partition_key(text: str, style: str) -> None:
    # GIVEN a number and another spelling of it
    value = Decimal(text)
    if style == "plain":
        other = format(value, "f")
    elif style == "scientific":
        other = f"{value:E}"
    else:
        other = format(value, "f") + ("" if "." in format(value, "f") else ".") + "000"
    assert Decimal(other) == value
    # WHEN partition keys are computed THEN both spellings land on the same key (one shard)
    assert partition_key("scores", SCORES, {"score": {"N": text}}) == partition_key(
        "scores", SCORES, {"score": {"N": other}}
    )
