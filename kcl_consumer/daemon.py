"""Launching the KCL MultiLangDaemon: where its jars are, and the java command that runs it.

The daemon is the Java KCL; it runs our Python record processor as a child and talks to
it over the child's stdin/stdout. We exec it in place of the calling process (`exec_daemon`)
so that ECS's or a terminal's SIGTERM reaches the JVM, which then gives each child its
shutdownRequested callback (with `shutdownGraceMillis` set).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from emulators.tools import BOOTSTRAP_HINT, MissingToolError, cache_dir

MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
JARS_ENV = "LAZYREP_KCL_JARS"
"""Overrides the jars dir, e.g. in a container image that put them elsewhere."""

DAEMON_ENV: Mapping[str, str] = {
    # The daemon's Kinesis client sends CBOR by default; kinesalite truncates CBOR
    # GetRecords replies past ~16 KiB, and JSON costs nothing against real Kinesis.
    "CBOR_ENABLED": "false",
}


def jars_dir() -> Path:
    """Return the directory of the daemon's jars.

    In order: $LAZYREP_KCL_JARS; the cache that scripts/bootstrap.py fills with Maven
    (kcl_consumer/pom.xml); the `jars/` folder of an installed amazon-kclpy (what a plain
    `pip install amazon-kclpy` gives, e.g. in a container image).

    Raises:
        MissingToolError: no jars anywhere (the message names the fix).
    """
    configured = os.environ.get(JARS_ENV)
    if configured:
        path = Path(configured)
        if not any(path.glob("*.jar")):
            raise MissingToolError("KCL jars", f"fix ${JARS_ENV}", looked_in=configured)
        return path
    candidates = [cache_dir() / "kcl" / "jars"]
    spec = importlib.util.find_spec("amazon_kclpy")
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / "jars")
    for path in candidates:
        if any(path.glob("*.jar")):
            return path
    raise MissingToolError("KCL jars", looked_in=", ".join(map(str, candidates)))


def classpath(jars: Path | None = None) -> str:
    """Return every jar of `jars` (default: `jars_dir()`), sorted, joined for `java -cp`."""
    directory = jars_dir() if jars is None else jars
    return os.pathsep.join(str(p) for p in sorted(directory.glob("*.jar")))


def java_binary() -> str:
    """Return java from $JAVA_HOME, else from PATH.

    Raises:
        MissingToolError: no java on $JAVA_HOME or PATH.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise MissingToolError(
            "java", "install Java 17+ (apt-get install -y openjdk-17-jre-headless)"
        )
    return found


def daemon_command(
    properties_file: Path,
    *,
    jars: Path | None = None,
    java: str | None = None,
    jvm_args: Sequence[str] = (),
) -> list[str]:
    """Return the argv that runs the MultiLangDaemon on `properties_file`.

    Raises:
        FileNotFoundError: the properties file does not exist (the daemon would otherwise
            look it up on the classpath and fail with a less helpful message).
        MissingToolError: java or the jars are missing.
    """
    if not properties_file.is_file():
        raise FileNotFoundError(f"KCL properties file not found: {properties_file}")
    return [
        java or java_binary(),
        *jvm_args,
        "-cp",
        classpath(jars),
        MAIN_CLASS,
        "--properties-file",
        str(properties_file.resolve()),
    ]


def daemon_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return `base` (default: os.environ) with what the daemon needs (CBOR off)."""
    env = dict(os.environ if base is None else base)
    env.update(DAEMON_ENV)
    return env


def exec_daemon(properties_file: Path, *, jvm_args: Sequence[str] = ()) -> NoReturn:
    """Replace this process with the daemon, so signals go straight to the JVM.

    Raises:
        FileNotFoundError, MissingToolError: as `daemon_command`.
    """
    argv = daemon_command(properties_file, jvm_args=jvm_args)
    os.execvpe(argv[0], argv, daemon_environ())  # noqa: S606 - argv built above


__all__ = [
    "BOOTSTRAP_HINT",
    "DAEMON_ENV",
    "JARS_ENV",
    "MAIN_CLASS",
    "MissingToolError",
    "classpath",
    "daemon_command",
    "daemon_environ",
    "exec_daemon",
    "jars_dir",
    "java_binary",
]
