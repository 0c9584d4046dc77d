"""`lazyrep kcl`: run the KCL MultiLangDaemon and write its properties files."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import click

from emulators.tools import MissingToolError
from kcl_consumer import daemon
from kcl_consumer.properties import DEFAULT_TEMPLATE, INITIAL_POSITIONS, KclSettings, render


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2, the code for 'cannot run as asked'."""
    click.echo(f"lazyrep: error: {message}", err=True)
    sys.exit(2)


properties_option = click.option(
    "--properties",
    "properties_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The daemon's .properties file (see `lazyrep kcl render`).",
)
jvm_arg_option = click.option(
    "--jvm-arg", "jvm_args", multiple=True, help="Extra JVM option, e.g. -Xmx512m (repeatable)."
)


@click.group()
def kcl() -> None:
    """Run the KCL MultiLangDaemon (Java) that drives the Python record processors."""


@kcl.command("run")
@properties_option
@jvm_arg_option
def run_daemon(properties_file: Path, jvm_args: tuple[str, ...]) -> None:
    """Replace this process with the MultiLangDaemon (java), so signals reach the JVM.

    Runs with CBOR_ENABLED=false (kinesalite truncates CBOR replies; JSON is fine on AWS).
    """
    try:
        daemon.exec_daemon(properties_file, jvm_args=jvm_args)
    except (MissingToolError, FileNotFoundError) as exc:
        fail(str(exc))


@kcl.command()
@properties_option
@jvm_arg_option
def command(properties_file: Path, jvm_args: tuple[str, ...]) -> None:
    """Print the daemon's command line (with CBOR_ENABLED=false), e.g. for a container."""
    try:
        argv = daemon.daemon_command(properties_file, jvm_args=jvm_args)
    except (MissingToolError, FileNotFoundError) as exc:
        fail(str(exc))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in daemon.DAEMON_ENV.items())
    click.echo(f"{env} {shlex.join(argv)}")


@kcl.command()
@click.option(
    "--jars",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Jars directory (default: see `kcl_consumer.daemon.jars_dir`).",
)
def classpath(jars: Path | None) -> None:
    """Print the daemon's classpath (every jar of the KCL jars directory)."""
    try:
        click.echo(daemon.classpath(jars))
    except MissingToolError as exc:
        fail(str(exc))


@kcl.command("render")
@click.option("--stream", "stream_name", required=True, help="Kinesis stream name.")
@click.option("--app", "application_name", required=True, help="KCL application (lease table).")
@click.option(
    "--executable",
    required=True,
    help="The record processor command, split on spaces: use absolute paths.",
)
@click.option(
    "--region",
    default=lambda: os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    show_default="$AWS_DEFAULT_REGION or us-east-1",
    help="Region name for the daemon's clients.",
)
@click.option(
    "--kinesis-endpoint",
    envvar="LAZYREP_KCL_KINESIS_ENDPOINT",
    required=True,
    help="h2c Kinesis endpoint (env LAZYREP_KCL_KINESIS_ENDPOINT, set by `lazyrep local env`).",
)
@click.option(
    "--dynamodb-endpoint",
    envvar="AWS_ENDPOINT_URL_DYNAMODB",
    required=True,
    help="DynamoDB endpoint for the lease tables (env AWS_ENDPOINT_URL_DYNAMODB).",
)
@click.option(
    "--cloudwatch-endpoint",
    envvar="AWS_ENDPOINT_URL_CLOUDWATCH",
    help="CloudWatch endpoint (env AWS_ENDPOINT_URL_CLOUDWATCH; default: the DynamoDB one).",
)
@click.option(
    "--initial-position",
    type=click.Choice(INITIAL_POSITIONS),
    default="TRIM_HORIZON",
    show_default=True,
    help="Where a new lease starts reading.",
)
@click.option("--max-records", type=int, default=10_000, show_default=True, help="Per GetRecords.")
@click.option(
    "--idle-ms", type=int, default=250, show_default=True, help="Wait between empty polls."
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=DEFAULT_TEMPLATE,
    show_default=True,
    help="Properties template with ${...} placeholders.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra or overriding property (repeatable).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
def render_properties(
    stream_name: str,
    application_name: str,
    executable: str,
    region: str,
    kinesis_endpoint: str,
    dynamodb_endpoint: str,
    cloudwatch_endpoint: str | None,
    initial_position: str,
    max_records: int,
    idle_ms: int,
    template: Path,
    overrides: tuple[str, ...],
    output: Path | None,
) -> None:
    """Write a daemon properties file for the running local stack (or any endpoints).

    Example: eval "$(lazyrep local env)"; lazyrep kcl render --stream s --app a
    --executable "$PWD/.venv/bin/python $PWD/worker.py" -o app.properties
    """
    extra: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set takes KEY=VALUE, got {item!r}")
        extra[key.strip()] = value.strip()
    try:
        settings = KclSettings(
            executable=executable,
            application_name=application_name,
            stream_name=stream_name,
            region=region,
            kinesis_endpoint=kinesis_endpoint,
            dynamodb_endpoint=dynamodb_endpoint,
            cloudwatch_endpoint=cloudwatch_endpoint or dynamodb_endpoint,
            initial_position=initial_position,
            max_records=max_records,
            idle_time_between_reads_ms=idle_ms,
        )
        text = render(settings, template=template, extra=extra)
    except (ValueError, KeyError) as exc:
        fail(f"cannot render {template}: {exc}")
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
