"""The record codec: round trips, the JSON Schema, and decoding hostile input safely.

Decoding must give an `Envelope` or a `RecordError` with a `Reason` for *any* bytes:
a consumer parks what it cannot decode and carries on, so any other exception would
stall a shard.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binlog.attrvalue import MAX_DEPTH, MAX_ITEM_BYTES, AttributeValueError
from binlog.codec import decode, encode
from binlog.envelope import MAX_RECORD_BYTES, Action, Envelope
from binlog.errors import Reason, RecordError
from binlog.schema import load_schema
from binlog.topology import KeyAttribute, KeySchema, KeyType

VALIDATOR = jsonschema.Draft202012Validator(load_schema())

USERS = KeySchema(KeyAttribute("user_id", "S"))
ORDERS = KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N"))
TABLES: dict[str, KeySchema] = {"users": USERS, "orders": ORDERS}

FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- strategies: every DynamoDB type, in boto3's low-level form (binary as bytes) ---------------

_chars = st.characters(codec="utf-8")  # any Unicode scalar value (no lone surrogates)
strings = st.text(_chars, max_size=12)
attribute_names = st.text(_chars, min_size=1, max_size=8)
table_names = st.from_regex(r"[A-Za-z0-9_.-]{3,40}", fullmatch=True)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """A DynamoDB number: 1-38 significant digits, exponents often at the limits, any spelling."""
    digits = str(draw(st.integers(1, 9))) + draw(st.text("0123456789", max_size=37))
    adjusted = draw(
        st.one_of(
            st.integers(-130, 125),
            st.sampled_from([-130, -129, 124, 125]),
            st.integers(-3, 3),
        )
    )
    sign = draw(st.sampled_from(["", "-"]))
    mantissa = f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits
    style = draw(st.sampled_from(["E", "e", "plain", "padded", "zero"]))
    if style == "zero":
        return draw(st.sampled_from(["0", "0.0", "-0", "000", "0E+5"]))
    if style in ("E", "e"):
        return f"{sign}{mantissa}{style}{adjusted:+d}"
    plain = format(Decimal(f"{mantissa}E{adjusted}"), "f")
    if style == "padded":
        plain = "0" + plain + ("" if "." in plain else ".") + "00"
    return sign + plain


def _unique_numbers(texts: list[str]) -> bool:
    return len({Decimal(text) for text in texts}) == len(texts)


scalars: st.SearchStrategy[dict[str, Any]] = st.one_of(
    strings.map(lambda s: {"S": s}),
    numbers().map(lambda n: {"N": n}),
    st.binary(max_size=12).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(strings, min_size=1, max_size=4, unique=True).map(lambda s: {"SS": s}),
    st.lists(numbers(), min_size=1, max_size=4).filter(_unique_numbers).map(lambda n: {"NS": n}),
    st.lists(st.binary(max_size=8), min_size=1, max_size=4, unique=True).map(lambda b: {"BS": b}),
)

attribute_values: st.SearchStrategy[dict[str, Any]] = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: {"L": items}),
        st.dictionaries(attribute_names, children, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=10,
)


@st.composite
def deeply_nested(draw: st.DrawFn) -> dict[str, Any]:
    """A value inside 1 to 32 lists and maps: DynamoDB's whole nesting range."""
    value = draw(scalars)
    for _ in range(draw(st.integers(1, MAX_DEPTH))):
        value = {"L": [value]} if draw(st.booleans()) else {"M": {draw(attribute_names): value}}
    return value


any_values = st.one_of(attribute_values, deeply_nested())


def key_values(kind: KeyType) -> st.SearchStrategy[dict[str, Any]]:
    """Key attributes: S, N or B, never empty (DynamoDB refuses empty key values)."""
    if kind == "S":
        return st.text(_chars, min_size=1, max_size=12).map(lambda s: {"S": s})
    if kind == "N":
        return numbers().map(lambda n: {"N": n})
    return st.binary(min_size=1, max_size=12).map(lambda b: {"B": b})


