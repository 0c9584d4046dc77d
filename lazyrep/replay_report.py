"""What `lazyrep replay` prints: the plan before it starts, and what it did at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lazyrep.replay_plan import ReplayPlan, iso
from lazyrep.replay_run import MAX_LISTED, RunReport
from lazyrep.replay_state import resume_command

_TABLE_COLUMNS = ("applied", "skipped_stale", "condition_failed", "not_applied")
_DRY_COLUMNS = ("PutItem", "UpdateItem", "DeleteItem")


def plan_lines(
    plan: ReplayPlan, *, rate_wcu: float | None, state_path: str | None, resumed: bool
) -> list[str]:
    """Exactly what the replay will do, before it does anything."""
    request = plan.request
    verb = "would replay (dry run: nothing is written)" if request.dry_run else "will replay"
    lines = [f"lazyrep replay {verb}:"]
    lines.append(
        f"  stream   {plan.stream} in {plan.stream_region} (Kinesis at {plan.kinesis_endpoint}), "
        f"keeps records {plan.retention_hours} h"
    )
    if resumed:
        lines.append("  from     where the previous run stopped (per shard, below)")
    elif request.shard is not None:
        start = plan.shards[0].start.describe() if plan.shards else "-"
        rest = "only (the bound is in it)" if request.to_sequence else "then its descendants"
        lines.append(f"  from     {request.shard} {start}, {rest}")
    elif request.from_time is not None:
        lines.append(f"  from     {iso(request.from_time)} in every shard (AT_TIMESTAMP)")
    else:
        lines.append("  from     the oldest record of every shard (TRIM_HORIZON)")
    lines.append(f"  to       {plan.bound}")
    lines.append(f"  shards   {len(plan.shards)} to read, parents before children:")
    for shard in plan.shards:
        after = f" after {', '.join(shard.parents)}" if shard.parents else ""
        keys = " (only keys of the starting shard)" if shard.hash_range is not None else ""
        state = "closed" if shard.closed else "open"
        lines.append(f"           {shard.shard_id} ({state}) {shard.start.describe()}{after}{keys}")
    for shard_id, status in sorted(plan.done.items()):
        lines.append(f"           {shard_id}: {status.value} in an earlier run")
    lines.append(
        f"  into     region {plan.target_region} (DynamoDB at {plan.dynamodb_endpoint}), "
        f"tombstones in {plan.tombstone_table}"
    )
    for table in plan.tables:
        arrow = table.primary if table.primary == table.target else f"{table.primary} -> "
        target = "" if table.primary == table.target else table.target
        lines.append(f"           {arrow}{target}")
    if plan.other_tables:
        lines.append(f"  skipping {', '.join(plan.other_tables)} (not in --tables)")
    lines.append(
        "  writes   the shared idempotent applier: records already applied are skipped as stale"
        + (" (--force: own tombstones)" if request.force else "")
    )
    lines.append(f"  rate     {f'{rate_wcu:g} WCU/s' if rate_wcu else 'unlimited'}")
    for note in plan.notes:
        lines.append(f"  note     {note}")
    if state_path is not None:
        lines.append(f"  state    {state_path}")
        lines.append(f"  resume   {resume_command_for(state_path)}")
    return lines


def resume_command_for(state_path: str) -> str:
    """The resume command for a state file path."""
    return resume_command(Path(state_path))


def summary_lines(plan: ReplayPlan, report: RunReport) -> list[str]:
    """What the run did: records read, and per table what became of them."""
    dry = plan.request.dry_run
    verdict = {"finished": "finished", "interrupted": "stopped", "failed": "failed"}[report.status]
    lines = [
        f"lazyrep replay {verdict} after {report.elapsed_s:.1f} s: {report.records_read} records "
        f"read ({report.user_records} actions), {report.filtered_tables} of other tables, "
        f"{report.filtered_keys} of other shards' keys, {report.undecodable} undecodable"
        + ("" if dry else f", {report.wcu} WCU")
    ]
    columns = _DRY_COLUMNS if dry else _TABLE_COLUMNS
    header = ["table", "target", *columns]
    rows = [header]
    for primary, counts in report.tables.items():
        values = (
            [counts.actions.get(c, 0) for c in columns]
            if dry
            else [getattr(counts, c) for c in columns]
        )
        rows.append([primary, counts.target, *map(str, values)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append(("  " + "  ".join(cells)).rstrip())
    if dry:
        for primary, counts in report.tables.items():
            for sample in counts.samples:
                lines.append(f"  sample   {sample}")
            if not counts.samples:
                lines.append(f"  sample   {primary}: no records")
    for shard_id, status in sorted(report.shards.items()):
        last = report.last_sequence.get(shard_id)
        at = f", last record {last}" if last else ""
        lines.append(f"  shard    {shard_id}: {status}{at}")
    if report.not_applied_total:
        lines.append(
            f"  NOT APPLIED: {report.not_applied_total} records (not parked again: the live "
            "consumers parked them); first ones:"
        )
        for entry in report.not_applied[:MAX_LISTED]:
            lines.append(
                f"    {entry['shard_id']}/{entry['sequence_number']}/"
                f"{entry['subsequence_number']} {entry['table'] or '-'}: {entry['reason']}: "
                f"{entry['detail'][:160]}"
            )
    return lines


def summary_json(plan: ReplayPlan, report: RunReport, *, state_path: str | None) -> dict[str, Any]:
    """The summary for scripts (`--json`)."""
    return {
        "status": report.status,
        "dry_run": plan.request.dry_run,
        "stream": plan.stream,
        "bound": plan.bound,
        "elapsed_s": round(report.elapsed_s, 3),
        "records_read": report.records_read,
        "user_records": report.user_records,
        "filtered_tables": report.filtered_tables,
        "filtered_keys": report.filtered_keys,
        "undecodable": report.undecodable,
        "not_applied_total": report.not_applied_total,
        "wcu": report.wcu,
        "tables": {
            primary: {
                "target": counts.target,
                "records": counts.records,
                "applied": counts.applied,
                "skipped_stale": counts.skipped_stale,
                "condition_failed": counts.condition_failed,
                "not_applied": counts.not_applied,
                "actions": dict(counts.actions),
                "samples": counts.samples,
            }
            for primary, counts in report.tables.items()
        },
        "shards": report.shards,
        "last_sequence": report.last_sequence,
        "not_applied": report.not_applied,
        "state_file": state_path,
        "resume": resume_command_for(state_path)
        if state_path and report.status != "finished"
        else None,
    }
