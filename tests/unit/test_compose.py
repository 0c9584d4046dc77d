"""docker-compose.yml, checked without a Docker engine.

Debian's `docker-compose` (1.29, installed by scripts/bootstrap.py) validates the file
against the Compose schema and resolves it offline: `config -q` is the syntax check, and
its normalized output (merge keys applied, paths made absolute) is what the reference
checks below read. A missing binary fails rather than skips: `make bootstrap` installs
it, so its absence means the machine is not set up, and a skip would hide that.
What `config` cannot know is checked here: built contexts and mounted files exist, every
`lazyrep` command parses with the real click CLI, the one-shot Python scripts compile
and import real names, every replica of the demo topology has a worker, and every
endpoint names a service of the file.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml  # PyYAML: installed with moto[server] (the local extra)
from click.testing import CliRunner

from binlog.topology import Topology, load_topology
from kcl_consumer.properties import DEFAULT_TEMPLATE, IMAGE_TOPOLOGY, TEMPLATE_ENV
from lazyrep.cli import main

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@pytest.fixture(scope="module")
def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose is missing: run `make bootstrap` (it installs Debian's "
            "docker-compose), or `sudo apt-get install -y docker-compose`"
        )
    return found


@pytest.fixture(scope="module")
def config(docker_compose: str) -> dict[str, Any]:
    """The file as docker-compose resolves it (`docker-compose config`)."""
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


def project_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run the image built from this repository."""
    return {name: s for name, s in services.items() if "build" in s}


def image_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile has no exec-form ENTRYPOINT"
    entrypoint = json.loads(match.group(1))
    assert isinstance(entrypoint, list)
    return [str(part) for part in entrypoint]


def argv(service: dict[str, Any]) -> list[str]:
    """The container's full command line: entrypoint (the image's unless set) + command."""
    entrypoint = service.get("entrypoint", image_entrypoint())
    command = service.get("command", [])
    for part in (entrypoint, command):
        assert isinstance(part, list), f"use the exec (list) form, got {part!r}"
    return [str(p) for p in [*entrypoint, *command]]


def baked_topology(service: dict[str, Any]) -> Path:
    """The topology file the service's image is built with (Dockerfile ARG TOPOLOGY)."""
    build = service["build"]
    return Path(build["context"]) / build.get("args", {}).get("TOPOLOGY", "examples/topology.toml")