@st.composite
def key_schemas(draw: st.DrawFn) -> KeySchema:
    kinds: list[KeyType] = draw(st.lists(st.sampled_from(["S", "N", "B"]), min_size=1, max_size=2))
    names = draw(st.lists(attribute_names, min_size=len(kinds), max_size=len(kinds), unique=True))
    return KeySchema(*(KeyAttribute(n, k) for n, k in zip(names, kinds, strict=True)))


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[Envelope, dict[str, KeySchema]]:
    """A valid envelope of any action, and the topology tables it belongs to."""
    table = draw(table_names)
    schema = draw(key_schemas())
    key = {attr.name: draw(key_values(attr.type)) for attr in schema.attributes}
    action = draw(st.sampled_from(Action))
    item = None
    if action is Action.PUT:
        others = draw(
            st.dictionaries(attribute_names.filter(lambda n: n not in key), any_values, max_size=5)
        )
        item = {**others, **key}
    names = {f"#n{i}": draw(attribute_names) for i in range(draw(st.integers(0, 3)))}
    values = {f":v{i}": draw(any_values) for i in range(draw(st.integers(0, 3)))}
    placeholders = [*names, *values]
    assignments = ", ".join(
        f"{placeholders[i]} = {placeholders[-1 - i]}" for i in range(len(placeholders))
    )
    update = None
    condition = None
    if action is Action.UPDATE:
        update = f"SET {assignments}" if placeholders else "REMOVE stale"
        if draw(st.booleans()):
            condition = "attribute_exists(pk)"
    elif bool(placeholders) or draw(st.booleans()):
        condition = " AND ".join(f"{p} = {p}" for p in placeholders) or "attribute_exists(pk)"
    envelope = Envelope(
        id=draw(st.text(_chars, min_size=1, max_size=30)),
        time_ms=draw(st.integers(0, 2**53 - 1)),
        action=action,
        table=table,
        key=key,
        item=item,
        update=update,
        condition=condition,
        names=names or None,
        values=values or None,
        origin=draw(st.none() | st.text(_chars, min_size=1, max_size=20)),
    )
    return envelope, {table: schema}


# --- round trip ---------------------------------------------------------------------------------


@ROUND_TRIP
@given(envelopes())
def test_round_trip_and_schema(case: tuple[Envelope, dict[str, KeySchema]]) -> None:
    # GIVEN any valid envelope, of any action, holding every DynamoDB type
    envelope, tables = case
    # WHEN it is encoded
    data = encode(envelope)
    # THEN the record validates against the published JSON Schema
    VALIDATOR.validate(json.loads(data))
    # AND decoding gives the same envelope back, with or without the topology's tables
    assert decode(data, tables) == envelope
    assert decode(data) == envelope


def test_encoding_is_compact_utf8_json_with_base64_binary() -> None:
    # GIVEN an envelope with non-ASCII text and binary
    envelope = Envelope(
        id="01J9Z3K6B8",
        time_ms=1718000000123,
        action=Action.PUT,
        table="users",
        key={"user_id": {"S": "Zoë"}},
        item={"user_id": {"S": "Zoë"}, "avatar": {"B": b"\x00\xff"}},
    )
    # WHEN encoded THEN the bytes are exactly these
    assert (
        encode(envelope)
        == (
            '{"format":1,"id":"01J9Z3K6B8","time":1718000000123,"action":"PutItem","table":"users",'
            '"key":{"user_id":{"S":"Zoë"}},"item":{"user_id":{"S":"Zoë"},"avatar":{"B":"AP8="}}}'
        ).encode()
    )


# --- a valid record to break -------------------------------------------------------------------


