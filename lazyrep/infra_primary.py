"""The primary region's template: the stream, the primary tables, the applier Lambda.

Holds the Kinesis stream (KMS encrypted, the topology's retention and shard count),
the primary tables and the tombstone table, the Lambda that applies the stream with
its event source mapping (settings of docs/LAMBDA.md), the mapping's on-failure queue,
the dead-letter store when it lives in this region, and the alarms: the Lambda's
iterator age, the stream's oldest reader against the retention, dead letters.
"""

from __future__ import annotations

from binlog.topology import Topology
from kcl_consumer.status import NAMESPACE
from lambda_consumer.settings import ENV_CONSUMER_NAME, ENV_TOPOLOGY
from lazyrep.infra_cfn import (
    ALARM_TOPIC_PARAMETER,
    HAS_ALARM_TOPIC,
    Json,
    alarm,
    alarm_topic_parameter,
    get_att,
    kms_decrypt,
    log_group_arn,
    logical_id,
    queue_arn,
    ref,
    retained,
    role,
    statement,
    table_arn,
    template,
)
from lazyrep.infra_deadletter import encrypted_queue, queue_depth_alarm, store_resources
from lazyrep.infra_deadletter import writer_statements as dead_letter_statements
from lazyrep.infra_settings import InfraSettings
from lazyrep.infra_tables import data_table, tombstone_table

HANDLER = "lambda_consumer.handler.handle"
"""The function's handler (a unit test imports it, so a rename cannot go unnoticed)."""
SERVICE = "lazyrep-primary"
"""The handler's Powertools service: its metrics' `service` dimension (tested equal)."""
RUNTIME = "python3.11"
AWS_MANAGED_KINESIS_KEY = "alias/aws/kinesis"
STREAM_ID = "Stream"
FUNCTION_ID = "ApplierFunction"
ROLE_ID = "ApplierRole"
MAPPING_ID = "EventSourceMapping"
LOG_GROUP_ID = "ApplierLogGroup"
FAILURE_QUEUE_ID = "MappingFailureQueue"
TOMBSTONE_ID = "TombstoneTable"


class InfraError(ValueError):
    """The topology cannot be deployed as asked (names the field and why)."""


def failure_queue_name(topology: Topology) -> str:
    """The mapping's on-failure destination: separate from the dead letters (docs/LAMBDA.md)."""
    return f"{topology.stream.name}-esm-failures"[:80]


def log_group_name(topology: Topology) -> str:
    """The applier's log group."""
    return f"/lazyrep/{topology.stream.name}/primary"


def _parameters() -> dict[str, Json]:
    topic, _ = alarm_topic_parameter()
    return {
        "CodeBucket": {
            "Type": "String",
            "Description": "S3 bucket (in this region) holding the applier's deployment zip.",
        },
        "CodeKey": {
            "Type": "String",
            "Description": "Key of the zip: the project, its dependencies and topology.toml.",
        },
        "TopologyPath": {
            "Type": "String",
            "Default": "/var/task/topology.toml",
            "Description": "The topology file inside the zip (the one these templates came from).",
        },
        ALARM_TOPIC_PARAMETER: topic,
    }


def _role_statements(topology: Topology, settings: InfraSettings) -> list[Json]:
    stream = topology.stream
    names = [*topology.tables, topology.applier.tombstone_table]
    statements = [
        # The mapping polls with the function's role; ListShards is also the lineage check.
        statement(
            "ReadTheStream",
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            get_att(STREAM_ID, "Arn"),
        ),
        # The applier's conditional writes and its consistent reads of tombstones.
        statement(
            "ApplyToThePrimaryTables",
            ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [table_arn(name) for name in names],
        ),
        # The mapping sends discarded batches' metadata with the function's role.
        statement(
            "ReportDiscardedBatches",
            ["sqs:SendMessage"],
            get_att(FAILURE_QUEUE_ID, "Arn"),
        ),
        statement(
            "WriteLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            log_group_arn(log_group_name(topology)),
        ),
    ]
    if topology.dead_letter is not None:
        statements.extend(dead_letter_statements(topology.dead_letter))
    if settings.stream_kms_key_arn is not None:
        statements.append(kms_decrypt(settings.stream_kms_key_arn, "kinesis", stream.region))
    return statements


def _function(topology: Topology, settings: InfraSettings) -> Json:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Description": f"lazy-replication: applies {topology.stream.name} to the primary",
            "Runtime": RUNTIME,
            "Handler": HANDLER,
            "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref("CodeKey")},
            "Role": get_att(ROLE_ID, "Arn"),
            "Timeout": settings.lambda_timeout_s,
            "MemorySize": settings.lambda_memory_mb,
            "Architectures": ["x86_64"],
            "LoggingConfig": {"LogGroup": ref(LOG_GROUP_ID), "LogFormat": "Text"},
            "Environment": {
                "Variables": {
                    ENV_TOPOLOGY: ref("TopologyPath"),
                    ENV_CONSUMER_NAME: "lambda:primary",
                    "POWERTOOLS_SERVICE_NAME": SERVICE,
                    "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
                }
            },
        },
    }


