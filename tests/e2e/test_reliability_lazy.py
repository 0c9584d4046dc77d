"""The lazy-path reliability scenarios, small, in one run of the real MultiLangDaemon.

GIVEN a 4-shard stream, a replica `eu` in another region and two workers of it
(`lazyrep replica run`, aggressive lease settings so that leases move), the replica's
DynamoDB reached by the record processors through a fault proxy;
WHEN the suite's workload (with its ledger) is produced, split after a third and merged
after two thirds, a record processor is killed with SIGKILL, a non-leader worker's daemon
is killed with SIGKILL twice (its supervisor restarts it), and the replica's DynamoDB
refuses every request of the record processors for 15 s, then throttles and fails (5xx)
a share of them and of the daemons' Kinesis reads for 15 s;
THEN the replica equals the reference model: nothing lost, nothing applied twice,
nothing diverged, nothing parked; and every fault really happened.
The full-scale scenarios are `lazyrep bench reliability --scenario kcl-sigkill ...`.
"""

from __future__ import annotations

import sys

import pytest

from emulators.stack import LocalStack
from lazyrep.reliability.framework import Scale
from lazyrep.reliability.lazy import DYNAMODB_STORM, KINESIS_STORM, LazyScenario

pytestmark = [pytest.mark.daemon, pytest.mark.wire]

ALL_AT_ONCE = LazyScenario(
    name="lazy-small",
    family="3, 5, 6 lazy",
    description="every lazy-path fault, small",
    actions=1200,
    writers=4,
    workers=2,
    max_wcu=40,
    deadline_hours=0.05,
    sigkills=2,
    kill_interval_s=2.0,
    child_kill=True,
    reshard=True,
    outage_s=15.0,
    dynamodb_storm=DYNAMODB_STORM,
    kinesis_storm=KINESIS_STORM,
    storm_s=15.0,
    steal_leases=True,
    seed=7,
    converge_timeout_s=240.0,
)


@pytest.mark.timeout(600)
def test_lazy_path_survives_kills_reshards_and_an_outage(stack_env: LocalStack) -> None:
    result = ALL_AT_ONCE.run(Scale(1.0), lambda message: print(message, file=sys.stderr))
    doc = result.to_json()
    print(doc, file=sys.stderr)

    assert (result.lost, result.duplicated, result.diverged, result.parked) == (0, 0, 0, 0), doc
    assert result.applied == result.produced >= 1000
    assert result.failures == [], doc
    # the faults really happened
    assert doc["kills"] == 2
    assert doc["restarts"] >= 2
    assert doc["child_kill"]["killed"], doc["child_kill"]
    assert len(doc["reshards"]) == 2
    assert doc["outage"]["throttled"] + doc["outage"]["server_errors"] > 0
    for storm in ("dynamodb", "kinesis"):
        assert doc["storms"][storm]["throttled"] + doc["storms"][storm]["server_errors"] > 0
    assert doc["left_behind"] == []