def _record(**fields: Any) -> dict[str, Any]:
    """A valid PutItem record for `users`; keyword arguments replace (or, as None, drop) fields."""
    doc: dict[str, Any] = {
        "format": 1,
        "id": "a1",
        "time": 1718000000000,
        "action": "PutItem",
        "table": "users",
        "key": {"user_id": {"S": "u-1"}},
        "item": {"user_id": {"S": "u-1"}, "name": {"S": "Ann"}},
    }
    doc.update(fields)
    return {name: value for name, value in doc.items() if value is not None}


def _data(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def _reason(data: bytes, tables: Mapping[str, KeySchema] | None = None) -> Reason:
    with pytest.raises(RecordError) as exc_info:
        decode(data, tables)
    return exc_info.value.reason


def test_a_valid_record_decodes() -> None:
    # GIVEN the base record WHEN decoded with the topology THEN every field is there
    assert decode(_data(_record()), TABLES) == Envelope(
        id="a1",
        time_ms=1718000000000,
        action=Action.PUT,
        table="users",
        key={"user_id": {"S": "u-1"}},
        item={"user_id": {"S": "u-1"}, "name": {"S": "Ann"}},
    )


# --- specific reasons ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"not json", b"{'format': 1}", b'{"format": 1,}', b"\x00"],
)
def test_not_json(data: bytes) -> None:
    # GIVEN bytes that are not JSON WHEN decoded THEN not_json
    assert _reason(data) is Reason.NOT_JSON


@pytest.mark.parametrize(
    "data",
    [
        b'{"format": 1, "id": "caf\xe9"}',  # Latin-1
        b"\xff\xfe\x00\x00",
        '{"format": 1}'.encode("utf-16"),  # valid JSON, but not UTF-8
        '{"format": 1}'.encode("utf-32"),
        b"\xef\xbb\xbf" + b'{"format": 1}',  # a BOM (RFC 8259: must not be added)
    ],
)
def test_non_utf8_is_not_json(data: bytes) -> None:
    # GIVEN a record that is not UTF-8 WHEN decoded THEN not_json
    assert _reason(data) is Reason.NOT_JSON


@pytest.mark.parametrize("data", [b"[]", b'[{"format": 1}]', b'"x"', b"1", b"null", b"true"])
def test_json_that_is_not_an_object(data: bytes) -> None:
    # GIVEN valid JSON that is not an object WHEN decoded THEN not_object
    assert _reason(data) is Reason.NOT_OBJECT


@pytest.mark.parametrize("version", [2, 0, -1, "1", True, None, [1], {"v": 1}, 1.5])
def test_unknown_format(version: object) -> None:
    # GIVEN a record of a format this consumer does not know (or none)
    doc = _record()
    doc["format"] = version
    # WHEN decoded THEN unknown_format, before anything else is looked at
    assert _reason(_data(doc), TABLES) is Reason.UNKNOWN_FORMAT


def test_unknown_format_is_reported_before_other_faults() -> None:
    # GIVEN a format 2 record whose other fields this consumer cannot judge
    # WHEN decoded THEN unknown_format (so the record is parked for a newer consumer)
    assert _reason(_data({"format": 2, "something": "new"})) is Reason.UNKNOWN_FORMAT


@pytest.mark.parametrize("field", ["id", "time", "action", "table", "key"])
def test_missing_required_field(field: str) -> None:
    # GIVEN a record without a required field WHEN decoded THEN missing_field
    doc = _record()
    del doc[field]
    assert _reason(_data(doc)) is Reason.MISSING_FIELD


