"""Families 3, 5 and 6 on the lazy path: the real MultiLangDaemon workers hurt.

kcl-sigkill: two workers of one replica with aggressive lease settings (leases move
between them), a record processor killed with SIGKILL, then the daemon of a worker that
is not the KCL leader killed with SIGKILL again and again through the replay (its
supervisor restarts it). kcl-reshard: SplitShard and MergeShards while the workers
replay. replica-unavailable: every request of the record processors to the replica's
DynamoDB refused for a minute (throttling, 503, 500), then served again.
"""

from __future__ import annotations

from lazyrep.reliability.lazy import DYNAMODB_STORM, KINESIS_STORM, LazyScenario

KCL_SIGKILL = LazyScenario(
    name="kcl-sigkill",
    family="3 lazy",
    description="a record processor and, again and again, a worker's daemon killed with "
    "SIGKILL through the replay; two workers with aggressive lease settings",
    actions=50000,
    max_wcu=400,
    deadline_hours=0.1,
    produce_s=300.0,
    sigkills=6,
    kill_interval_s=5.0,
    child_kill=True,
    steal_leases=True,
    seed=41,
)

KCL_RESHARD = LazyScenario(
    name="kcl-reshard",
    family="5 lazy",
    description="SplitShard after a third of the load, MergeShards after two thirds, two "
    "workers replaying",
    actions=8000,
    max_wcu=400,
    reshard=True,
    seed=51,
)

REPLICA_UNAVAILABLE = LazyScenario(
    name="replica-unavailable",
    family="6 lazy",
    description="the replica's DynamoDB refuses every write of the workers for a minute "
    "(throttling, 503, 500), then comes back",
    actions=8000,
    max_wcu=200,
    outage_s=60.0,
    seed=61,
)

KCL_STORMS = LazyScenario(
    name="kcl-storms",
    family="1 lazy",
    description="throttling and 5xx on a share of the daemons' Kinesis reads (from their "
    "start) and of the record processors' writes to the replica (for 2 minutes)",
    actions=8000,
    max_wcu=400,
    dynamodb_storm=DYNAMODB_STORM,
    kinesis_storm=KINESIS_STORM,
    seed=11,
)

SCENARIOS = (KCL_STORMS, KCL_SIGKILL, KCL_RESHARD, REPLICA_UNAVAILABLE)
