#!/usr/bin/env python3
"""Install everything `make test` and `make demo` need, idempotently and fast when done.

Run with the system Python 3.11+ (it creates .venv). Needs beforehand only Python 3.11+,
Java 17+ and Node 18+ (with npm); installs the rest:

- Debian packages nghttp2-proxy (nghttpx: h2c in front of kinesalite), maven and
  docker-compose (its `config` validates docker-compose.yml, no engine needed), via
  apt-get when missing (as root; otherwise it stops and prints the sudo command);
- the KCL MultiLangDaemon jars, by Maven with strict checksums from kcl_consumer/pom.xml,
  into the cache;
- kinesalite, by `npm ci` from emulators/node/package-lock.json, into the cache;
- .venv with amazon-kclpy (its setup.py "downloads" its jars from the Maven repository
  in the cache through KCL_MVN_REPO_SEARCH_URL=file://..., so every jar is one Maven
  verified) and this project with its dev, local and kcl extras.

Each step writes a stamp holding a hash of its inputs and is skipped while that matches.
The cache is ${LAZYREP_CACHE:-~/.cache/lazy-replication} (same rule as
emulators/tools.py:cache_dir; repeated here because this runs before the venv exists).
"""

# ruff: noqa: S603 - runs only fixed tool commands (mvn, npm, pip, apt-get) built here

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
POM = REPO / "kcl_consumer" / "pom.xml"
NODE_SRC = REPO / "emulators" / "node"
KCLPY_VERSION = "3.1.3"  # the amazon-kclpy whose pom.xml lists exactly the jars in POM
MIN_PYTHON = (3, 11)
MIN_JAVA = 17
MIN_NODE = 18
# docker-compose: only to validate docker-compose.yml offline (tests/unit/test_compose.py).
APT_TOOLS = {"nghttpx": "nghttp2-proxy", "mvn": "maven", "docker-compose": "docker-compose"}
SBIN = "/usr/sbin:/usr/local/sbin"


class BootstrapError(Exception):
    """A step cannot run here; the message says which command fixes it."""