def test_missing_id_says_which_field() -> None:
    # GIVEN a record without an id WHEN decoded THEN the error names it
    with pytest.raises(RecordError) as exc_info:
        decode(_data(_record(id=None)))
    assert exc_info.value.reason is Reason.MISSING_FIELD
    assert exc_info.value.detail == "field 'id' is required"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"action": "Put"}, Reason.BAD_FIELD),
        ({"action": "putitem"}, Reason.BAD_FIELD),
        ({"action": "BatchWriteItem"}, Reason.BAD_FIELD),
        ({"action": 1}, Reason.BAD_FIELD),
        ({"id": ""}, Reason.BAD_FIELD),
        ({"id": 7}, Reason.BAD_FIELD),
        ({"time": "1718000000000"}, Reason.BAD_FIELD),
        ({"time": 1718000000000.5}, Reason.BAD_FIELD),
        ({"time": True}, Reason.BAD_FIELD),
        ({"table": ""}, Reason.BAD_FIELD),
        ({"origin": 1}, Reason.BAD_FIELD),
        ({"extra": 1}, Reason.BAD_FIELD),
        ({"condition": ""}, Reason.BAD_FIELD),
        ({"key": []}, Reason.BAD_VALUE),
        ({"key": {"user_id": "u-1"}}, Reason.BAD_VALUE),
        ({"item": {"user_id": {"S": "u-1"}, "n": {"N": 1.5}}}, Reason.BAD_VALUE),
        ({"item": {"user_id": {"S": "u-1"}, "n": {"N": "1e999"}}}, Reason.BAD_VALUE),
        ({"item": None}, Reason.MISSING_FIELD),
        ({"update": "SET a = b"}, Reason.BAD_FIELD),
        ({"action": "DeleteItem"}, Reason.BAD_FIELD),  # DeleteItem carries no item
        ({"action": "UpdateItem", "item": None}, Reason.MISSING_FIELD),
        ({"action": "UpdateItem", "item": None, "update": 5}, Reason.BAD_FIELD),
        ({"names": {"#a": 1}, "condition": "attribute_exists(#a)"}, Reason.BAD_FIELD),
        ({"names": ["#a"], "condition": "attribute_exists(#a)"}, Reason.BAD_FIELD),
    ],
)
def test_bad_fields(fields: dict[str, Any], reason: Reason) -> None:
    # GIVEN a record with one field wrong WHEN decoded THEN the specific reason
    assert _reason(_data(_record(**fields)), TABLES) is reason


@pytest.mark.parametrize(
    "key",
    [
        {},  # partition key missing
        {"customer_id": {"S": "c-1"}},  # sort key missing
        {"order_no": {"N": "1"}},  # partition key missing
        {"customer_id": {"N": "1"}, "order_no": {"N": "1"}},  # wrong type
        {"customer_id": {"S": "c-1"}, "order_no": {"S": "1"}},  # wrong type
        {"customer_id": {"B": "AA=="}, "order_no": {"N": "1"}},  # wrong type
        {"customer_id": {"S": "c-1"}, "order_no": {"N": "1"}, "extra": {"S": "x"}},
        {"customer": {"S": "c-1"}, "order_no": {"N": "1"}},  # wrong name
    ],
)
def test_key_mismatch(key: dict[str, Any]) -> None:
    # GIVEN a DeleteItem on orders whose key does not match the table's key schema
    doc = _record(action="DeleteItem", table="orders", key=key, item=None)
    # WHEN decoded with the topology THEN key_mismatch
    assert _reason(_data(doc), TABLES) is Reason.KEY_MISMATCH


def test_put_item_must_carry_the_key_values() -> None:
    # GIVEN a PutItem whose item has another key value than the key
    doc = _record(item={"user_id": {"S": "u-2"}})
    # WHEN decoded THEN key_mismatch
    assert _reason(_data(doc), TABLES) is Reason.KEY_MISMATCH
    # AND an item without the key attribute at all is refused alike
    assert _reason(_data(_record(item={"name": {"S": "Ann"}})), TABLES) is Reason.KEY_MISMATCH


