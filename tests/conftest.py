"""Fixtures shared by every test: an isolated AWS environment and the local stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.stack import LocalStack

LONGEST_FIRST = (
    "tests/e2e/test_reliability_lazy.py",  # about 4 minutes
    "tests/e2e/test_replica_e2e.py",
    "tests/e2e/test_operator_e2e.py",
    "tests/e2e/test_demo_e2e.py",
    "tests/e2e/test_daemon_starts.py",
)
"""Test files by how long they run, longest first (`make test`'s --durations list)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, the rest in their order. `make test` hands files to two
    xdist workers in this order (--dist loadfile --no-loadscope-reorder); xdist's own
    order (most tests first) left the four-minute files for last, one worker idle."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def _aws_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aws-config")
    (path / "config").write_text("")
    (path / "credentials").write_text("")
    return path


@pytest.fixture(autouse=True)
def aws_isolation(monkeypatch: pytest.MonkeyPatch, _aws_config_dir: Path) -> None:
    """No test sees the developer's AWS settings, and none can reach a real AWS account.

    Every AWS_* variable goes, the config files point at empty ones, fake keys and a
    region are set, and instance metadata (169.254.169.254) is never probed.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(_aws_config_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(_aws_config_dir / "credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The local emulators, started once per session by the same launcher as the CLI.

    Tests that talk to it should use `stack_env`, which points the AWS SDKs at it.
    """
    with LocalStack.start() as stack:
        yield stack


@pytest.fixture
def stack_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """The session's local stack, with AWS_ENDPOINT_URL_<SERVICE> set for this test."""
    for name, value in local_stack.env.items():
        monkeypatch.setenv(name, value)
    return local_stack
