"""Family 5: SplitShard and MergeShards under load on the primary path.

The load is produced in thirds while the mapping runs: after the first third a shard
is split, after the second the two last open shards are merged. Items move to child
shards whose records the mapping must apply after their parents' (the applier's
version orders shard index first, so a child's records compare as newer). DynamoDB
throttles a little meanwhile, so redeliveries cross the reshards too.
"""

from __future__ import annotations

from lazyrep.reliability.primary import Faults, PrimaryScenario

RESHARD = PrimaryScenario(
    name="reshard",
    family="5 primary",
    description="SplitShard after a third of the load, MergeShards after two thirds, with "
    "DynamoDB throttling a little",
    faults=Faults(dynamodb=({"fault": "throttle", "operation": "*", "probability": 0.05},)),
    reshard=True,
    seed=31,
)

SCENARIOS = (RESHARD,)