def _mapping(settings: InfraSettings) -> Json:
    return {
        "Type": "AWS::Lambda::EventSourceMapping",
        # The role's policy must exist before the mapping first polls the stream.
        "DependsOn": [ROLE_ID],
        "Properties": {
            "EventSourceArn": get_att(STREAM_ID, "Arn"),
            "FunctionName": ref(FUNCTION_ID),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": settings.batch_size,
            "MaximumBatchingWindowInSeconds": settings.batching_window_s,
            "ParallelizationFactor": settings.parallelization_factor,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": settings.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": settings.maximum_record_age_s,
            "DestinationConfig": {"OnFailure": {"Destination": get_att(FAILURE_QUEUE_ID, "Arn")}},
        },
    }


def _alarms(topology: Topology, settings: InfraSettings) -> dict[str, Json]:
    retention_limit_h = topology.stream.retention_hours - topology.safety_margin_hours
    alarms = {
        "ApplierIteratorAgeAlarm": alarm(
            "The primary is behind the stream: the applier's oldest record is older than "
            f"{settings.primary_iterator_age_alarm_s} s",
            "AWS/Lambda",
            "IteratorAge",
            {"FunctionName": ref(FUNCTION_ID)},
            threshold=settings.primary_iterator_age_alarm_s * 1000,
        ),
        "StreamOldestReaderAlarm": alarm(
            "A reader of the stream (the applier or a replica) is past the retention minus "
            f"the safety margin ({retention_limit_h:g} h): records are about to expire unread",
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            {"StreamName": ref(STREAM_ID)},
            threshold=retention_limit_h * 3_600_000,
        ),
        "DeadLetterFailuresAlarm": alarm(
            "The applier could not write dead letters (the records are being retried)",
            NAMESPACE,
            "DeadLetterFailures",
            {"service": SERVICE},
            threshold=0,
            statistic="Sum",
        ),
        "MappingFailuresAlarm": queue_depth_alarm(
            FAILURE_QUEUE_ID, "the event source mapping discarded batches: replay them"
        ),
    }
    if topology.dead_letter is not None and topology.dead_letter.kind == "s3":
        alarms["RecordsParkedAlarm"] = alarm(
            "The applier parked records in the dead-letter bucket",
            NAMESPACE,
            "RecordsParked",
            {"service": SERVICE},
            threshold=0,
            statistic="Sum",
        )
    return alarms


def primary_template(topology: Topology, settings: InfraSettings) -> Json:
    """The template for the stream's region.

    Raises:
        InfraError: the topology has no dead-letter store (the Lambda consumer needs one),
            or a setting does not fit it.
    """
    if topology.dead_letter is None:
        raise InfraError(
            "dead_letter: the Lambda consumer parks records it cannot apply and needs a "
            "[dead_letter] store in the topology"
        )
    try:
        settings.check_against(topology)
    except ValueError as exc:
        raise InfraError(str(exc)) from exc
    stream = topology.stream
    key = settings.stream_kms_key_arn or AWS_MANAGED_KINESIS_KEY
    resources: dict[str, Json] = {
        STREAM_ID: retained(
            {
                "Type": "AWS::Kinesis::Stream",
                "Properties": {
                    "Name": stream.name,
                    "ShardCount": stream.shards,
                    "RetentionPeriodHours": stream.retention_hours,
                    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": key},
                },
            }
        )
    }
    taken = {STREAM_ID, TOMBSTONE_ID}
    for name, schema in topology.tables.items():
        resources[logical_id("Table", name, taken)] = data_table(name, schema)
    resources[TOMBSTONE_ID] = tombstone_table(topology.applier.tombstone_table)
    if topology.dead_letter.region == stream.region:
        resources.update(store_resources(topology.dead_letter))
    resources[FAILURE_QUEUE_ID] = encrypted_queue(failure_queue_name(topology))
    resources[LOG_GROUP_ID] = retained(
        {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": log_group_name(topology),
                "RetentionInDays": settings.log_retention_days,
            },
        }
    )
    resources[ROLE_ID] = role(
        "lambda.amazonaws.com", "lazyrep-primary-applier", _role_statements(topology, settings)
    )
    resources[FUNCTION_ID] = _function(topology, settings)
    resources[MAPPING_ID] = _mapping(settings)
    resources.update(_alarms(topology, settings))
    _, has_topic = alarm_topic_parameter()
    outputs = {
        "StreamArn": {"Value": get_att(STREAM_ID, "Arn")},
        "ApplierFunctionName": {"Value": ref(FUNCTION_ID)},
        "MappingFailureQueueArn": {"Value": queue_arn(failure_queue_name(topology))},
        "ApplierLogGroup": {"Value": ref(LOG_GROUP_ID)},
    }
    return template(
        f"lazy-replication primary region ({stream.region}): stream {stream.name}, "
        f"{len(topology.tables)} primary tables, the applier Lambda. Generated by "
        "`lazyrep deploy templates`: edit the topology, not this file.",
        _parameters(),
        {HAS_ALARM_TOPIC: has_topic},
        resources,
        outputs,
    )


def dead_letter_template(topology: Topology) -> Json:
    """The dead-letter store, for a `[dead_letter]` in another region than the stream."""
    if topology.dead_letter is None:
        raise InfraError("dead_letter: the topology has none")
    topic, has_topic = alarm_topic_parameter()
    config = topology.dead_letter
    return template(
        f"lazy-replication dead letters ({config.region}): {config.kind} {config.name}. "
        "Generated by `lazyrep deploy templates`.",
        {ALARM_TOPIC_PARAMETER: topic},
        {HAS_ALARM_TOPIC: has_topic},
        store_resources(config),
        {},
    )