def say(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


def cache_dir() -> Path:
    configured = os.environ.get("LAZYREP_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/lazy-replication"


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def stamp_matches(stamp: Path, key: str) -> bool:
    try:
        return stamp.read_text().strip() == key
    except OSError:
        return False


def run(argv: list[str], *, quiet: bool = False, **kwargs: object) -> None:
    """Run a command, echoing it; a failure stops the bootstrap with its exit code.

    quiet: keep the command's output unless it fails (Maven prints terminal escapes
    even in batch mode).
    """
    print("+ " + " ".join(argv), flush=True)
    if quiet:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = subprocess.run(argv, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        if quiet:
            print(result.stdout, end="", flush=True)
        raise BootstrapError(f"command failed with exit code {result.returncode}: {argv[0]}")


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=SBIN)


def major_version(argv: list[str], pattern: str) -> int | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, out.stdout + out.stderr)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_x".
    return int(match.group(2)) if major == 1 and match.lastindex and match.group(2) else major


def check_prerequisites() -> None:
    if sys.version_info < MIN_PYTHON:
        raise BootstrapError(
            "Python 3.11+ needed to create .venv; run: make bootstrap PYTHON=python3.11"
        )
    java = major_version(["java", "-version"], r'version "(\d+)(?:\.(\d+))?')
    if java is None or java < MIN_JAVA:
        raise BootstrapError(
            f"Java {MIN_JAVA}+ needed (found {java}); run: sudo apt-get install -y "
            "openjdk-17-jdk-headless (or put a JDK 17+ first on PATH / set JAVA_HOME)"
        )
    node = major_version(["node", "--version"], r"v(\d+)()")
    if node is None or node < MIN_NODE or shutil.which("npm") is None:
        raise BootstrapError(
            f"Node.js {MIN_NODE}+ with npm needed (found {node}); "
            "run: sudo apt-get install -y nodejs npm"
        )


def ensure_apt_tools() -> None:
    missing = sorted({pkg for tool, pkg in APT_TOOLS.items() if which(tool) is None})
    if not missing:
        return
    command = "apt-get update && apt-get install -y " + " ".join(missing)
    if shutil.which("apt-get") is None:
        raise BootstrapError(
            f"missing {', '.join(missing)}; install them with your package manager "
            "(macOS: brew install nghttp2 maven docker-compose)"
        )
    if os.geteuid() != 0:
        raise BootstrapError(f"missing {', '.join(missing)}; run: sudo sh -c '{command}'")
    say(f"installing Debian packages {', '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def ensure_kcl_jars(cache: Path) -> Path:
    """Fetch the pinned KCL jars with Maven (strict checksums); return the jars dir."""
    pom = POM.read_bytes()
    jars, stamp = cache / "kcl" / "jars", cache / "kcl" / "jars.stamp"
    key = digest(pom)
    if stamp_matches(stamp, key) and any(jars.glob("*.jar")):
        return jars
    say(f"fetching the KCL jars with Maven into {jars}")
    partial = jars.with_name("jars.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(
        [
            "mvn",
            "-B",
            "-ntp",
            "-q",
            "--strict-checksums",
            f"-Dmaven.repo.local={cache / 'm2'}",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DexcludeTransitive=true",
            f"-DoutputDirectory={partial}",
        ],
        quiet=True,
    )
    expected = pom.decode().count("<dependency>")
    got = len(list(partial.glob("*.jar")))
    if got != expected:
        raise BootstrapError(f"Maven copied {got} jars, the pom lists {expected}")
    shutil.rmtree(jars, ignore_errors=True)
    partial.rename(jars)
    stamp.write_text(key + "\n")
    return jars


def ensure_node_modules(cache: Path) -> None:
    """Install kinesalite from the committed lock file into the cache."""
    target = cache / "node"
    files = ("package.json", "package-lock.json")
    key = digest(*(NODE_SRC.joinpath(f).read_bytes() for f in files))
    stamp = target / ".lazyrep-stamp"
    if stamp_matches(stamp, key) and (target / "node_modules" / "kinesalite").is_dir():
        return
    say(f"installing kinesalite with npm into {target}")
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(NODE_SRC / name, target / name)
    # --ignore-scripts: kinesalite's tree is plain JavaScript; nothing needs to build.
    npm = shutil.which("npm") or "npm"
    run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", str(cache / "npm")],
        cwd=target,
    )
    stamp.write_text(key + "\n")


def venv_python_works(python: Path) -> bool:
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except OSError:
        return False
    return out.stdout.strip() == "True"


def ensure_venv(cache: Path, jars: Path) -> None:
    """Create .venv and install amazon-kclpy and this project into it."""
    python = VENV / "bin" / "python"
    if not venv_python_works(python):
        say(f"creating {VENV}")
        run([sys.executable, "-m", "venv", "--clear", str(VENV)])
    stamp = VENV / ".lazyrep-bootstrap"
    key = digest(
        (REPO / "pyproject.toml").read_bytes(), KCLPY_VERSION, POM.read_bytes(), str(cache)
    )
    if stamp_matches(stamp, key):
        return
    say("installing Python packages into .venv")
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        # amazon-kclpy's setup.py fetches each jar of its pom from this prefix: point it at
        # the Maven repository that ensure_kcl_jars filled, so nothing comes unverified.
        "KCL_MVN_REPO_SEARCH_URL": (cache / "m2").as_uri() + "/",
    }
    # --no-cache-dir: never reuse a wheel built elsewhere with jars fetched another way.
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-cache-dir",
            f"amazon-kclpy=={KCLPY_VERSION}",
        ],
        env=env,
    )
    run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[dev,local,kcl]"], env=env)
    check_kclpy_jars(python, jars)
    stamp.write_text(key + "\n")


def check_kclpy_jars(python: Path, jars: Path) -> None:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import amazon_kclpy, os; print(os.path.dirname(amazon_kclpy.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {p.name for p in Path(out.stdout.strip(), "jars").glob("*.jar")}
    fetched = {p.name for p in jars.glob("*.jar")}
    if installed != fetched:
        raise BootstrapError(
            "amazon-kclpy's jars differ from kcl_consumer/pom.xml's: "
            f"{sorted(installed ^ fetched)[:5]}; keep KCLPY_VERSION and the pom in step"
        )


def main() -> int:
    begun = time.monotonic()
    cache = cache_dir()
    try:
        check_prerequisites()
        ensure_apt_tools()
        cache.mkdir(parents=True, exist_ok=True)
        jars = ensure_kcl_jars(cache)
        ensure_node_modules(cache)
        ensure_venv(cache, jars)
    except BootstrapError as exc:
        print(f"bootstrap: error: {exc}", file=sys.stderr)
        return 2
    say(f"ready in {time.monotonic() - begun:.1f} s (cache {cache}, venv {VENV})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
