"""Write capacity units as DynamoDB bills them, against sizes computed by hand.

DynamoDB's rules (developer guide, "Item sizes and formats"): names count their
UTF-8 bytes; S its UTF-8 bytes; N 1 byte per two significant digits plus 1; B its
raw bytes; BOOL and NULL 1; L and M 3 bytes plus 1 per element; sets their
elements. One WCU per 1,024 bytes, rounded up, at least 1.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binlog.attrvalue import item_to_wire
from binlog.capacity import (
    VERSION_VALUE_BYTES,
    item_size,
    number_size,
    units_for_bytes,
    value_size,
    write_units,
)
from binlog.envelope import Action, Envelope

ID = "id-1"  # 4 bytes
# _lr_version (11) + 34-byte version + _lr_id (6) + the id (4)
OVERHEAD = 11 + VERSION_VALUE_BYTES + 6 + len(ID)


def put(item: dict[str, Any]) -> Envelope:
    return Envelope(ID, 0, Action.PUT, "orders", {"pk": item["pk"]}, item=item)


def test_overhead_is_the_appliers_two_attributes() -> None:
    assert OVERHEAD == 55


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 2),  # one digit
        ("-0.00", 2),
        ("7", 2),
        ("12", 2),  # two digits: 1 + 1
        ("123", 3),  # three digits: 2 + 1
        ("100", 2),  # trailing zeros are trimmed: one digit
        ("1.10", 2),  # the trailing zero is trimmed: two digits
        ("0.00123", 3),  # leading zeros are trimmed: three digits
        ("-123.45", 4),  # five digits: 3 + 1
        ("1E+125", 2),
        ("1.2345e-7", 4),
        ("12345678901234567890123456789012345678", 20),  # 38 digits: 19 + 1
    ],
)
def test_number_sizes(text: str, size: int) -> None:
    assert number_size(text) == size
    assert value_size({"N": text}) == size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({"S": "héllo"}, 6),  # é is two bytes in UTF-8
        ({"S": ""}, 0),
        ({"B": b"\x00" * 10}, 10),
        ({"B": bytearray(b"abc")}, 3),
        ({"B": "AAEC"}, 3),  # the wire form: base64 of 3 bytes
        ({"BOOL": False}, 1),
        ({"NULL": True}, 1),
        ({"SS": ["a", "bc"]}, 3),
        ({"NS": ["1", "22", "333"]}, 2 + 2 + 3),
        ({"BS": [b"ab", b"c"]}, 3),
        ({"L": []}, 3),
        ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + 2 + 2 + 2),
        ({"M": {}}, 3),
        # 3 + 2 elements + ("a" 1 + N "1" 2) + ("bb" 2 + S "xy" 2)
        ({"M": {"a": {"N": "1"}, "bb": {"S": "xy"}}}, 3 + 2 + 3 + 4),
        ({"L": [{"M": {"k": {"L": [{"NULL": True}]}}}]}, 3 + 1 + (3 + 1 + (1 + (3 + 1 + 1)))),
    ],
)
def test_value_sizes(value: dict[str, Any], size: int) -> None:
    assert value_size(value) == size


def test_item_size_counts_names_and_values() -> None:
    item = {"pk": {"S": "order-1"}, "qty": {"N": "12"}, "ok": {"BOOL": True}}
    assert item_size(item) == (2 + 7) + (3 + 2) + (2 + 1)


_chars = st.characters(codec="utf-8")
_scalars = st.one_of(
    st.text(_chars, max_size=20).map(lambda s: {"S": s}),
    st.integers(-(10**37), 10**37).map(lambda n: {"N": str(n)}),
    st.floats(-1e100, 1e100, allow_subnormal=False)
    .filter(lambda f: f == 0 or abs(f) > 1e-100)
    .map(lambda f: {"N": repr(f).upper()}),
    st.binary(max_size=20).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.text(_chars, max_size=5), min_size=1, max_size=4, unique=True).map(
        lambda s: {"SS": s}
    ),
    st.lists(st.binary(max_size=5), min_size=1, max_size=3, unique=True).map(lambda b: {"BS": b}),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: {"L": items}),
        st.dictionaries(st.text(_chars, min_size=1, max_size=6), children, max_size=4).map(
            lambda m: {"M": m}
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, database=None)
@given(st.dictionaries(st.text(_chars, min_size=1, max_size=8), _values, max_size=6))
def test_item_size_agrees_with_the_validating_walk(item: dict[str, Any]) -> None:
    # GIVEN any valid item WHEN both measure it THEN they agree (the fast walk skips checks).
    assert item_size(item) == item_to_wire(item)[1]


# --- write units -------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (4096, 4)])
def test_units_round_up_per_kilobyte(size: int, units: int) -> None:
    assert units_for_bytes(size) == units


def test_put_of_exactly_one_kilobyte_costs_one_unit() -> None:
    # pk "a" (2 + 1) + pad (3 + n) + overhead 55 = 1024 when n = 963
    assert write_units(put({"pk": {"S": "a"}, "pad": {"S": "x" * 963}})) == 1
    assert write_units(put({"pk": {"S": "a"}, "pad": {"S": "x" * 964}})) == 2


def test_put_of_a_large_item() -> None:
    # 400 KB of string: 409,600 + 3 + 3 + 55 bytes -> 401 units
    item = {"pk": {"S": "a"}, "pad": {"S": "x" * 409_600}}
    assert write_units(put(item)) == 401


def test_the_appliers_attribute_names_count() -> None:
    item = {"pk": {"S": "a"}, "pad": {"S": "x" * 963}}
    assert write_units(put(item), version_attribute="v", id_attribute="i") == 1
    assert write_units(put(item), version_attribute="v" * 12) == 2


def test_update_counts_key_names_and_values() -> None:
    # GIVEN SET #n = :v, b = :w on key pk "k1"
    envelope = Envelope(
        ID,
        0,
        Action.UPDATE,
        "orders",
        {"pk": {"S": "k1"}},
        update="SET #n = :v, b = if_not_exists(b, :w)",
        names={"#n": "name"},
        values={":v": {"S": "x" * 1000}, ":w": {"N": "5"}},
    )
    # key 4 + names "name" 4 + "b" 1 + values 1000 + 2 + overhead 55 = 1066 -> 2 units
    assert write_units(envelope) == 2


def test_small_update_costs_one_unit() -> None:
    envelope = Envelope(ID, 0, Action.UPDATE, "orders", {"pk": {"S": "k1"}}, update="REMOVE gone")
    assert write_units(envelope) == 1


def test_delete_costs_the_item_and_its_tombstone() -> None:
    envelope = Envelope(ID, 0, Action.DELETE, "orders", {"pk": {"S": "k1"}})
    assert write_units(envelope) == 2
    assert write_units(envelope, tombstones=False) == 1


def test_delete_with_a_large_key() -> None:
    # GIVEN a 1,500-byte key: the delete is 1,502 + 55 bytes, 2 units; the tombstone
    # ("k" + "orders" + newline + key + framing 8 + 55 + expires 13) 1,586 bytes, 2 more
    envelope = Envelope(ID, 0, Action.DELETE, "orders", {"pk": {"S": "k" * 1500}})
    assert write_units(envelope, tombstones=False) == 2
    assert write_units(envelope) == 4