def lazyrep_command(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """Split `lazyrep` arguments into the command path, the command, and its arguments."""
    command: click.Command = main
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        ctx = click.Context(command)
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"`lazyrep {' '.join([*path, rest[0]])}` is no command"
        path.append(rest.pop(0))
        command = sub
    return path, command, rest


def lazyrep_services(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Project services whose command is `lazyrep ...`: their arguments after `lazyrep`."""
    found = {}
    for name, service in project_services(services).items():
        line = argv(service)
        if line[0] == "lazyrep":
            found[name] = line[1:]
    return found


def replica_workers(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Replica name -> the service running `lazyrep replica run --replica NAME`."""
    workers = {}
    for name, args in lazyrep_services(services).items():
        path, _, rest = lazyrep_command(args)
        if path == ["replica", "run"]:
            replica = rest[rest.index("--replica") + 1]
            assert replica not in workers, f"{replica} has two worker services"
            workers[replica] = name
    return workers


def test_docker_compose_config_accepts_the_file(docker_compose: str) -> None:
    # WHEN docker-compose validates the file (schema, references, build paths) offline
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # THEN it accepts it
    assert result.returncode == 0, result.stderr


def test_the_whole_system_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert {"kinesalite", "kinesis-h2c", "moto", "setup", "lambda", "producer"} <= set(services)
    paths = {name: lazyrep_command(args)[0] for name, args in lazyrep_services(services).items()}
    assert paths["lambda"] == ["lambda", "run"]


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    built = project_services(services)
    assert built, "no service builds the project image"
    lines = DOCKERIGNORE.read_text().splitlines()
    allowed = {line[1:].strip() for line in lines if line.startswith("!")}
    for name, service in built.items():
        context = Path(service["build"]["context"])
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        topology = baked_topology(service)
        assert topology.is_file(), f"{name}: build arg TOPOLOGY {topology} is missing"
        # The Dockerfile COPYs it: .dockerignore (an allowlist) must let it into the context.
        assert topology.relative_to(context).parts[0] in allowed, f"{name}: {topology}"
        load_topology(topology)


def test_depends_on_names_services_with_what_the_condition_needs(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name}: {target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} restarts"


def test_mounted_files_exist_in_the_repo(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            path = Path(source)
            assert path.is_relative_to(REPO), f"{name} mounts {source} from outside the repo"
            assert path.exists(), f"{name} mounts missing {source}"
            assert target.startswith("/"), f"{name}: {target}"


def test_the_image_ships_the_kcl_template_where_its_env_points() -> None:
    # GIVEN the image: `lazyrep replica run` fills the KCL template, which is not next to the
    # installed package there, so the Dockerfile copies it and names it in TEMPLATE_ENV
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    env = re.search(rf"^\s+{TEMPLATE_ENV}=(\S+)", dockerfile, re.M)
    assert env, f"the Dockerfile does not set {TEMPLATE_ENV}"
    source = DEFAULT_TEMPLATE.relative_to(REPO)
    # THEN it COPYs exactly that file (allowed into the build context) to that path
    copy = rf"^COPY {re.escape(str(source))} {re.escape(env.group(1))}$"
    assert re.search(copy, dockerfile, re.M)
    allowed = {line[1:] for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    assert source.parts[0] in allowed


def test_every_lazyrep_command_parses(services: dict[str, dict[str, Any]]) -> None:
    runner = CliRunner()
    commands = lazyrep_services(services)
    assert commands
    for name, args in commands.items():
        path, command, rest = lazyrep_command(args)
        # The command exists and documents itself ...
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, f"{name}: lazyrep {' '.join(path)} --help: {result.output}"
        if rest == ["--help"]:
            continue
        # ... and parses these very arguments, the image's topology read from its source.
        topology = str(baked_topology(services[name]))
        real = [topology if arg == IMAGE_TOPOLOGY else arg for arg in rest]
        try:
            with command.make_context(f"lazyrep {' '.join(path)}", real):
                pass
        except click.ClickException as exc:
            pytest.fail(f"{name}: lazyrep {' '.join(args)}: {exc.format_message()}")


class ImportedNames(ast.NodeVisitor):
    def __init__(self) -> None:
        self.names: list[tuple[str, str | None]] = []

    def visit_Import(self, node: ast.Import) -> None:
        self.names += [(alias.name, None) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.names += [(node.module or "", alias.name) for alias in node.names]


def test_python_scripts_compile_and_import_real_names(
    services: dict[str, dict[str, Any]],
) -> None:
    scripts = {}
    for name, service in project_services(services).items():
        line = argv(service)
        if line[:2] == ["python", "-c"]:
            scripts[name] = line[2]
    assert {"setup", "producer"} <= set(scripts)
    for name, source in scripts.items():
        tree = compile(source, f"<{name}>", "exec", ast.PyCF_ONLY_AST)
        visitor = ImportedNames()
        visitor.visit(tree)
        for module, attribute in visitor.names:
            imported = importlib.import_module(module)
            assert attribute is None or hasattr(imported, attribute), f"{name}: {attribute}"
        # The scripts read the topology where the image bakes it.
        assert IMAGE_TOPOLOGY in source or "/etc/lazyrep" not in source, name


def test_every_replica_of_the_topology_has_one_worker(
    services: dict[str, dict[str, Any]],
) -> None:
    topologies = {baked_topology(s) for s in project_services(services).values()}
    assert len(topologies) == 1, f"services are built with different topologies: {topologies}"
    topology: Topology = load_topology(topologies.pop())
    assert set(replica_workers(services)) == set(topology.replicas)


def test_lambda_parks_in_the_topologys_dead_letter_queue(
    services: dict[str, dict[str, Any]],
) -> None:
    args = lazyrep_services(services)["lambda"]
    topology = load_topology(baked_topology(services["lambda"]))
    assert topology.dead_letter is not None
    assert args[args.index("--on-failure-queue") + 1] == topology.dead_letter.name


def test_project_services_reach_the_emulators_by_service_name(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in project_services(services).items():
        env = service.get("environment", {})
        # No real credentials, no instance metadata probes.
        assert env.get("AWS_EC2_METADATA_DISABLED") == "true", name
        assert env.get("AWS_ACCESS_KEY_ID"), name
        assert env.get("AWS_SECRET_ACCESS_KEY"), name
        endpoints = {k: v for k, v in env.items() if "ENDPOINT" in k}
        for service_env in ("KINESIS", "DYNAMODB", "SQS", "CLOUDWATCH"):
            assert f"AWS_ENDPOINT_URL_{service_env}" in endpoints, f"{name}: {service_env}"
        assert "LAZYREP_KCL_KINESIS_ENDPOINT" in endpoints, name
        for key, url in endpoints.items():
            host = urlsplit(url).hostname
            assert host in services, f"{name}: {key}={url} names no service"
        assert urlsplit(endpoints["LAZYREP_KCL_KINESIS_ENDPOINT"]).hostname == "kinesis-h2c"
