"""KCL properties: the per-replica AWS files, the local template, and the keys they use.

The daemon ignores unknown keys silently, so every file we ship or generate is parsed
here and any key outside kcl_consumer/known_keys.py fails the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from binlog.topology import Topology, load_topology, parse_topology
from kcl_consumer.known_keys import KNOWN_KEYS, is_known, normalise_key, unknown_keys
from kcl_consumer.properties import (
    DEFAULT_TEMPLATE,
    MAX_RECORDS_LIMIT,
    MIN_BATCH_RECORDS,
    KclSettings,
    ReplicaKclOptions,
    batch_records,
    parse_properties,
    render,
    render_replica,
    replica_entries,
    worker_command,
)
from lazyrep.cli_properties import properties as properties_command

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "topology.toml"
PROPERTIES_DIR = REPO / "properties"
CLIENT_REGION_KEYS = ("kinesisClient.region", "dynamoDbClient.region", "cloudWatchClient.region")


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(EXAMPLE)


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(properties_command, list(args))


def local_template_rendered() -> str:
    """properties/local.properties with its placeholders filled (as `lazyrep kcl render`)."""
    return render(
        KclSettings(
            executable="/usr/bin/python3 /abs/worker.py",
            application_name="app",
            stream_name="stream",
            region="us-east-1",
            kinesis_endpoint="http://127.0.0.1:4568",
            dynamodb_endpoint="http://127.0.0.1:5000",
            cloudwatch_endpoint="http://127.0.0.1:5000",
        )
    )


def shipped_files() -> dict[str, str]:
    """Every properties file of properties/ (the template rendered), by name."""
    files = {"local.properties": local_template_rendered()}
    for path in sorted(PROPERTIES_DIR.glob("*.properties")):
        if path.name != "local.properties":
            files[path.name] = path.read_text(encoding="utf-8")
    return files


# --- Reading properties as java.util.Properties does ------------------------------------


def test_parse_properties_follows_java_rules() -> None:
    text = (
        "# comment\n"
        "  ! another comment\n"
        "\n"
        "a = 1\n"
        "b:2\n"
        "c 3\n"
        "d=\n"
        "e = spaced value  \n"
        "f = first \\\n"
        "    second\n"
        "g = C:\\\\dir\\tx\\u0041\n"
        "key\\ with\\ spaces = v\n"
        "a = last wins\n"
        "#h = commented out\n"
    )
    assert parse_properties(text) == {
        "a": "last wins",
        "b": "2",
        "c": "3",
        "d": "",
        "e": "spaced value  ",
        "f": "first second",
        "g": "C:\\dir\txA",
        "key with spaces": "v",
    }


def test_parse_properties_rejects_a_malformed_unicode_escape() -> None:
    with pytest.raises(ValueError, match="uxxxx"):
        parse_properties("a = \\u12\n")


# --- Which keys the daemon knows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "known"),
    [
        ("shutdownGraceMillis", True),
        ("kinesisClient.region", True),
        ("cloudWatchClient.endpointOverride", True),
        ("executableName", True),
        # Only the AwsCredentialsProvider prefix is case-insensitive (processKey) ...
        ("AwsCredentialsProvider", True),
        ("AWSCREDENTIALSPROVIDERDynamoDB", True),
        # ... every other key is a Java bean property name: exact case.
        ("ShutdownGraceMillis", False),
        ("regionname", False),
        ("shutdownGraceMilis", False),
        ("cloudWatchEndpoint", False),
        ("dynamoDBClient.region", False),
    ],
)
def test_known_keys_are_case_sensitive_but_for_credentials(key: str, known: bool) -> None:
    assert is_known(key) is known


def test_normalise_key_rewrites_only_the_credentials_prefix() -> None:
    assert normalise_key("awscredentialsprovidercloudwatch") == "awsCredentialsProvidercloudwatch"
    assert normalise_key("AwsCredentialsProviderCloudWatch") == "awsCredentialsProviderCloudWatch"
    assert normalise_key("regionName") == "regionName"
    assert "awsCredentialsProviderCloudWatch" in KNOWN_KEYS


@pytest.mark.parametrize("name", sorted(shipped_files()))
def test_every_shipped_file_uses_only_keys_the_daemon_knows(name: str) -> None:
    keys = parse_properties(shipped_files()[name])
    assert keys, name
    assert unknown_keys(keys) == [], name


@pytest.mark.parametrize("name", sorted(shipped_files()))
def test_no_file_mixes_region_name_with_client_regions(name: str) -> None:
    # regionName sets all three clients; a per-client key set with it wins or loses by the
    # hash order of java.util.Properties. A file uses one or the other.
    keys = parse_properties(shipped_files()[name])
    per_client = [k for k in CLIENT_REGION_KEYS if k in keys]
    assert "regionName" not in keys or not per_client, name
    assert "regionName" in keys or len(per_client) == 3, name


# --- Per replica target, for AWS -----------------------------------------------------


def test_eu_replica_properties(topology: Topology) -> None:
    # GIVEN the example topology's eu target (eu-west-1, 200 WCU, stream in us-east-1)
    # WHEN its AWS properties are generated with the defaults
    keys = parse_properties(render_replica(topology, "eu", ReplicaKclOptions()))
    # THEN the stream is read in its region and everything else stays in eu-west-1
    assert keys == {
        "executableName": "/opt/lazyrep/venv/bin/python -m kcl_consumer.worker "
        "--topology /etc/lazyrep/topology.toml --replica eu",
        "applicationName": "lazyrep-shop-eu-west-1",
        "streamName": "shop-binlog",
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "kinesisClient.region": "us-east-1",
        "dynamoDbClient.region": "eu-west-1",
        "cloudWatchClient.region": "eu-west-1",
        "retrievalMode": "POLLING",
        "initialPositionInStream": "TRIM_HORIZON",
        "shutdownGraceMillis": "50000",
        "isGracefulLeaseHandoffEnabled": "false",
        "failoverTimeMillis": "10000",
        "leaseTableDeletionProtectionEnabled": "true",
        "disableWorkerMetrics": "true",
        "metricsLevel": "SUMMARY",
        "maxRecords": "1250",
        "idleTimeBetweenReadsInMillis": "2000",
    }


def test_aws_files_have_no_endpoints_and_own_application_names(topology: Topology) -> None:
    names = set()
    for replica in topology.replicas:
        keys = parse_properties(render_replica(topology, replica, ReplicaKclOptions()))
        assert not [k for k in keys if "ndpoint" in k], replica
        names.add(keys["applicationName"])
    assert len(names) == len(topology.replicas)


def test_fanout_drops_the_polling_keys(topology: Topology) -> None:
    keys = parse_properties(
        render_replica(topology, "apac", ReplicaKclOptions(retrieval_mode="FANOUT"))
    )
    assert keys["retrievalMode"] == "FANOUT"
    assert "maxRecords" not in keys
    assert "idleTimeBetweenReadsInMillis" not in keys


@pytest.mark.parametrize("stop_timeout_s", [15, 30, 60, 120])
def test_shutdown_grace_fits_inside_the_ecs_stop_timeout(
    topology: Topology, stop_timeout_s: int
) -> None:
    keys = parse_properties(
        render_replica(topology, "eu", ReplicaKclOptions(stop_timeout_s=stop_timeout_s))
    )
    grace = int(keys["shutdownGraceMillis"])
    assert 0 < grace <= stop_timeout_s * 1000 - 10_000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stop_timeout_s", 14),
        ("stop_timeout_s", 121),
        ("retrieval_mode", "DEFAULT"),
        ("metrics_level", "ALL"),
        ("max_records", 0),
        ("max_records", 10_001),
        ("idle_time_between_reads_ms", 100),
    ],
)
def test_options_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ReplicaKclOptions(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_wcu", "shards", "expected"),
    [
        (200, 4, 1250),  # 50 WCU per shard for 25 s (half the 50 s grace)
        (50, 4, 312),
        (1, 100, MIN_BATCH_RECORDS),
        (40_000, 1, MAX_RECORDS_LIMIT),
    ],
)
def test_batch_records_fit_half_the_grace_at_full_rate(
    max_wcu: float, shards: int, expected: int
) -> None:
    topology = parse_topology(
        {
            "stream": {"name": "s", "region": "us-east-1", "shards": shards},
            "tables": {"t_1": {"partition_key": {"name": "k", "type": "S"}}},
            "replicas": {"r": {"region": "eu-west-1", "max_wcu": max_wcu, "deadline_hours": 1}},
        }
    )
    assert batch_records(topology, topology.replicas["r"], 50_000) == expected


def test_max_records_option_overrides_the_sizing(topology: Topology) -> None:
    entries = replica_entries(topology, "eu", ReplicaKclOptions(max_records=42))
    assert {e.key: e.value for e in entries}["maxRecords"] == "42"


@pytest.mark.parametrize(
    ("python", "topology_path", "replica"),
    [("/opt/my python/bin/python", "/t.toml", "eu"), ("/p", "/a b.toml", "eu"), ("/p", "/t", "")],
)
def test_worker_command_refuses_whitespace(python: str, topology_path: str, replica: str) -> None:
    with pytest.raises(ValueError, match="splits executableName on spaces"):
        worker_command(python, topology_path, replica)


def test_extra_keys_the_daemon_ignores_are_refused(topology: Topology) -> None:
    with pytest.raises(ValueError, match="ShutdownGraceMillis"):
        render_replica(topology, "eu", ReplicaKclOptions(), extra={"ShutdownGraceMillis": "1"})


def test_extra_keys_come_last_and_win(topology: Topology) -> None:
    text = render_replica(
        topology, "eu", ReplicaKclOptions(), extra={"failoverTimeMillis": "20000"}
    )
    assert parse_properties(text)["failoverTimeMillis"] == "20000"


# --- lazyrep properties ------------------------------------------------------------------


def test_committed_replica_files_are_up_to_date() -> None:
    # Regenerate: lazyrep properties --topology examples/topology.toml --out properties
    result = run_cli("--topology", str(EXAMPLE), "--out", str(PROPERTIES_DIR), "--check")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in PROPERTIES_DIR.glob("*.properties")) == [
        "apac.properties",
        "eu.properties",
        "local.properties",
    ]


def test_cli_writes_one_file_per_replica(tmp_path: Path, topology: Topology) -> None:
    result = run_cli("--topology", str(EXAMPLE), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apac.properties", "eu.properties"]
    eu = (tmp_path / "eu.properties").read_text(encoding="utf-8")
    assert eu == render_replica(topology, "eu", ReplicaKclOptions(), source="topology.toml")


def test_cli_options_reach_the_files(tmp_path: Path) -> None:
    result = run_cli(
        "--topology",
        str(EXAMPLE),
        "--out",
        str(tmp_path),
        "--replica",
        "apac",
        "--retrieval-mode",
        "FANOUT",
        "--stop-timeout",
        "120",
        "--worker-metrics",
        "--python",
        "/usr/bin/python3",
        "--worker-topology",
        "/cfg/t.toml",
        "--set",
        "metricsLevel=DETAILED",
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["apac.properties"]
    keys = parse_properties((tmp_path / "apac.properties").read_text(encoding="utf-8"))
    assert keys["retrievalMode"] == "FANOUT"
    assert keys["shutdownGraceMillis"] == "110000"
    assert keys["disableWorkerMetrics"] == "false"
    assert keys["metricsLevel"] == "DETAILED"
    assert keys["executableName"] == (
        "/usr/bin/python3 -m kcl_consumer.worker --topology /cfg/t.toml --replica apac"
    )


def test_check_finds_missing_changed_and_stale_files(tmp_path: Path) -> None:
    # GIVEN generated files, one edited by hand and one for a replica no longer there
    assert run_cli("--topology", str(EXAMPLE), "--out", str(tmp_path)).exit_code == 0
    eu = tmp_path / "eu.properties"
    eu.write_text(eu.read_text(encoding="utf-8") + "maxRecords = 1\n", encoding="utf-8")
    (tmp_path / "gone.properties").write_text(
        (tmp_path / "apac.properties").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "apac.properties").unlink()
    (tmp_path / "handmade.properties").write_text("a = b\n", encoding="utf-8")
    # WHEN checked
    result = run_cli("--topology", str(EXAMPLE), "--out", str(tmp_path), "--check")
    # THEN each problem is named, and a hand-written file is left alone
    assert result.exit_code == 1
    assert "eu.properties: differs" in result.output
    assert "apac.properties: missing" in result.output
    assert "gone.properties: no replica of the topology generates it" in result.output
    assert "handmade" not in result.output


def test_cli_local_renders_the_template_per_replica(tmp_path: Path) -> None:
    result = run_cli(
        "--topology",
        str(EXAMPLE),
        "--local",
        "--out",
        str(tmp_path),
        "--kinesis-endpoint",
        "http://127.0.0.1:4568",
        "--dynamodb-endpoint",
        "http://127.0.0.1:5000",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "apac.local.properties",
        "eu.local.properties",
    ]
    keys = parse_properties((tmp_path / "eu.local.properties").read_text(encoding="utf-8"))
    assert unknown_keys(keys) == []
    assert keys["executableName"] == (
        f"{sys.executable} -m kcl_consumer.worker --topology {EXAMPLE} --replica eu"
    )
    assert keys["applicationName"] == "lazyrep-shop-eu-west-1"
    assert keys["kinesisEndpoint"] == "http://127.0.0.1:4568"
    assert keys["cloudWatchClient.endpointOverride"] == "http://127.0.0.1:5000"
    assert "regionName" not in keys
    assert keys["kinesisClient.region"] == "us-east-1"  # the stream's
    assert keys["dynamoDbClient.region"] == keys["cloudWatchClient.region"] == "eu-west-1"
    assert parse_properties(DEFAULT_TEMPLATE.read_text(encoding="utf-8")).keys() == keys.keys()


def test_cli_local_needs_the_stack_endpoints(tmp_path: Path) -> None:
    result = run_cli("--topology", str(EXAMPLE), "--local", "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "lazyrep local env" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--replica", "mars"), "no replica 'mars'"),
        (("--set", "ShutdownGraceMillis=1"), "ignores ShutdownGraceMillis"),
        (("--set", "novalue"), "KEY=VALUE"),
        (("--python", "/my python"), "splits executableName"),
    ],
)
def test_cli_refuses_what_cannot_work(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli("--topology", str(EXAMPLE), "--out", str(tmp_path), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not list(tmp_path.iterdir())


def test_cli_refuses_a_replica_named_local(tmp_path: Path) -> None:
    topology = tmp_path / "t.toml"
    topology.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("[replicas.apac]", "[replicas.local]"),
        encoding="utf-8",
    )
    result = run_cli("--topology", str(topology), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "overwrite local.properties" in result.output
