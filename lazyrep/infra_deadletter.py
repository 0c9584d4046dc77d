"""The dead-letter store in the templates, and what a consumer's role needs to write it.

SQS: a standard queue encrypted with SQS managed keys (SSE-SQS: no KMS permission
needed by senders), 14 days of retention (SQS's maximum), 1 MiB messages (docs/LAMBDA.md
explains why bigger letters fit better), and an alarm on its depth. S3: a bucket with
default encryption, public access blocked, owner-enforced objects, versioning, and
TLS-only access.
"""

from __future__ import annotations

from binlog.topology import DeadLetterConfig
from lazyrep.infra_cfn import (
    Json,
    alarm,
    bucket_objects_arn,
    queue_arn,
    retained,
    statement,
    sub,
)

QUEUE_ID = "DeadLetterQueue"
BUCKET_ID = "DeadLetterBucket"
BUCKET_POLICY_ID = "DeadLetterBucketPolicy"
DEPTH_ALARM_ID = "DeadLetterQueueDepthAlarm"
SQS_MAX_RETENTION_S = 1_209_600
SQS_MAX_MESSAGE_BYTES = 1_048_576


def encrypted_queue(name: str) -> Json:
    """An SQS queue encrypted at rest with SQS managed keys, messages kept 14 days."""
    return retained(
        {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": name,
                "SqsManagedSseEnabled": True,
                "MessageRetentionPeriod": SQS_MAX_RETENTION_S,
                "MaximumMessageSize": SQS_MAX_MESSAGE_BYTES,
            },
        }
    )


def queue_depth_alarm(logical_queue: str, what: str) -> Json:
    """Alarm as soon as one message waits in the queue: each is an incident to look at."""
    return alarm(
        f"{what}: messages are waiting (read them, fix the cause, replay)",
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": [logical_queue, "QueueName"]}},
        threshold=0,
    )


def store_resources(config: DeadLetterConfig) -> dict[str, Json]:
    """The store itself (in `config.region`) and, for SQS, its depth alarm."""
    if config.kind == "sqs":
        return {
            QUEUE_ID: encrypted_queue(config.name),
            DEPTH_ALARM_ID: queue_depth_alarm(QUEUE_ID, f"dead letters in {config.name}"),
        }
    bucket = retained(
        {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": config.name,
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "VersioningConfiguration": {"Status": "Enabled"},
            },
        }
    )
    deny_plain_http = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [
            sub(f"arn:${{AWS::Partition}}:s3:::{config.name}"),
            sub(f"arn:${{AWS::Partition}}:s3:::{config.name}/*"),
        ],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": BUCKET_ID},
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [deny_plain_http]},
        },
    }
    return {BUCKET_ID: bucket, BUCKET_POLICY_ID: policy}


def writer_statements(config: DeadLetterConfig) -> list[Json]:
    """What a consumer needs to park letters (binlog/deadletter.py), on this store only.

    SendMessageBatch is authorised as SendMessage; GetQueueUrl finds the queue by name
    and GetQueueAttributes reads its MaximumMessageSize.
    """
    if config.kind == "sqs":
        return [
            statement(
                "ParkDeadLetters",
                ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"],
                queue_arn(config.name, config.region),
            )
        ]
    return [
        statement(
            "ParkDeadLetters", ["s3:PutObject"], bucket_objects_arn(config.name, config.prefix)
        )
    ]
