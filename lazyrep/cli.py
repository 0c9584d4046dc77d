"""Entry point of the `lazyrep` command: a thin click group over the subcommand modules."""

from __future__ import annotations

import click

from lazyrep.cli_backfill import backfill
from lazyrep.cli_bench import bench
from lazyrep.cli_demo import demo
from lazyrep.cli_deploy import deploy
from lazyrep.cli_kcl import kcl
from lazyrep.cli_lambda import lambda_
from lazyrep.cli_local import local
from lazyrep.cli_properties import properties
from lazyrep.cli_replay import replay
from lazyrep.cli_replica import replica
from lazyrep.cli_rewind import rewind_command
from lazyrep.cli_status import status
from lazyrep.cli_verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lazy-replication")
def main() -> None:
    """lazy-replication: a Kinesis stream as the replayable binlog of DynamoDB tables."""


main.add_command(local)
main.add_command(kcl)
main.add_command(lambda_)
main.add_command(properties)
main.add_command(replica)
main.add_command(replay)
main.add_command(status)
main.add_command(rewind_command)
main.add_command(verify)
main.add_command(backfill)
main.add_command(bench)
main.add_command(demo)
main.add_command(deploy)