@pytest.mark.parametrize(
    "key",
    [
        {"user_id": {"S": ""}},  # DynamoDB: key attributes cannot be empty strings
        {"user_id": {"S": "x" * 2049}},  # DynamoDB: partition key values at most 2048 bytes
    ],
    ids=["empty", "over-2048-bytes"],
)
def test_key_values_dynamodb_refuses_are_a_key_mismatch(key: dict[str, Any]) -> None:
    # GIVEN a DeleteItem whose key value DynamoDB would refuse
    doc = _record(action="DeleteItem", key=key, item=None)
    # WHEN decoded with the topology THEN key_mismatch (not a ValidationException at apply time)
    assert _reason(_data(doc), TABLES) is Reason.KEY_MISMATCH


def test_sort_key_over_1024_bytes_is_a_key_mismatch() -> None:
    # GIVEN a sort key of 1025 bytes (DynamoDB allows 1024)
    tables = {"events": KeySchema(KeyAttribute("pk", "S"), KeyAttribute("sk", "S"))}
    key = {"pk": {"S": "p"}, "sk": {"S": "x" * 1025}}
    doc = _record(table="events", action="DeleteItem", item=None, key=key)
    # WHEN decoded THEN key_mismatch
    assert _reason(_data(doc), tables) is Reason.KEY_MISMATCH


def test_unknown_table() -> None:
    # GIVEN a record for a table outside the consumer's topology
    doc = _record(table="payroll")
    # WHEN decoded with the topology THEN unknown_table
    assert _reason(_data(doc), TABLES) is Reason.UNKNOWN_TABLE
    # AND without a topology the table is not judged
    assert decode(_data(doc)).table == "payroll"


def _item_of_size(size: int) -> dict[str, Any]:
    # user_id (7) + "u-1" (3) + pad (3) + the padding's bytes
    return {"user_id": {"S": "u-1"}, "pad": {"S": "x" * (size - 13)}}


def test_item_exactly_at_400_kb_is_accepted() -> None:
    # GIVEN an item of exactly 409,600 bytes as DynamoDB counts
    doc = _record(item=_item_of_size(MAX_ITEM_BYTES))
    # WHEN decoded THEN accepted
    assert decode(_data(doc), TABLES).item == _item_of_size(MAX_ITEM_BYTES)


def test_item_one_byte_over_400_kb_is_too_large() -> None:
    # GIVEN an item of 409,601 bytes as DynamoDB counts
    doc = _record(item=_item_of_size(MAX_ITEM_BYTES + 1))
    # WHEN decoded THEN item_too_large
    assert _reason(_data(doc), TABLES) is Reason.ITEM_TOO_LARGE


def test_item_size_counts_utf8_bytes_not_characters() -> None:
    # GIVEN an item of 204,801 two-byte characters: 409,602 bytes
    doc = _record(item={"user_id": {"S": "u-1"}, "é": {"S": "é" * 204_797}})
    # WHEN decoded THEN item_too_large
    assert _reason(_data(doc), TABLES) is Reason.ITEM_TOO_LARGE


def test_record_over_1_mib_is_refused_before_parsing() -> None:
    # GIVEN 1 MiB + 1 bytes that are not even JSON
    data = b"\xff" * (MAX_RECORD_BYTES + 1)
    # WHEN decoded THEN record_too_large (the size check comes first)
    assert _reason(data) is Reason.RECORD_TOO_LARGE


def test_record_of_exactly_1_mib_is_decoded() -> None:
    # GIVEN a valid record padded with JSON whitespace to exactly 1 MiB
    data = _data(_record())
    data = data[:-1] + b" " * (MAX_RECORD_BYTES - len(data)) + b"}"
    assert len(data) == MAX_RECORD_BYTES
    # WHEN decoded THEN accepted
    assert decode(data, TABLES).id == "a1"


def _nested(levels: int, kind: str) -> dict[str, Any]:
    value: dict[str, Any] = {"N": "1"}
    for _ in range(levels):
        value = {"L": [value]} if kind == "L" else {"M": {"m": value}}
    return value


