"""Turn SDK calls into validated, encoded stream records, before anything is sent.

Every refusal happens here, with an `ActionError` that names the problem, so an
invalid action never reaches the stream (DESIGN invariant 5).
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from binlog.attrvalue import (
    MAX_ITEM_BYTES,
    AttributeValueError,
    Item,
    NestingTooDeepError,
    item_to_wire,
)
from binlog.codec import check_key, check_placeholders, document, dumps
from binlog.envelope import MAX_RECORD_BYTES, Action
from binlog.errors import ActionError, Reason, RecordError
from binlog.partition import PartitionKeyer
from binlog.plain import FloatValueError, plain_item_to_wire
from binlog.topology import KeySchema


class OutgoingRecord(NamedTuple):
    """One encoded action, ready for PutRecords, with what an error report needs."""

    envelope_id: str
    action: Action
    table: str
    partition_key: str
    data: bytes

    @property
    def size(self) -> int:
        """Bytes counted against PutRecords' 5 MiB: data plus partition key."""
        return len(self.data) + len(self.partition_key)

    @property
    def key(self) -> Item:
        """The item's key, read back from the data (only error reports need it)."""
        key: Item = orjson.loads(self.data)["key"]
        return key


def default_origin() -> str:
    """`host/pid`: enough for an operator to find the writer of a record."""
    return f"{socket.gethostname()}/{os.getpid()}"


