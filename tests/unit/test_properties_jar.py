"""The known-keys list and our properties files, checked against the daemon's own jars.

Runs kcl_consumer/KnownKeys.java with the installed KCL jars (skipped without Java or
jars): the list in kcl_consumer/known_keys.py must be what the jars give today, and the
daemon's real configurator must load every file we ship and resolve the regions, timings
and modes we meant.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from emulators.tools import MissingToolError
from kcl_consumer import daemon
from kcl_consumer.known_keys import (
    KCL_VERSION,
    KNOWN_KEYS,
    check_files,
    keys_from_jars,
    unknown_keys,
)
from kcl_consumer.properties import KclSettings, parse_properties, render

PROPERTIES_DIR = Path(__file__).resolve().parents[2] / "properties"


def local_template_rendered() -> str:
    """properties/local.properties filled as `lazyrep kcl render` does."""
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


@pytest.fixture(scope="module")
def classpath() -> str:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH")
    try:
        return daemon.classpath(daemon.jars_dir())
    except MissingToolError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def reports(classpath: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """KnownKeys.java's report on every shipped file, by file name (one JVM for all)."""
    local = tmp_path_factory.mktemp("props") / "local.properties"
    local.write_text(local_template_rendered(), encoding="utf-8")
    replicas = sorted(p for p in PROPERTIES_DIR.glob("*.properties") if p.name != local.name)
    files = [local, *replicas]
    return {Path(r["file"]).name: r for r in check_files(files, classpath)}


def test_jars_are_the_version_the_list_was_made_from(classpath: str) -> None:
    jars = [Path(p).name for p in classpath.split(os.pathsep)]
    assert f"amazon-kinesis-client-multilang-{KCL_VERSION}.jar" in jars


def test_known_keys_are_what_the_jars_accept(classpath: str) -> None:
    # On a KCL bump this fails: run `python -m kcl_consumer.known_keys --write`, then read
    # the diff (a removed key we use means a file of ours silently lost a setting).
    assert keys_from_jars(classpath) == sorted(KNOWN_KEYS)


def test_the_daemon_loads_every_shipped_file(reports: dict[str, Any]) -> None:
    assert sorted(reports) == ["apac.properties", "eu.properties", "local.properties"]
    for name, report in reports.items():
        assert "error" not in report, (name, report.get("error"))
        assert report["unknown"] == [], name


def test_aws_files_resolve_to_the_regions_and_timings_meant(reports: dict[str, Any]) -> None:
    eu = reports["eu.properties"]["resolved"]
    assert eu == {
        "applicationName": "lazyrep-shop-eu-west-1",
        "streamName": "shop-binlog",
        "kinesisRegion": "us-east-1",
        "dynamoDbRegion": "eu-west-1",
        "cloudWatchRegion": "eu-west-1",
        "kinesisEndpoint": None,
        "dynamoDbEndpoint": None,
        "cloudWatchEndpoint": None,
        "retrievalMode": "POLLING",
        "metricsLevel": "SUMMARY",
        "shutdownGraceMillis": 50000,
        "failoverTimeMillis": 10000,
        "maxRecords": 1250,
        "idleTimeBetweenReadsInMillis": 2000,
        "disableWorkerMetrics": True,
        "gracefulLeaseHandoffTimeoutMillis": None,
        "isGracefulLeaseHandoffEnabled": False,
        "initialPositionInStream": "TRIM_HORIZON",
        "timeoutInSeconds": None,
    }
    apac = reports["apac.properties"]["resolved"]
    assert (apac["kinesisRegion"], apac["dynamoDbRegion"], apac["cloudWatchRegion"]) == (
        "us-east-1",
        "ap-southeast-2",
        "ap-southeast-2",
    )


def test_local_file_resolves_to_the_stack(reports: dict[str, Any]) -> None:
    local = reports["local.properties"]["resolved"]
    assert local["kinesisEndpoint"] == "http://127.0.0.1:4568"
    assert local["dynamoDbEndpoint"] == "http://127.0.0.1:5000"
    assert local["cloudWatchEndpoint"] == "http://127.0.0.1:5000"
    assert {local["kinesisRegion"], local["dynamoDbRegion"], local["cloudWatchRegion"]} == {
        "us-east-1"
    }
    assert local["retrievalMode"] == "POLLING"
    assert local["shutdownGraceMillis"] == 20000
    assert local["isGracefulLeaseHandoffEnabled"] is False


def test_java_and_our_parser_read_a_file_alike(classpath: str, tmp_path: Path) -> None:
    # GIVEN a file with Java's syntax corners and keys the daemon ignores
    path = tmp_path / "tricky.properties"
    path.write_text(
        "executableName = x\n"
        "applicationName: app\n"
        "streamName stream\n"
        "AwsCredentialsProvider = DefaultCredentialsProvider\n"
        "ShutdownGraceMillis = 5\n"
        "failover\\\n"
        "   TimeMillis = 7\n"
        "  ! comment = 1\n"
        "region\\u004eame = eu-west-1\n"
        "no\\ such\\ key = 1\n",
        encoding="utf-8",
    )
    # WHEN both read it
    (report,) = check_files([path], classpath)
    ours = parse_properties(path.read_text(encoding="utf-8"))
    # THEN they agree on which keys the daemon ignores, and on the values it resolved
    assert report["unknown"] == unknown_keys(ours) == ["ShutdownGraceMillis", "no such key"]
    assert report["resolved"]["failoverTimeMillis"] == 7
    assert report["resolved"]["dynamoDbRegion"] == "eu-west-1"
