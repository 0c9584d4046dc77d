"""The topology file: a valid file loads with its defaults; each mistake names its field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from binlog.errors import TopologyError
from binlog.topology import (
    DeadLetterConfig,
    KeyAttribute,
    KeySchema,
    ReplicaTarget,
    StreamConfig,
    Topology,
    load_topology,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "topology.toml"
TOPOLOGY_DOC = ROOT / "docs" / "TOPOLOGY.md"

VALID = """
[stream]
name = "binlog"
region = "us-east-1"

[tables.users]
partition_key = { name = "user_id", type = "S" }

[tables.orders]
partition_key = { name = "customer_id", type = "S" }
sort_key = { name = "order_no", type = "N" }

[replicas.eu]
region = "eu-west-1"
max_wcu = 100
deadline_hours = 20
"""


def _load(tmp_path: Path, text: str) -> Topology:
    path = tmp_path / "topology.toml"
    path.write_text(text, encoding="utf-8")
    return load_topology(path)


def _error(tmp_path: Path, text: str) -> TopologyError:
    with pytest.raises(TopologyError) as exc_info:
        _load(tmp_path, text)
    return exc_info.value


def test_a_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    # GIVEN a minimal valid topology WHEN loaded
    topology = _load(tmp_path, VALID)
    # THEN every field is there, defaults filled in
    assert topology == Topology(
        stream=StreamConfig("binlog", "us-east-1", retention_hours=24, shards=2),
        tables={
            "users": KeySchema(KeyAttribute("user_id", "S")),
            "orders": KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N")),
        },
        replicas={
            "eu": ReplicaTarget(
                "eu", "eu-west-1", max_wcu=100.0, deadline_hours=20.0, application_name="lazyrep-eu"
            )
        },
        dead_letter=None,
        safety_margin_hours=2.0,
    )
    assert topology.replicas["eu"].replica_table("users") == "users"


def test_the_example_file_loads() -> None:
    # GIVEN examples/topology.toml WHEN loaded THEN it describes the documented deployment
    topology = load_topology(EXAMPLE)
    assert topology.stream == StreamConfig("shop-binlog", "us-east-1", 48, 4)
    assert topology.tables == {
        "users": KeySchema(KeyAttribute("user_id", "S")),
        "orders": KeySchema(KeyAttribute("customer_id", "S"), KeyAttribute("order_no", "N")),
        "attachments": KeySchema(KeyAttribute("sha256", "B")),
    }
    assert topology.replicas == {
        "eu": ReplicaTarget(
            "eu", "eu-west-1", 200.0, 24.0, {"orders": "orders-eu"}, "lazyrep-shop-eu-west-1"
        ),
        "apac": ReplicaTarget("apac", "ap-southeast-2", 50.0, 40.0, {}, "lazyrep-apac"),
    }
    assert topology.dead_letter == DeadLetterConfig(
        "sqs", "shop-binlog-dead-letters", "us-east-1", "dead-letters/"
    )
    assert topology.safety_margin_hours == 2.0
    assert topology.replicas["eu"].replica_table("orders") == "orders-eu"
    assert topology.replicas["eu"].replica_table("users") == "users"


def test_dead_letter_region_defaults_to_the_stream_region(tmp_path: Path) -> None:
    # GIVEN an S3 dead letter store without a region
    text = VALID + '\n[dead_letter]\nkind = "s3"\nname = "parked-records"\nprefix = "binlog/"\n'
    # WHEN loaded THEN it is in the stream's region
    assert _load(tmp_path, text).dead_letter == DeadLetterConfig(
        "s3", "parked-records", "us-east-1", "binlog/"
    )


MISTAKES: list[tuple[str, str, str]] = [
    # an unknown field, at each level
    ("colour = 1\n" + VALID, "colour", "dead_letter, replicas, safety_margin_hours"),
    (
        VALID.replace('name = "binlog"', 'name = "binlog"\nnmae = "x"'),
        "stream.nmae",
        "allowed: name, region, retention_hours, shards",
    ),
    (
        VALID.replace('type = "N" }', 'type = "N" }\nttl = "expires"'),
        "tables.orders.ttl",
        "allowed: partition_key, sort_key",
    ),
    (
        VALID.replace('{ name = "user_id", type = "S" }', '{ name = "user_id", kind = "S" }'),
        "tables.users.partition_key.kind",
        "allowed: name, type",
    ),
    (
        VALID + "max_rcu = 5\n",
        "replicas.eu.max_rcu",
        "allowed: application_name, deadline_hours, max_wcu, region, tables",
    ),
    (
        VALID + '\n[dead_letter]\nkind = "sqs"\nname = "q"\nqueue = "x"\n',
        "dead_letter.queue",
        "allowed: kind, name, prefix, region",
    ),
    # bad regions
    (VALID.replace('"us-east-1"', '"us-east"'), "stream.region", "like us-east-1"),
    (VALID.replace('"us-east-1"', '"US-EAST-1"'), "stream.region", "like us-east-1"),
    (VALID.replace('"us-east-1"', '"us-east-\u0661"'), "stream.region", "like us-east-1"),
    (VALID.replace('"eu-west-1"', '"europe"'), "replicas.eu.region", "like eu-west-1"),
    (
        VALID + '\n[dead_letter]\nkind = "sqs"\nname = "q"\nregion = "mars-1"\n',
        "dead_letter.region",
        "a region name",
    ),
    # deadlines beyond retention minus the safety margin
    (
        VALID.replace("deadline_hours = 20", "deadline_hours = 22.5"),
        "replicas.eu.deadline_hours",
        "at most 22",
    ),
    (
        VALID.replace("deadline_hours = 20", "deadline_hours = 25"),
        "replicas.eu.deadline_hours",
        "allowed 0.01 to 24",
    ),
    (
        "safety_margin_hours = 6\n" + VALID,
        "replicas.eu.deadline_hours",
        "at most 18",
    ),
    (
        VALID.replace("deadline_hours = 20", "deadline_hours = 0"),
        "replicas.eu.deadline_hours",
        "0.01",
    ),
    (VALID.replace("deadline_hours = 20\n", ""), "replicas.eu.deadline_hours", "is required"),
    # replica table mappings naming an unknown primary
    (
        VALID + '\n[replicas.eu.tables]\npayments = "payments-eu"\n',
        "replicas.eu.tables.payments",
        "known: orders, users",
    ),
    (VALID + '\n[replicas.eu.tables]\nusers = "x"\n', "replicas.eu.tables.users", "table name"),
    # bad key types and names
    (
        VALID.replace('type = "N"', 'type = "NUMBER"'),
        "tables.orders.sort_key.type",
        "allowed: S, N, B",
    ),
    (
        VALID.replace('type = "N"', 'type = "BOOL"'),
        "tables.orders.sort_key.type",
        "allowed: S, N, B",
    ),
    (
        VALID.replace('{ name = "user_id", type = "S" }', '{ name = "user_id" }'),
        "tables.users.partition_key.type",
        "allowed: S, N, B",
    ),
    (
        VALID.replace('partition_key = { name = "user_id", type = "S" }', ""),
        "tables.users.partition_key",
        "is required",
    ),
    (
        VALID.replace('"order_no"', '"customer_id"'),
        "tables.orders.sort_key.name",
        "must differ",
    ),
    (VALID.replace("[tables.users]", "[tables.u]"), "tables.u", "3-255 characters"),
    # the stream
    (
        VALID.replace('[stream]\nname = "binlog"\nregion = "us-east-1"\n', ""),
        "stream",
        "is required",
    ),
    (VALID.replace('name = "binlog"\n', ""), "stream.name", "is required"),
    (VALID.replace('"binlog"', '"bin log"'), "stream.name", "[A-Za-z0-9_.-], 1-128"),
    (
        VALID.replace('region = "us-east-1"', 'region = "us-east-1"\nretention_hours = 12'),
        "stream.retention_hours",
        "allowed 24 to 8760",
    ),
    (
        VALID.replace('region = "us-east-1"', 'region = "us-east-1"\nshards = 0'),
        "stream.shards",
        "allowed 1 to 10000",
    ),
    (
        VALID.replace('region = "us-east-1"', 'region = "us-east-1"\nshards = "two"'),
        "stream.shards",
        "must be a number",
    ),
    # replicas and dead letters
    (VALID.replace("max_wcu = 100", "max_wcu = 0"), "replicas.eu.max_wcu", "allowed 1 to 40000"),
    (VALID.replace("max_wcu = 100", "max_wcu = true"), "replicas.eu.max_wcu", "must be a number"),
    (
        VALID + '\n[dead_letter]\nkind = "kafka"\nname = "q"\n',
        "dead_letter.kind",
        "allowed: sqs, s3",
    ),
    ("tables = {}\n" + VALID.split("[tables", maxsplit=1)[0], "tables", "at least one"),
]


@pytest.mark.parametrize(
    ("text", "field", "allowed"),
    MISTAKES,
    ids=[f"{index}-{field}" for index, (_, field, _) in enumerate(MISTAKES)],
)
def test_each_mistake_names_its_field_and_what_it_allows(
    tmp_path: Path, text: str, field: str, allowed: str
) -> None:
    # GIVEN a topology with one mistake
    # WHEN loaded
    error = _error(tmp_path, text)
    # THEN TopologyError names the field and what it allows
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert allowed in str(error)


def test_missing_file(tmp_path: Path) -> None:
    # GIVEN no file WHEN loaded THEN TopologyError naming the path
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "absent.toml")


def test_not_toml(tmp_path: Path) -> None:
    # GIVEN a file that is not TOML WHEN loaded THEN TopologyError
    assert "not valid TOML" in str(_error(tmp_path, "[stream\nname = 1"))


def test_replicas_need_distinct_kcl_application_names(tmp_path: Path) -> None:
    # GIVEN two replica targets sharing one KCL application name (so one lease table and
    # one set of checkpoints: each would checkpoint records only the other applied)
    text = VALID.replace("deadline_hours = 20", 'deadline_hours = 20\napplication_name = "app"')
    text += '\n[replicas.apac]\nregion = "ap-southeast-2"\nmax_wcu = 10\ndeadline_hours = 20\n'
    text += 'application_name = "app"\n'
    # WHEN loaded THEN TopologyError naming the second one's application_name
    error = _error(tmp_path, text)
    assert error.field == "replicas.apac.application_name"


def test_the_doc_shows_the_example_file() -> None:
    # GIVEN the complete example in docs/TOPOLOGY.md (its last toml block)
    blocks = re.findall(r"```toml\n(.*?)```", TOPOLOGY_DOC.read_text(encoding="utf-8"), re.DOTALL)
    # THEN it says what examples/topology.toml says
    assert tomllib.loads(blocks[-1]) == tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def test_the_doc_error_messages_are_real(tmp_path: Path) -> None:
    # GIVEN the example file with the mistakes the doc quotes
    example = EXAMPLE.read_text(encoding="utf-8")
    mistakes = [
        example.replace("deadline_hours = 24.0", "deadline_hours = 47"),
        example.replace('name = "shop-binlog"', 'nmae = "shop-binlog"'),
        example.replace(
            '{ name = "order_no", type = "N" }', '{ name = "order_no", type = "NUMBER" }'
        ),
    ]
    # WHEN loaded THEN the messages are exactly the doc's
    doc = TOPOLOGY_DOC.read_text(encoding="utf-8")
    for text in mistakes:
        assert str(_error(tmp_path, text)) in doc
