"""Families 1 and 2: throttling storms, 5xx bursts and cut connections on every hop of the
primary path (the producer's PutRecords, the mapping's reads, the handler's DynamoDB).

Each rule list starts with a counted burst (a storm: every request refused for a while)
and goes on with random faults; the producer retries up to 60 times, the handler's
DynamoDB calls 3 times before the record is delivered again. A `cut_after` request
reached the server: retried, it is written twice (the stream then holds duplicates
that the applier must skip, and DynamoDB sees a write it already made).
"""

from __future__ import annotations

from lazyrep.reliability.primary import Faults, PrimaryScenario

THROTTLING = PrimaryScenario(
    name="throttling",
    family="1 primary",
    description="throttling storms and random throttles on Kinesis (producer, reader) and "
    "DynamoDB (handler), plus partially failed PutRecords",
    faults=Faults(
        producer_kinesis=(
            {"fault": "throttle", "operation": "PutRecords", "count": 8},
            {"fault": "throttle", "operation": "PutRecords", "probability": 0.25},
            {
                "fault": "partial_failure",
                "operation": "PutRecords",
                "probability": 0.3,
                "failed_fraction": 0.2,
            },
        ),
        reader_kinesis=(
            {"fault": "throttle", "operation": "GetRecords", "count": 5},
            {"fault": "throttle", "operation": "GetRecords", "probability": 0.2},
        ),
        dynamodb=(
            {"fault": "throttle", "operation": "*", "count": 20},
            {"fault": "throttle", "operation": "*", "probability": 0.15},
            {
                "fault": "throttle",
                "operation": "*",
                "probability": 0.05,
                "error_code": "ThrottlingException",
            },
        ),
    ),
    seed=11,
    must_fire=("throttle", "partial_failure"),
)

SERVER_ERRORS = PrimaryScenario(
    name="server-errors",
    family="1 primary",
    description="bursts of 500/503 answers from Kinesis (producer, reader) and DynamoDB (handler)",
    faults=Faults(
        producer_kinesis=(
            {"fault": "server_error", "operation": "PutRecords", "count": 6},
            {"fault": "server_error", "operation": "PutRecords", "probability": 0.2},
            {
                "fault": "server_error",
                "operation": "PutRecords",
                "probability": 0.1,
                "error_code": "ServiceUnavailable",
            },
        ),
        reader_kinesis=(
            {"fault": "server_error", "operation": "GetRecords", "count": 5},
            {"fault": "server_error", "operation": "GetRecords", "probability": 0.15},
        ),
        dynamodb=(
            {"fault": "server_error", "operation": "*", "count": 15},
            {"fault": "server_error", "operation": "*", "probability": 0.15},
            {
                "fault": "server_error",
                "operation": "*",
                "probability": 0.05,
                "error_code": "ServiceUnavailable",
            },
        ),
    ),
    seed=12,
    must_fire=("server_error",),
)

CUT_BEFORE = PrimaryScenario(
    name="cut-before",
    family="2 primary",
    description="connections reset mid-request before the server acted, on every hop",
    faults=Faults(
        producer_kinesis=({"fault": "cut_before", "operation": "PutRecords", "probability": 0.15},),
        reader_kinesis=({"fault": "cut_before", "operation": "GetRecords", "probability": 0.1},),
        dynamodb=({"fault": "cut_before", "operation": "*", "probability": 0.1},),
    ),
    seed=13,
    must_fire=("cut_before",),
)

CUT_AFTER = PrimaryScenario(
    name="cut-after",
    family="2 primary",
    description="connections reset after the server acted (the client retries what was "
    "done: duplicate records in the stream, repeated writes to DynamoDB), on every hop",
    faults=Faults(
        producer_kinesis=({"fault": "cut_after", "operation": "PutRecords", "probability": 0.15},),
        reader_kinesis=({"fault": "cut_after", "operation": "GetRecords", "probability": 0.1},),
        dynamodb=({"fault": "cut_after", "operation": "*", "probability": 0.1},),
    ),
    seed=14,
    must_fire=("cut_after",),
)

SCENARIOS = (THROTTLING, SERVER_ERRORS, CUT_BEFORE, CUT_AFTER)