@pytest.mark.parametrize("kind", ["L", "M"])
def test_32_levels_decode_and_33_are_too_deep(kind: str) -> None:
    # GIVEN items nested 32 and 33 levels deep
    ok = _record(item={"user_id": {"S": "u-1"}, "deep": _nested(MAX_DEPTH, kind)})
    deep = _record(item={"user_id": {"S": "u-1"}, "deep": _nested(MAX_DEPTH + 1, kind)})
    # WHEN decoded THEN 32 is accepted and 33 is too_deep
    assert decode(_data(ok), TABLES).item == ok["item"]
    assert _reason(_data(deep), TABLES) is Reason.TOO_DEEP


def test_too_deep_in_expression_values() -> None:
    # GIVEN an UpdateItem whose expression value nests 33 levels
    doc = _record(
        action="UpdateItem", item=None, update="SET a = :v", values={":v": _nested(33, "L")}
    )
    # WHEN decoded THEN too_deep
    assert _reason(_data(doc), TABLES) is Reason.TOO_DEEP


def test_100000_brackets_are_too_deep_not_a_crash() -> None:
    # GIVEN 100,000 '[' (a parser bomb that exhausts recursive parsers)
    # WHEN decoded THEN too_deep
    assert _reason(b"[" * 100_000) is Reason.TOO_DEEP
    # AND the same inside an item
    bomb = _data(_record()).replace(b'{"S": "Ann"}', b'{"L": ' + b"[" * 100_000)
    assert _reason(bomb) is Reason.TOO_DEEP


def test_hundreds_of_levels_that_parse_are_too_deep() -> None:
    # GIVEN 300 nested lists: JSON parses them, DynamoDB does not take them
    doc = _record(item={"user_id": {"S": "u-1"}, "deep": _nested(300, "L")})
    # WHEN decoded THEN too_deep
    assert _reason(_data(doc), TABLES) is Reason.TOO_DEEP


@pytest.mark.parametrize(
    "fields",
    [
        {"condition": "attribute_not_exists(#pk)"},  # #pk undefined
        {"condition": "a = :v"},  # :v undefined
        {"condition": "attribute_not_exists(pk)", "names": {"#pk": "user_id"}},  # unused
        {"condition": "attribute_not_exists(pk)", "values": {":v": {"N": "1"}}},  # unused
        {"names": {"#pk": "user_id"}},  # names without any expression
        {"values": {":v": {"N": "1"}}},  # values without any expression
        {"condition": "attribute_exists(#a)", "names": {"#a": "x", "a": "y"}},  # no '#'
    ],
)
def test_bad_expression(fields: dict[str, Any]) -> None:
    # GIVEN placeholders used but undefined, or defined but unused, as DynamoDB refuses
    # WHEN decoded THEN bad_expression
    assert _reason(_data(_record(**fields)), TABLES) is Reason.BAD_EXPRESSION


def test_bad_expression_names_the_placeholder() -> None:
    # GIVEN an update using :inc without defining it
    doc = _record(action="UpdateItem", item=None, update="ADD visits :inc")
    # WHEN decoded THEN the error names :inc
    with pytest.raises(RecordError) as exc_info:
        decode(_data(doc), TABLES)
    assert exc_info.value.reason is Reason.BAD_EXPRESSION
    assert exc_info.value.detail == ":inc is used but not defined"


def test_expressions_with_all_placeholders_defined_decode() -> None:
    # GIVEN an UpdateItem whose update and condition use each placeholder
    doc = _record(
        action="UpdateItem",
        item=None,
        update="SET #n = :name ADD visits :one",
        condition="attribute_exists(user_id) AND #n <> :name",
        names={"#n": "name"},
        values={":name": {"S": "Ann"}, ":one": {"N": "1"}},
    )
    # WHEN decoded THEN the envelope carries them
    envelope = decode(_data(doc), TABLES)
    assert envelope.names == {"#n": "name"}
    assert envelope.values == {":name": {"S": "Ann"}, ":one": {"N": "1"}}


