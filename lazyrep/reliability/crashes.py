"""Family 4: the Lambda function crashing mid-batch, and a partial batch failure on every batch.

crash: a quarter of the invocations apply the first half of their batch and then raise;
Lambda (the local mapping, bisecting on error, retrying for ever) delivers the whole
batch again, so the applied half comes back and must be skipped, not applied twice.
partial: every batch of more than one record is applied whole, then reports its middle
record as failed; the mapping delivers that record and every later one again.
"""

from __future__ import annotations

from lazyrep.reliability.primary import PrimaryScenario

HANDLER_CRASH = PrimaryScenario(
    name="handler-crash",
    family="4 primary",
    description="the function applies half a batch and crashes, in a quarter of invocations",
    mode="crash",
    seed=21,
)

PARTIAL_EVERY_BATCH = PrimaryScenario(
    name="partial-every-batch",
    family="4 primary",
    description="every batch reports a partial failure after applying everything",
    mode="partial",
    seed=22,
)

SCENARIOS = (HANDLER_CRASH, PARTIAL_EVERY_BATCH)
