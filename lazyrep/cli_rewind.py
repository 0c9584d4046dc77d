"""`lazyrep rewind`: make a replica's KCL application apply a shard again from a point.

Thin: options in, lazyrep.rewind does the work. Exit status: 0 moved, 2 usage or
input errors (unknown replica or shard, a sequence number not in the shard, a time
beyond retention, a lease held by a live worker without --force), 1 failures (the
lease changed while rewinding, a service error). docs/REWIND.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from binlog.clients import dynamodb_client, kinesis_client
from binlog.reader import shards_in_lineage_order
from binlog.topology import load_topology
from lazyrep.errors_cli import CliError, cli_errors
from lazyrep.rewind import DEFAULT_OBSERVE_S, RewindRequest, parse_time, rewind
from lazyrep.status_leases import Lease
from lazyrep.status_read import stream_retention_hours


@click.command("rewind")
@click.option(
    "--topology",
    "topology_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The topology file (docs/TOPOLOGY.md).",
)
@click.option("--replica", required=True, metavar="NAME", help="The replica target.")
@click.option("--shard", "shard_id", required=True, metavar="ID", help="e.g. shardId-000000000001")
@click.option("--to-sequence", metavar="N", help="Apply again from this record (inclusive).")
@click.option(
    "--to-time",
    metavar="ISO8601",
    help="Apply again from the first record that arrived at or after this time "
    "(e.g. 2024-05-01T12:00:00Z).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rewind even while a worker holds the lease (it loses it), or move forward.",
)
@click.option(
    "--observe",
    "observe_s",
    type=click.FloatRange(0, 300),
    default=DEFAULT_OBSERVE_S,
    show_default=True,
    help="Seconds to watch an owned lease's leaseCounter to tell a live worker (0: any owner "
    "counts as live).",
)
def rewind_command(
    topology_path: Path,
    replica: str,
    shard_id: str,
    to_sequence: str | None,
    to_time: str | None,
    force: bool,
    observe_s: float,
) -> None:
    """Move the checkpoint of one shard back so the replica applies again from there.

    Prints the checkpoint before and after. The KCL resumes AFTER its checkpoint, so the
    new checkpoint is the record just before the first one to apply again.
    """
    with cli_errors("rewind"):
        topology = load_topology(topology_path)
        target = topology.replicas.get(replica)
        if target is None:
            known = ", ".join(sorted(topology.replicas)) or "none"
            raise CliError(f"unknown replica {replica!r} (known: {known})")
        request = RewindRequest(
            stream=topology.stream.name,
            application_name=target.application_name,
            shard_id=shard_id,
            to_sequence=to_sequence,
            to_time=parse_time(to_time) if to_time is not None else None,
            force=force,
            observe_s=observe_s,
        )
        kinesis = kinesis_client(region=topology.stream.region)
        shards = [s["ShardId"] for s in shards_in_lineage_order(kinesis, topology.stream.name)]
        if shard_id not in shards:
            shown = ", ".join(shards[:6]) + (", ..." if len(shards) > 6 else "")
            raise CliError(
                f"no shard {shard_id!r} in stream {topology.stream.name} (shards: {shown})"
            )
        retention = stream_retention_hours(kinesis, topology.stream.name)

        def show_before(lease: Lease) -> None:
            click.echo(f"before: {lease.describe()}")
            if lease.owner and observe_s > 0:
                click.echo(f"watching the lease for {observe_s:g} s (owner {lease.owner})")

        result = rewind(
            request,
            kinesis=kinesis,
            dynamodb=dynamodb_client(region=target.region),
            retention_hours=retention,
            on_before=show_before,
        )
    arrival = result.first_again.arrival.isoformat(timespec="milliseconds")
    click.echo(f"after:  {result.after.describe()}")
    click.echo(
        f"{target.application_name} {shard_id}: the KCL resumes after the checkpoint, so the "
        f"first record applied again is {result.first_again.sequence} (arrived {arrival})"
    )