LONE = "\ud800"
SURROGATE_FIELDS: dict[str, dict[str, Any]] = {
    "item": {"item": {"user_id": {"S": "u-1"}, "name": {"S": LONE}}},
    "item-name": {"item": {"user_id": {"S": "u-1"}, LONE: {"S": "x"}}},
    "values": {"condition": "#n = :v", "names": {"#n": "name"}, "values": {":v": {"S": LONE}}},
    "names": {"condition": "attribute_exists(#n)", "names": {"#n": LONE}},
    "condition": {"condition": f"attribute_exists({LONE})"},
    "id": {"id": LONE},
    "table": {"table": LONE},
    "origin": {"origin": LONE},
}


@pytest.mark.parametrize("fields", SURROGATE_FIELDS.values(), ids=SURROGATE_FIELDS.keys())
def test_lone_surrogates_are_refused(fields: dict[str, Any]) -> None:
    # GIVEN a record holding "\ud800": a valid JSON escape, but not a Unicode scalar value,
    # so it has no UTF-8 form: DynamoDB cannot store it and the record cannot be re-encoded
    data = json.dumps(_record(**fields)).encode()
    # WHEN decoded THEN a RecordError (bad_value or bad_field), never UnicodeEncodeError later
    assert _reason(data) in {Reason.BAD_VALUE, Reason.BAD_FIELD}


def test_encoding_a_lone_surrogate_is_an_attribute_value_error() -> None:
    # GIVEN an envelope whose id holds a lone surrogate
    envelope = Envelope("\ud800", 1, Action.DELETE, "users", {"user_id": {"S": "u-1"}})
    # WHEN encoded THEN AttributeValueError, as encode documents
    with pytest.raises(AttributeValueError):
        encode(envelope)


# --- fuzz: any input gives an Envelope or a RecordError ------------------------------------------


def _outcome(data: bytes, tables: Mapping[str, KeySchema] | None = TABLES) -> Envelope | Reason:
    """decode's result, or the reason it refused; any other exception fails the test."""
    try:
        return decode(data, tables)
    except RecordError as exc:
        error = exc
    assert isinstance(error.reason, Reason)
    assert error.detail
    return error.reason


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    # GIVEN any bytes WHEN decoded THEN an Envelope or a RecordError, nothing else
    assert isinstance(_outcome(data), Envelope | Reason)


