"""Plain Python values to wire-form attribute values, validated and sized in one walk.

The mapping is boto3's `TypeSerializer`'s (None, bool, int/Decimal, str, bytes,
sets, mappings, lists and tuples; floats refused), and a property test holds the
two equal. It is our own walk because the producer's hot path would otherwise
walk every item three times (serialise, validate, size): this one does all
three at once, writing binary straight as base64.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Set
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary

from binlog.attrvalue import (
    MAX_DEPTH,
    AttributeValue,
    AttributeValueError,
    Item,
    NestingTooDeepError,
    exact_normalize,
    parse_number,
    significant_digits,
)

_MAX_INT_DIGITS = 126  # 9.99E+125 is DynamoDB's largest number


class FloatValueError(AttributeValueError):
    """A float where DynamoDB needs an exact number."""


class _Sizer:
    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def number(self, value: int | Decimal, path: str) -> str:
        if isinstance(value, int):
            text = str(int(value))
            digits = text.lstrip("-")
            if len(digits) > _MAX_INT_DIGITS:
                raise AttributeValueError(path, "magnitude beyond DynamoDB's 9.99E+125")
            significant = len(digits.rstrip("0")) or 1
            if significant > 38:
                raise AttributeValueError(
                    path, f"{significant} significant digits (DynamoDB keeps 38)"
                )
        else:
            if not value.is_finite():
                raise AttributeValueError(path, f"{value} is not a number DynamoDB can store")
            text = str(value)
            parsed = parse_number(text, path)
            significant = significant_digits(parsed)
        self.size += (significant + 1) // 2 + 1
        return text

    def binary(self, value: bytes | bytearray | Binary) -> str:
        raw = bytes(value.value) if isinstance(value, Binary) else value  # type: ignore[attr-defined]
        self.size += len(raw)
        return base64.b64encode(raw).decode("ascii")

    def value(self, value: object, path: str, depth: int) -> AttributeValue:
        kind = type(value)
        if kind is str:
            self.size += len(value.encode("utf-8"))  # type: ignore[attr-defined]
            return {"S": value}
        if kind is int or kind is Decimal:
            return {"N": self.number(value, path)}  # type: ignore[arg-type]
        if kind is bool:
            self.size += 1
            return {"BOOL": value}
        if value is None:
            self.size += 1
            return {"NULL": True}
        if kind is float:
            raise FloatValueError(path, "a float; floats lose digits, pass decimal.Decimal instead")
        if isinstance(value, bytes | bytearray | Binary):
            return {"B": self.binary(value)}
        if isinstance(value, bool):  # a bool subclass, after the exact-type fast paths
            self.size += 1
            return {"BOOL": bool(value)}
        if isinstance(value, int | Decimal):
            return {"N": self.number(value, path)}
        if isinstance(value, str):
            self.size += len(value.encode("utf-8"))
            return {"S": str(value)}
        if isinstance(value, Set):
            return self.set(value, path)
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                raise NestingTooDeepError(path, f"nested deeper than DynamoDB's {MAX_DEPTH} levels")
            self.size += 3
            if isinstance(value, Mapping):
                self.size += len(value)
                return {"M": self.item(value, path, depth + 1)}
            out = []
            for index, element in enumerate(value):
                self.size += 1
                out.append(self.value(element, f"{path}[{index}]", depth + 1))
            return {"L": out}
        raise AttributeValueError(path, f"{type(value).__name__} has no DynamoDB type")

    def set(self, value: Set[Any], path: str) -> AttributeValue:
        if not value:
            raise AttributeValueError(path, "an empty set; DynamoDB sets hold at least one element")
        elements = list(value)
        if all(isinstance(e, int | Decimal) and not isinstance(e, bool) for e in elements):
            texts = [self.number(e, path) for e in elements]
            if len({exact_normalize(Decimal(t)) for t in texts}) != len(texts):
                raise AttributeValueError(path, "NS holds equal numbers twice")
            return {"NS": texts}
        if all(isinstance(e, str) for e in elements):
            self.size += sum(len(e.encode("utf-8")) for e in elements)
            return {"SS": elements}
        if all(isinstance(e, bytes | bytearray | Binary) for e in elements):
            return {"BS": [self.binary(e) for e in elements]}
        if any(isinstance(e, float) for e in elements):
            raise FloatValueError(path, "a set of floats; pass decimal.Decimal instead")
        raise AttributeValueError(path, "a set must hold only numbers, only strings or only bytes")

    def item(self, item: Mapping[str, Any], path: str, depth: int) -> Item:
        out: Item = {}
        for name, inner in item.items():
            if type(name) is not str:
                raise AttributeValueError(path or "item", "attribute names must be strings")
            self.size += len(name.encode("utf-8"))
            out[name] = self.value(inner, f"{path}.{name}" if path else name, depth)
        return out


def plain_item_to_wire(item: Mapping[str, Any], path: str = "") -> tuple[Item, int]:
    """Serialise a plain item to wire form; return it with its DynamoDB size in bytes.

    Raises:
        FloatValueError: a float anywhere in the item.
        NestingTooDeepError: lists and maps deeper than 32 levels.
        AttributeValueError: anything else DynamoDB would refuse.
    """
    sizer = _Sizer()
    try:
        wire = sizer.item(item, path, 0)
    except UnicodeEncodeError as exc:
        raise AttributeValueError(path or "item", f"a string is not valid Unicode: {exc}") from exc
    return wire, sizer.size
