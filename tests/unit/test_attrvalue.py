"""DynamoDB attribute values: numbers, binary, sets, nesting and item size as DynamoDB counts it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary
from hypothesis import given, settings
from hypothesis import strategies as st

from binlog.attrvalue import (
    MAX_DEPTH,
    AttributeValueError,
    NestingTooDeepError,
    canonical_number,
    item_from_wire,
    item_to_wire,
    parse_number,
)

# --- numbers -----------------------------------------------------------------------------------

DIGITS_38 = "12345678901234567890123456789012345678"
NINES_38 = "9" * 38


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "0.0",
        "7",
        "-7",
        "1.10",
        "00012",
        "1.",
        ".5",
        "-.5",
        "1e5",
        "1E+5",
        "1E-5",
        DIGITS_38,
        "-" + DIGITS_38,
        "0." + DIGITS_38,
        DIGITS_38 + "000",  # trailing zeros are not significant
        "1E-130",
        "-1E-130",
        "10E-131",  # 1E-130 spelled differently
        "9.99E+125",
        f"{NINES_38[0]}.{NINES_38[1:]}E+125",  # the largest DynamoDB number
        "-9.99E+125",
    ],
)
def test_dynamodb_numbers_are_accepted(text: str) -> None:
    # GIVEN a number DynamoDB accepts
    # WHEN it is parsed
    value = parse_number(text, "n")
    # THEN it keeps its exact value
    assert value == Decimal(text)


@pytest.mark.parametrize(
    "text",
    [
        "1" + DIGITS_38,  # 39 significant digits
        "1" * 39,
        "0." + "1" * 39,
        "1E-131",
        "-1E-131",
        "0.9E-130",
        "1E+126",
        "10E+125",
        "-1E+126",
        "1E+1000000",  # past Python's default decimal context too
        "1E-1000000",
    ],
)
def test_numbers_outside_dynamodb_limits_are_refused(text: str) -> None:
    # GIVEN a number DynamoDB refuses (38 digits, magnitude 1E-130 .. 9.99E+125)
    # WHEN it is parsed THEN AttributeValueError says why, naming the path
    with pytest.raises(AttributeValueError) as exc_info:
        parse_number(text, "a.n")
    assert exc_info.value.path == "a.n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1_000",
        "+1",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "sNaN",
        "1e",
        "e5",
        ".",
        "-",
        "0x10",
        "1,5",
        "١٢",  # Arabic-Indic digits: Decimal parses them, DynamoDB does not
        "1\n",
    ],
)
def test_malformed_number_text_is_refused(text: str) -> None:
    # GIVEN text that is not DynamoDB number syntax
    # WHEN it is parsed THEN it is refused
    with pytest.raises(AttributeValueError, match="not a DynamoDB number"):
        parse_number(text, "n")


@pytest.mark.parametrize("value", [1, 1.5, Decimal(1), None, True])
def test_numbers_must_be_text(value: object) -> None:
    # GIVEN an N value that is not a string WHEN parsed THEN it is refused
    with pytest.raises(AttributeValueError, match="not a DynamoDB number"):
        parse_number(value, "n")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0", "0"),
        ("-0", "0"),
        ("0.000", "0"),
        ("-0E+5", "0"),
        ("1", "1"),
        ("1.0", "1"),
        ("1E+2", "100"),
        ("-0.50", "-0.5"),
        ("00012.3400", "12.34"),
        ("1E-5", "0.00001"),
        (DIGITS_38, DIGITS_38),
    ],
)
def test_canonical_number_is_plain_and_minimal(text: str, canonical: str) -> None:
    # GIVEN spellings of a number WHEN canonicalised THEN one plain spelling results
    assert canonical_number(parse_number(text, "n")) == canonical


def test_canonical_number_keeps_all_38_digits() -> None:
    # GIVEN a 38-digit number (DynamoDB keeps all 38; Python's default context only 28)
    # WHEN canonicalised THEN no digit is rounded away
    assert canonical_number(parse_number(DIGITS_38 + "E+10", "n")) == DIGITS_38 + "0" * 10
    assert canonical_number(parse_number("0." + DIGITS_38, "n")) == "0." + DIGITS_38


def test_negative_zero_is_zero() -> None:
    # GIVEN -0 (DynamoDB stores it as 0)
    # WHEN it is parsed and canonicalised THEN it equals 0 and spells "0"
    assert parse_number("-0", "n") == 0
    assert canonical_number(parse_number("-0", "n")) == "0"
    # AND a number set holding 0 and -0 holds one number twice
    with pytest.raises(AttributeValueError, match="duplicate element in NS"):
        item_from_wire({"ns": {"NS": ["0", "-0"]}})


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.one_of(
        st.text("0123456789.-+eE_ \u0661", max_size=12),
        st.builds(
            lambda mantissa, exponent: f"{mantissa}E{exponent}",
            st.text("0123456789.-", min_size=1, max_size=45),
            st.integers(-(10**20), 10**20),
        ),
    )
)
def test_fuzz_number_text(text: str) -> None:
    # GIVEN any number-like text, including huge exponents and 45-character mantissas
    # WHEN used as N and in an NS THEN it is accepted or refused as AttributeValueError
    try:
        value = parse_number(text, "n")
    except AttributeValueError:
        return
    # AND an accepted number measures, canonicalises and round-trips without error
    assert canonical_number(value) == canonical_number(parse_number(canonical_number(value), "n"))
    assert item_from_wire({"n": {"N": text}, "ns": {"NS": [text]}})[0] == {
        "n": {"N": text},
        "ns": {"NS": [text]},
    }


# --- values and sets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({}, "a", "exactly one type key"),
        ({"S": "x", "N": "1"}, "a", "exactly one type key"),
        ("x", "a", "exactly one type key"),
        ({"X": "x"}, "a", "unknown type 'X'"),
        ({"s": "x"}, "a", "unknown type 's'"),
        ({"S": 1}, "a", "S must be a string"),
        ({"BOOL": "true"}, "a", "BOOL must be true or false"),
        ({"BOOL": 1}, "a", "BOOL must be true or false"),
        ({"NULL": False}, "a", "NULL must be true"),
        ({"NULL": 1}, "a", "NULL must be true"),
        ({"L": {}}, "a", "L must be a list"),
        ({"M": []}, "a", "M must be an object"),
        ({"SS": []}, "a", "SS must be a non-empty list"),
        ({"SS": "x"}, "a", "SS must be a non-empty list"),
        ({"SS": ["x", "x"]}, "a[1]", "duplicate element in SS"),
        ({"SS": ["x", 1]}, "a[1]", "SS holds strings only"),
        ({"NS": ["1", "1.0"]}, "a[1]", "duplicate element in NS"),
        ({"NS": ["1", "1E+0"]}, "a[1]", "duplicate element in NS"),
        ({"NS": [1]}, "a[0]", "not a DynamoDB number"),
        ({"BS": ["AA==", "AA=="]}, "a[1]", "duplicate element in BS"),
        ({"BS": []}, "a", "BS must be a non-empty list"),
        ({"B": "AAE"}, "a", "invalid base64"),
        ({"B": "AA E="}, "a", "invalid base64"),
        ({"B": "AAE=\n"}, "a", "invalid base64"),
        ({"B": "AAE=AAE="}, "a", "invalid base64"),
        ({"B": "é"}, "a", "invalid base64"),
        ({"B": 1}, "a", "binary must be base64 text"),
        ({"B": None}, "a", "binary must be base64 text"),
    ],
)
def test_invalid_wire_values_are_refused_with_their_path(
    value: object, path: str, message: str
) -> None:
    # GIVEN an attribute value DynamoDB would refuse
    # WHEN the item is read from the wire
    with pytest.raises(AttributeValueError) as exc_info:
        item_from_wire({"a": value})
    # THEN the error names the path and the rule
    assert exc_info.value.path == path
    assert message in exc_info.value.message


def test_error_path_locates_nested_values() -> None:
    # GIVEN a bad number deep inside maps and lists
    item = {"a": {"M": {"b": {"L": [{"S": "x"}, {"N": "one"}]}}}}
    # WHEN read THEN the path points at it
    with pytest.raises(AttributeValueError) as exc_info:
        item_from_wire(item, "item")
    assert exc_info.value.path == "item.a.b[1]"


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_lone_surrogate_strings_are_refused(text: str) -> None:
    # GIVEN a string holding a lone UTF-16 surrogate (JSON can spell it as "\ud800";
    # it has no UTF-8 form, so DynamoDB cannot store it)
    # WHEN read from the wire, as a value, set element or attribute name
    # THEN AttributeValueError, never UnicodeEncodeError
    for item in ({"a": {"S": text}}, {"a": {"SS": [text]}}, {text: {"S": "x"}}):
        with pytest.raises(AttributeValueError):
            item_from_wire(item)


def test_wire_binary_becomes_bytes_and_back() -> None:
    # GIVEN an item with every binary form, including empty binary
    wire = {"b": {"B": "AAH+/w=="}, "e": {"B": ""}, "bs": {"BS": ["AA==", "AQ=="]}}
    # WHEN read from the wire
    memory, _ = item_from_wire(wire)
    # THEN binary is bytes
    assert memory == {
        "b": {"B": b"\x00\x01\xfe\xff"},
        "e": {"B": b""},
        "bs": {"BS": [b"\x00", b"\x01"]},
    }
    # AND writing it back gives the same wire form
    assert item_to_wire(memory)[0] == wire


@pytest.mark.parametrize("raw", [b"\x00\x01", bytearray(b"\x00\x01"), Binary(b"\x00\x01")])
def test_memory_binary_accepts_bytes_like_values(raw: Any) -> None:
    # GIVEN binary as bytes, bytearray or boto3's Binary WHEN written THEN it is base64 text
    assert item_to_wire({"b": {"B": raw}})[0] == {"b": {"B": "AAE="}}


def test_memory_binary_refuses_other_types() -> None:
    # GIVEN binary given as a number WHEN written THEN refused
    with pytest.raises(AttributeValueError, match="binary must be bytes"):
        item_to_wire({"b": {"B": 1}})


def test_memory_binary_sets_refuse_duplicates() -> None:
    # GIVEN a binary set with one value twice WHEN written THEN refused
    with pytest.raises(AttributeValueError, match="duplicate element in BS"):
        item_to_wire({"bs": {"BS": [b"\x00", bytearray(b"\x00")]}})


def test_number_set_elements_differing_past_28_digits_are_distinct() -> None:
    # GIVEN two 38-digit numbers that differ only in the last digit
    first, second = DIGITS_38, DIGITS_38[:-1] + "9"
    # WHEN they form a number set THEN it is accepted (they are different numbers)
    memory, _ = item_from_wire({"ns": {"NS": [first, second]}})
    assert memory == {"ns": {"NS": [first, second]}}


# --- nesting -----------------------------------------------------------------------------------


def _nested(levels: int, kind: str) -> dict[str, Any]:
    value: dict[str, Any] = {"S": "leaf"}
    for _ in range(levels):
        value = {"L": [value]} if kind == "L" else {"M": {"m": value}}
    return value


@pytest.mark.parametrize("kind", ["L", "M"])
def test_32_levels_of_nesting_are_accepted(kind: str) -> None:
    # GIVEN an attribute holding 32 nested lists (or maps), DynamoDB's limit
    item = {"a": _nested(MAX_DEPTH, kind)}
    # WHEN read THEN accepted unchanged
    assert item_from_wire(item)[0] == item


@pytest.mark.parametrize("kind", ["L", "M"])
def test_33_levels_of_nesting_are_refused(kind: str) -> None:
    # GIVEN 33 nested lists (or maps) WHEN read THEN NestingTooDeepError
    with pytest.raises(NestingTooDeepError):
        item_from_wire({"a": _nested(MAX_DEPTH + 1, kind)})
    with pytest.raises(NestingTooDeepError):
        item_to_wire({"a": _nested(MAX_DEPTH + 1, kind)})


# --- item size, by DynamoDB's documented rules (developerguide/CapacityUnitCalculations) ---------
# S: name + UTF-8 bytes. N: name + 1 byte per 2 significant digits (rounded up) + 1, leading and
# trailing zeros trimmed. B: name + raw bytes. BOOL/NULL: name + 1. L/M: name + 3 + the nested
# elements + 1 per element. Sets: name + the elements' sizes.


@pytest.mark.parametrize(
    ("item", "size"),
    [
        ({"id": {"S": "abc"}}, 2 + 3),
        ({"é": {"S": "€"}}, 2 + 3),  # UTF-8 bytes, not characters
        ({"s": {"S": ""}}, 1 + 0),
        ({"n": {"N": "123.45"}}, 1 + 3 + 1),  # 5 digits -> 3 bytes
        ({"n": {"N": "1"}}, 1 + 1 + 1),
        ({"n": {"N": "1000"}}, 1 + 1 + 1),  # trailing zeros trimmed
        ({"n": {"N": "0.0012"}}, 1 + 1 + 1),  # leading zeros trimmed
        ({"n": {"N": "-12"}}, 1 + 1 + 1),
        ({"b": {"B": "AAEC"}}, 1 + 3),  # raw bytes, not base64 characters
        ({"b": {"B": ""}}, 1 + 0),
        ({"t": {"BOOL": True}, "z": {"NULL": True}}, (1 + 1) + (1 + 1)),
        ({"e": {"L": []}}, 1 + 3),
        ({"e": {"M": {}}}, 1 + 3),
        ({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}, 1 + 3 + (1 + 2) + (1 + 2)),
        ({"m": {"M": {"x": {"S": "y"}}}}, 1 + 3 + (1 + 1 + 1)),
        ({"ss": {"SS": ["a", "bc"]}}, 2 + 1 + 2),
        ({"ns": {"NS": ["1", "22", "333"]}}, 2 + 2 + 2 + 3),
        ({"bs": {"BS": ["AA==", "AAE="]}}, 2 + 1 + 2),
    ],
)
def test_item_size_follows_dynamodb_rules(item: dict[str, Any], size: int) -> None:
    # GIVEN an item whose size is computed by hand from DynamoDB's rules
    # WHEN it is measured (from the wire, and from memory after conversion)
    memory, measured = item_from_wire(item)
    # THEN both agree with the hand computation
    assert measured == size
    assert item_to_wire(memory)[1] == size


def test_item_size_of_a_realistic_item() -> None:
    # GIVEN an order item
    item = {
        "customer_id": {"S": "c-42"},  # 11 + 4
        "order_no": {"N": "7"},  # 8 + 2
        "total": {"N": "19.99"},  # 5 + (4 digits -> 2) + 1
        "lines": {"L": [{"M": {"sku": {"S": "A-1"}}}]},  # 5 + 3 + 1 + (3 + 1 + (3 + 3))
    }
    # WHEN measured THEN 15 + 10 + 8 + 19 bytes
    assert item_from_wire(item)[1] == 15 + 10 + 8 + 19


def test_item_size_counts_all_38_digits() -> None:
    # GIVEN a 38-digit number (19 bytes of digits + 1)
    # WHEN measured THEN every digit counts, not just the 28 of Python's default context
    assert item_from_wire({"n": {"N": DIGITS_38}})[1] == 1 + 19 + 1


def test_the_size_example_of_the_format_doc() -> None:
    # GIVEN the example of docs/FORMAT.md, section Limits WHEN measured THEN 17 bytes
    item = {"id": {"S": "abc"}, "n": {"N": "123.45"}, "l": {"L": [{"S": "ab"}]}}
    assert item_from_wire(item)[1] == (2 + 3) + (1 + 4) + (1 + 3 + 1 + 2) == 17