class ActionEncoder:
    """Validates actions against the topology's tables and encodes them as records."""

    def __init__(self, tables: Mapping[str, KeySchema], origin: str | None = None) -> None:
        self._tables = dict(tables)
        self._keyers = {name: PartitionKeyer(name, schema) for name, schema in tables.items()}
        self._origin = origin if origin is not None else default_origin()
        # Envelope ids: a random 64-bit prefix per encoder and a counter, unique without
        # a syscall per action (os.urandom per id costs more than the rest of an id).
        self._id_prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    @property
    def tables(self) -> Mapping[str, KeySchema]:
        """The tables this encoder accepts, with their key schemas."""
        return self._tables

    def put(
        self,
        table: str,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> OutgoingRecord:
        """A PutItem record.

        Raises:
            ActionError: unknown table, key attributes missing or mistyped, a float or
                invalid value, item over 400 KB, record over 1 MiB, bad expression.
        """
        schema = self._schema(table)
        wire_item = self._item(item, "item", typed, limit=True)
        missing = [a.name for a in schema.attributes if a.name not in wire_item]
        if missing:
            raise ActionError(
                Reason.KEY_MISMATCH,
                f"item for {table!r} lacks key attribute {missing[0]!r}; the key is "
                + ", ".join(f"{a.name} ({a.type})" for a in schema.attributes),
            )
        key = {a.name: wire_item[a.name] for a in schema.attributes}
        return self._record(
            Action.PUT,
            table,
            schema,
            key,
            item=wire_item,
            condition=condition,
            names=names,
            values=values,
            typed=typed,
        )

    def delete(
        self,
        table: str,
        key: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> OutgoingRecord:
        """A DeleteItem record (raises `ActionError` as `put` does)."""
        schema = self._schema(table)
        wire_key = self._item(key, "key", typed, limit=False)
        return self._record(
            Action.DELETE,
            table,
            schema,
            wire_key,
            condition=condition,
            names=names,
            values=values,
            typed=typed,
        )

    def update(
        self,
        table: str,
        key: Mapping[str, Any],
        update: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        typed: bool = False,
    ) -> OutgoingRecord:
        """An UpdateItem record (raises `ActionError` as `put` does)."""
        if not isinstance(update, str) or not update.strip():
            raise ActionError(
                Reason.BAD_EXPRESSION, "UpdateItem needs a non-empty update expression"
            )
        schema = self._schema(table)
        wire_key = self._item(key, "key", typed, limit=False)
        return self._record(
            Action.UPDATE,
            table,
            schema,
            wire_key,
            update=update,
            condition=condition,
            names=names,
            values=values,
            typed=typed,
        )

    def batch(
        self,
        table: str,
        puts: Iterable[Mapping[str, Any]],
        deletes: Iterable[Mapping[str, Any]],
        *,
        typed: bool = False,
    ) -> list[OutgoingRecord]:
        """Records for a BatchWrite; refuses two actions on one item as BatchWriteItem does."""
        records = [self.put(table, item, typed=typed) for item in puts]
        records += [self.delete(table, key, typed=typed) for key in deletes]
        seen: set[str] = set()
        for record in records:
            if record.partition_key in seen:
                raise ActionError(
                    Reason.DUPLICATE_KEY,
                    f"batch writes item {record.key} of {table!r} twice; DynamoDB's "
                    "BatchWriteItem refuses duplicate keys, send them as separate actions",
                )
            seen.add(record.partition_key)
        return records

    def _schema(self, table: str) -> KeySchema:
        schema = self._tables.get(table)
        if schema is None:
            known = ", ".join(sorted(self._tables)) or "none"
            raise ActionError(
                Reason.UNKNOWN_TABLE, f"table {table!r} is not in the topology (known: {known})"
            )
        return schema

    def _item(self, value: Mapping[str, Any], what: str, typed: bool, *, limit: bool) -> Item:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise ActionError(Reason.BAD_VALUE, f"{what} must be a mapping of attributes")
        try:
            wire, size = item_to_wire(value, what) if typed else plain_item_to_wire(value, what)
        except FloatValueError as exc:
            raise ActionError(Reason.FLOAT_VALUE, str(exc)) from exc
        except NestingTooDeepError as exc:
            raise ActionError(Reason.TOO_DEEP, str(exc)) from exc
        except AttributeValueError as exc:
            raise ActionError(Reason.BAD_VALUE, str(exc)) from exc
        if limit and size > MAX_ITEM_BYTES:
            raise ActionError(
                Reason.ITEM_TOO_LARGE,
                f"{what} is {size} bytes as DynamoDB counts them; an item holds {MAX_ITEM_BYTES}",
            )
        return wire

    def _record(
        self,
        action: Action,
        table: str,
        schema: KeySchema,
        key: Item,
        *,
        item: Item | None = None,
        update: str | None = None,
        condition: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        typed: bool,
    ) -> OutgoingRecord:
        try:
            check_key(table, schema, key, "item" if item is not None else "key")
        except RecordError as exc:
            raise ActionError(exc.reason, exc.detail) from exc
        if condition is not None and (not isinstance(condition, str) or not condition.strip()):
            raise ActionError(Reason.BAD_EXPRESSION, "a condition must be a non-empty expression")
        names_dict = dict(names) if names else None
        wire_values = self._item(values, "values", typed, limit=False) if values else None
        if update or condition or names_dict or wire_values:
            try:
                check_placeholders(update, condition, names_dict, wire_values)
            except RecordError as exc:
                raise ActionError(exc.reason, exc.detail) from exc
        envelope_id = f"{self._id_prefix}{next(self._counter):016x}"
        pk = self._keyers[table](key)
        try:
            data = dumps(
                document(
                    envelope_id=envelope_id,
                    time_ms=time.time_ns() // 1_000_000,
                    action=action,
                    table=table,
                    key=key,
                    item=item,
                    update=update,
                    condition=condition,
                    names=names_dict,
                    values=wire_values,
                    origin=self._origin,
                )
            )
        except AttributeValueError as exc:
            raise ActionError(Reason.BAD_VALUE, str(exc)) from exc
        if len(data) + len(pk) > MAX_RECORD_BYTES:
            raise ActionError(
                Reason.RECORD_TOO_LARGE,
                f"the encoded record is {len(data) + len(pk)} bytes; "
                f"Kinesis takes {MAX_RECORD_BYTES}",
            )
        return OutgoingRecord(envelope_id, action, table, pk, data)
