"""verify's pure parts: digests, keys back from canonical bytes, and the classification."""

from __future__ import annotations

from typing import Any

import pytest

from binlog.partition import canonical_key
from binlog.topology import KeyAttribute, KeySchema
from binlog.version import Version
from lazyrep.verify_compare import (
    Kind,
    Observation,
    Verdict,
    classify,
    item_digest,
    key_from_canonical,
    observe,
    version_text,
)

V = "_lr_version"
I = "_lr_id"  # noqa: E741


def v(shard: int, seq: int) -> bytes:
    return Version(shard, seq).encode()


def obs(version: bytes | None, content: str = "x", action: str | None = "a") -> Observation:
    item: dict[str, Any] = {"pk": {"S": "k"}, "n": {"S": content}}
    if version is not None:
        item[V] = {"B": version}
    if action is not None:
        item[I] = {"S": action}
    return observe(item, V, I)


def applied_below(limit: bytes) -> Any:
    return lambda version: version <= limit


def test_digest_ignores_set_order_map_order_and_number_spelling() -> None:
    a = {
        "s": {"SS": ["b", "a"]},
        "n": {"N": "1.10"},
        "m": {"M": {"x": {"N": "1"}, "y": {"S": "2"}}},
    }
    b = {
        "m": {"M": {"y": {"S": "2"}, "x": {"N": "1.0"}}},
        "n": {"N": "1.1"},
        "s": {"SS": ["a", "b"]},
    }
    assert item_digest(a) == item_digest(b)


@pytest.mark.parametrize(
    "other",
    [
        {"s": {"SS": ["a"]}},
        {"s": {"L": [{"S": "a"}, {"S": "b"}]}},
        {"s": {"SS": ["a", "b"]}, "extra": {"NULL": True}},
        {"s": {"SS": ["ab"]}},
    ],
)
def test_digest_tells_different_items_apart(other: dict[str, Any]) -> None:
    assert item_digest({"s": {"SS": ["a", "b"]}}) != item_digest(other)


def test_digest_skips_the_bookkeeping_attributes() -> None:
    assert obs(v(0, 1), action="a").digest == obs(v(0, 2), action="b").digest


@pytest.mark.parametrize(
    ("schema", "key"),
    [
        (KeySchema(KeyAttribute("pk", "S")), {"pk": {"S": "héllo:3:x"}}),
        (
            KeySchema(KeyAttribute("pk", "S"), KeyAttribute("sk", "N")),
            {"pk": {"S": ""}, "sk": {"N": "-12.5"}},
        ),
        (KeySchema(KeyAttribute("b", "B")), {"b": {"B": b"\x00:\xff"}}),
    ],
)
def test_keys_come_back_from_canonical_bytes(schema: KeySchema, key: dict[str, Any]) -> None:
    assert key_from_canonical(schema, canonical_key(schema, key)) == key


def test_a_foreign_canonical_key_is_refused() -> None:
    schema = KeySchema(KeyAttribute("pk", "S"))
    with pytest.raises(ValueError, match="canonical key"):
        key_from_canonical(schema, b"N:1:5")


def test_version_text() -> None:
    assert version_text(v(3, 42)) == "shardId-000000000003/42/0"
    assert version_text(None) is None
    assert version_text(b"xx") == "malformed:7878"


CHECKPOINT = v(0, 100)


@pytest.mark.parametrize(
    ("primary", "replica", "tombstone", "expected"),
    [
        (obs(v(0, 50)), obs(v(0, 50)), None, (Kind.IN_SYNC, False)),
        (obs(v(0, 150)), obs(v(0, 40)), None, (Kind.BEHIND, True)),
        (obs(v(0, 90)), obs(v(0, 40)), None, (Kind.BEHIND, False)),
        (obs(v(0, 60), "p"), obs(v(0, 60), "r"), None, (Kind.DIVERGED, False)),
        (obs(v(0, 60), action="a"), obs(v(0, 60), action="b"), None, (Kind.DIVERGED, False)),
        (obs(v(0, 60)), obs(v(0, 70)), None, (Kind.DIVERGED, False)),
        (obs(v(0, 60)), obs(None), None, (Kind.DIVERGED, False)),
        (obs(None), obs(None), None, (Kind.IN_SYNC, False)),
        (obs(None, "p"), obs(None, "r"), None, (Kind.DIVERGED, False)),
        (obs(v(0, 150)), None, None, (Kind.MISSING, True)),
        (obs(v(0, 90)), None, None, (Kind.MISSING, False)),
        (obs(None), None, None, (Kind.MISSING, False)),
        (None, obs(v(0, 30)), v(0, 120), (Kind.EXTRA, True)),
        (None, obs(v(0, 30)), v(0, 80), (Kind.EXTRA, False)),
        (None, obs(v(0, 30)), None, (Kind.EXTRA, False)),
        (None, obs(v(0, 130)), v(0, 120), (Kind.EXTRA, False)),
        (None, obs(None), v(0, 120), (Kind.EXTRA, True)),
    ],
)
def test_classification(
    primary: Observation | None,
    replica: Observation | None,
    tombstone: bytes | None,
    expected: tuple[Kind, bool],
) -> None:
    verdict = classify(primary, replica, tombstone, applied_below(CHECKPOINT))
    assert verdict is not None
    assert (verdict.kind, verdict.lag) == expected
    assert verdict.is_error == (expected[0] is not Kind.IN_SYNC and not expected[1])
    assert verdict.reason or verdict.kind is Kind.IN_SYNC


def test_nothing_on_either_side_is_no_verdict() -> None:
    assert classify(None, None, v(0, 1), applied_below(CHECKPOINT)) is None


def test_in_sync_is_never_an_error() -> None:
    assert not Verdict(Kind.IN_SYNC, False, "").is_error
