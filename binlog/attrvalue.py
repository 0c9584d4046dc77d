"""DynamoDB attribute values: validation, conversion between the wire and boto3, and size.

Two forms exist. In memory (and for boto3's low-level clients) binary is `bytes`;
on the wire (the record's JSON) binary is standard base64 text. One walk validates
a value against DynamoDB's rules, converts it, and measures it the way DynamoDB
bills it, so producers and consumers refuse exactly the same things.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from boto3.dynamodb.types import Binary

# DynamoDB's documented limits.
MAX_ITEM_BYTES = 400 * 1024
MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 38
MIN_EXPONENT = -130  # smallest positive 1E-130
MAX_EXPONENT = 125  # largest 9.99...E+125
# Wide enough that normalising any number DynamoDB accepts never rounds it.
_EXACT = Context(prec=1000, Emax=999_999, Emin=-999_999)

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


class AttributeValueError(ValueError):
    """A value DynamoDB would refuse; `path` locates it inside the item (`a.b[3]`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class NestingTooDeepError(AttributeValueError):
    """Lists and maps nested past DynamoDB's 32 levels."""


def parse_number(text: object, path: str) -> Decimal:
    """Parse an N value as DynamoDB does: plain decimal syntax, 38 digits, its exponent range."""
    if not isinstance(text, str) or _NUMBER.fullmatch(text) is None:
        raise AttributeValueError(path, f"not a DynamoDB number: {text!r:.60}")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid syntax
        raise AttributeValueError(path, f"not a number: {text!r:.60}") from exc
    if value.is_zero():
        return value
    digits = significant_digits(value)
    if digits > MAX_NUMBER_DIGITS:
        raise AttributeValueError(path, f"{digits} significant digits (DynamoDB keeps 38)")
    exponent = value.adjusted()
    if exponent < MIN_EXPONENT or exponent > MAX_EXPONENT:
        raise AttributeValueError(path, "magnitude outside DynamoDB's 1E-130 to 9.99E+125")
    return value


def significant_digits(value: Decimal) -> int:
    """Digits without leading or trailing zeros, counted exactly (no context rounding)."""
    digits = value.as_tuple().digits
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(1, len(digits) - trailing)


def exact_normalize(value: Decimal) -> Decimal:
    """`Decimal.normalize` without rounding: the default context keeps only 28 digits."""
    return value.normalize(context=_EXACT)


def canonical_number(value: Decimal) -> str:
    """Plain notation with no exponent and no redundant zeros: one spelling per number."""
    if value.is_zero():
        return "0"
    return format(exact_normalize(value), "f")


def _number_size(text: str) -> int:
    return (significant_digits(Decimal(text)) + 1) // 2 + 1


def _binary_from_wire(text: object, path: str) -> bytes:
    if not isinstance(text, str):
        raise AttributeValueError(path, "binary must be base64 text on the wire")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII text
        raise AttributeValueError(path, f"invalid base64: {exc}") from exc


def _binary_from_memory(value: object, path: str) -> bytes:
    if isinstance(value, Binary):
        # The stubs type Binary.__bytes__ wrongly; `.value` holds the bytes.
        return bytes(value.value)  # type: ignore[attr-defined]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return _binary_from_wire(value, path)
    raise AttributeValueError(path, f"binary must be bytes, not {type(value).__name__}")


class _Walker:
    """Validates one value tree, converting binary and summing DynamoDB's size."""

    __slots__ = ("size", "to_wire")

    def __init__(self, *, to_wire: bool) -> None:
        self.to_wire = to_wire
        self.size = 0

    def binary(self, value: object, path: str) -> bytes | str:
        if self.to_wire:
            raw = _binary_from_memory(value, path)
            self.size += len(raw)
            return base64.b64encode(raw).decode("ascii")
        raw = _binary_from_wire(value, path)
        self.size += len(raw)
        return raw

    def value(self, av: object, path: str, depth: int) -> AttributeValue:
        if not isinstance(av, dict) or len(av) != 1:
            raise AttributeValueError(
                path, "an attribute value is an object with exactly one type key"
            )
        ((kind, inner),) = av.items()
        if kind == "S":
            if not isinstance(inner, str):
                raise AttributeValueError(path, "S must be a string")
            self.size += len(inner.encode("utf-8"))
            return av
        if kind == "N":
            parse_number(inner, path)
            self.size += _number_size(inner)
            return av
        if kind == "B":
            return {"B": self.binary(inner, path)}
        if kind == "BOOL":
            if not isinstance(inner, bool):
                raise AttributeValueError(path, "BOOL must be true or false")
            self.size += 1
            return av
        if kind == "NULL":
            if inner is not True:
                raise AttributeValueError(path, "NULL must be true")
            self.size += 1
            return av
        if kind in ("L", "M"):
            if depth >= MAX_DEPTH:
                raise NestingTooDeepError(path, f"nested deeper than DynamoDB's {MAX_DEPTH} levels")
            self.size += 3
            if kind == "L":
                if not isinstance(inner, list):
                    raise AttributeValueError(path, "L must be a list")
                out_list = []
                for index, element in enumerate(inner):
                    self.size += 1
                    out_list.append(self.value(element, f"{path}[{index}]", depth + 1))
                return {"L": out_list}
            if not isinstance(inner, dict):
                raise AttributeValueError(path, "M must be an object")
            self.size += len(inner)
            return {"M": self.item(inner, path, depth + 1)}
        if kind in ("SS", "NS", "BS"):
            return {kind: self.set(kind, inner, path)}
        raise AttributeValueError(
            path, f"unknown type {kind!r:.20} (allowed: S N B BOOL NULL L M SS NS BS)"
        )

    def set(self, kind: str, inner: object, path: str) -> list[Any]:
        if not isinstance(inner, list | tuple | set | frozenset) or not inner:
            raise AttributeValueError(path, f"{kind} must be a non-empty list")
        seen: set[object] = set()
        out: list[Any] = []
        for index, element in enumerate(inner):
            where = f"{path}[{index}]"
            if kind == "SS":
                if not isinstance(element, str):
                    raise AttributeValueError(where, "SS holds strings only")
                self.size += len(element.encode("utf-8"))
                identity: object = element
                out.append(element)
            elif kind == "NS":
                identity = exact_normalize(parse_number(element, where))
                self.size += _number_size(element)
                out.append(element)
            else:
                converted = self.binary(element, where)
                identity = converted
                out.append(converted)
            if identity in seen:
                raise AttributeValueError(where, f"duplicate element in {kind}")
            seen.add(identity)
        return out

    def item(self, item: object, path: str, depth: int) -> Item:
        if not isinstance(item, dict):
            raise AttributeValueError(path or "item", "must be an object of attribute values")
        out: Item = {}
        for name, av in item.items():
            if not isinstance(name, str):
                raise AttributeValueError(path or "item", "attribute names must be strings")
            where = f"{path}.{name}" if path else name
            self.size += len(name.encode("utf-8"))
            out[name] = self.value(av, where, depth)
        return out


def item_to_wire(item: Mapping[str, Any], path: str = "") -> tuple[Item, int]:
    """Validate a boto3-form item and return its wire form and DynamoDB size in bytes.

    Raises:
        AttributeValueError: the item holds something DynamoDB would refuse.
    """
    walker = _Walker(to_wire=True)
    try:
        wire = walker.item(dict(item), path, 0)
    except UnicodeEncodeError as exc:
        raise AttributeValueError(path or "item", f"a string is not valid Unicode: {exc}") from exc
    return wire, walker.size


def item_from_wire(item: object, path: str = "") -> tuple[Item, int]:
    """Validate a wire-form item and return its boto3 form (binary as bytes) and size.

    Raises:
        AttributeValueError: the item holds something DynamoDB would refuse.
    """
    walker = _Walker(to_wire=False)
    try:
        converted = walker.item(item, path, 0)
    except UnicodeEncodeError as exc:
        raise AttributeValueError(path or "item", f"a string is not valid Unicode: {exc}") from exc
    return converted, walker.size


def values_from_wire(values: object, path: str) -> Item:
    """Like `item_from_wire` for ExpressionAttributeValues (no item size limit applies)."""
    return item_from_wire(values, path)[0]