_fuzz_text = st.text(
    st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "#", ":"])),
    max_size=20,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(10**400), 10**400),
        st.floats(),  # includes NaN and Infinity, which Python's json writes and reads
        _fuzz_text,
        st.sampled_from(["S", "N", "B", "L", "M", "SS", "NS", "BS", "NULL", "BOOL", "1E+126"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(_fuzz_text, st.sampled_from(["S", "N", "B", "L", "M", "SS", "NS", "BS"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(json_values)
def test_fuzz_arbitrary_json(value: Any) -> None:
    # GIVEN any JSON document WHEN decoded THEN an Envelope or a RecordError
    assert isinstance(_outcome(json.dumps(value).encode()), Envelope | Reason)


@FUZZ
@given(st.dictionaries(st.sampled_from([*sorted(_record()), "names", "values"]), json_values))
def test_fuzz_arbitrary_envelope_fields(doc: dict[str, Any]) -> None:
    # GIVEN a record-shaped object of arbitrary field values, format 1
    doc["format"] = 1
    # WHEN decoded THEN an Envelope or a RecordError
    assert isinstance(_outcome(json.dumps(doc).encode()), Envelope | Reason)


_SENTINEL = "\x00sentinel\x00"


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a JSON document, for mutations."""
    found = [path]
    if isinstance(value, dict):
        for name, inner in value.items():
            found += _paths(inner, (*path, name))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*path, index))
    return found


def _replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _replace(doc[head], tuple(rest), new)
    return copy


def _remove(doc: Any, path: tuple[Any, ...]) -> Any:
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    if rest:
        copy[head] = _remove(doc[head], tuple(rest))
    else:
        del copy[head]
    return copy


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid record with one thing broken: a field dropped, a type changed, deep, huge."""
    envelope, _ = draw(envelopes())
    doc = json.loads(encode(envelope))
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    mutation = draw(st.sampled_from(["drop", "replace", "retype", "deep", "huge", "duplicate"]))
    if mutation == "drop" and path:
        return json.dumps(_remove(doc, path)).encode()
    if mutation == "replace":
        return json.dumps(_replace(doc, path, draw(json_values))).encode()
    if mutation == "retype" and path and isinstance(path[-1], str):
        # move a value under another type key: {"S": "x"} -> {"N": "x"}
        new_name = draw(st.sampled_from(["S", "N", "B", "L", "M", "SS", "NS", "BS", "NULL"]))
        parent = path[:-1]
        container = doc
        for step in parent:
            container = container[step]
        moved = {**container, new_name: container[path[-1]]}
        if new_name != path[-1]:
            del moved[path[-1]]
        return json.dumps(_replace(doc, parent, moved)).encode()
    if mutation == "deep":
        levels = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 200, 5000, 100_000]))
        kind = draw(st.sampled_from(["list", "L", "M"]))
        if kind == "list":
            bomb = "[" * levels + "]" * levels
        elif kind == "L":
            bomb = '{"L":[' * levels + '{"N":"1"}' + "]}" * levels
        else:
            bomb = '{"M":{"m":' * levels + '{"N":"1"}' + "}}" * levels
        text = json.dumps(_replace(doc, path, _SENTINEL))
        return text.replace(json.dumps(_SENTINEL), bomb).encode()
    if mutation == "huge":
        size = draw(st.sampled_from([MAX_ITEM_BYTES, MAX_ITEM_BYTES + 1, MAX_RECORD_BYTES]))
        return json.dumps(_replace(doc, path, "x" * size)).encode()
    if mutation == "duplicate":
        # the same field twice: JSON parsers keep the last
        text = json.dumps(doc)
        return (text[:-1] + ', "id": ' + json.dumps(draw(json_values)) + "}").encode()
    return json.dumps(doc).encode()


@FUZZ
@given(mutated_records())
def test_fuzz_mutated_records(data: bytes) -> None:
    # GIVEN a valid record broken in one place WHEN decoded THEN an Envelope or a RecordError
    assert isinstance(_outcome(data, None), Envelope | Reason)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(key={"user_id": {"S": "u-1", "N": "1"}}),
        lambda d: d.update(key={"user_id": {"L": []}}),
        lambda d: d["item"].update(b={"B": "***"}),
        lambda d: d["item"].update(b={"B": "\u00e9"}),
        lambda d: d["item"].update(n={"N": "1E+1000000"}),
        lambda d: d["item"].update(n={"NS": ["1", "1.00"]}),
        lambda d: d["item"].update(n={"SS": []}),
        lambda d: d.update(names={"#a": "x"}, condition="attribute_exists(#a)", values=[]),
    ],
)
def test_specific_hostile_values_are_record_errors(
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    # GIVEN a record with a hostile value WHEN decoded THEN a RecordError, not a crash
    doc = _record()
    mutate(doc)
    assert isinstance(_outcome(_data(doc)), Reason)


def test_binary_values_decode_to_bytes() -> None:
    # GIVEN a record with a binary value and a binary set
    raw = bytes(range(256))
    doc = _record(
        item={
            "user_id": {"S": "u-1"},
            "b": {"B": base64.b64encode(raw).decode()},
            "bs": {"BS": ["", "AA=="]},
        }
    )
    # WHEN decoded THEN binary is bytes, including empty binary
    item = decode(_data(doc), TABLES).item
    assert item is not None
    assert item["b"] == {"B": raw}
    assert item["bs"] == {"BS": [b"", b"\x00"]}
