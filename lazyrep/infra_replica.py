"""One replica target's template: its tables, and the KCL workers on ECS Fargate.

Deployed in the replica's region. Holds the replica tables (the topology's mapped
names), the tombstone and status tables, an ECS cluster, the worker's task definition
(stopTimeout above the image's shutdownGraceMillis) and service, the task role (least
privilege: the stream read across regions, the KCL's three lease tables, the replica
tables, the dead letters, metrics in two namespaces), and an alarm on the replica's
lag against its deadline (the worker's `IteratorAgeMs`, kcl_consumer/status.py).
"""

from __future__ import annotations

from binlog.topology import ReplicaTarget, Topology
from kcl_consumer.status import NAMESPACE, status_table_name
from lazyrep.infra_cfn import (
    ALARM_TOPIC_PARAMETER,
    HAS_ALARM_TOPIC,
    Json,
    alarm,
    alarm_topic_parameter,
    get_att,
    if_,
    kms_decrypt,
    log_group_arn,
    logical_id,
    ref,
    retained,
    role,
    statement,
    stream_arn,
    table_arn,
    template,
)
from lazyrep.infra_deadletter import writer_statements as dead_letter_statements
from lazyrep.infra_settings import InfraSettings
from lazyrep.infra_tables import data_table, status_table, tombstone_table

IMAGE_PROPERTIES_DIR = "/etc/lazyrep/properties"
"""Where the worker image keeps one properties file per replica target (Dockerfile)."""
CONTAINER_NAME = "worker"
KCL_LEASE_TABLE_SUFFIXES = ("", "-CoordinatorState", "-WorkerMetricStats")
"""KCL 3 creates three tables per application: leases, coordinator state, worker metrics."""
CREATE_TOMBSTONES = "CreateTombstoneTable"
TOMBSTONE_ID = "TombstoneTable"
STATUS_ID = "StatusTable"
CLUSTER_ID = "Cluster"
TASK_ROLE_ID = "WorkerTaskRole"
EXECUTION_ROLE_ID = "WorkerExecutionRole"
TASK_DEFINITION_ID = "WorkerTaskDefinition"
SERVICE_ID = "WorkerService"
LOG_GROUP_ID = "WorkerLogGroup"
LAG_ALARM_ID = "ReplicaLagAlarm"


def log_group_name(replica: ReplicaTarget) -> str:
    """The worker's log group."""
    return f"/lazyrep/{replica.name}"


def lag_alarm_threshold_ms(replica: ReplicaTarget, settings: InfraSettings) -> float:
    """The lag that sets the alarm off: a fraction of the replica's deadline."""
    return round(replica.deadline_hours * 3_600_000 * settings.replica_lag_alarm_fraction)


def _parameters() -> dict[str, Json]:
    topic, _ = alarm_topic_parameter()
    return {
        "ImageUri": {
            "Type": "String",
            "Description": "The worker image (Dockerfile), built with this topology and "
            "STOP_TIMEOUT equal to the task's stopTimeout.",
        },
        "ImageRepositoryArn": {
            "Type": "String",
            "AllowedPattern": "^arn:aws[a-z-]*:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$",
            "Description": "The ECR repository of ImageUri: the only one the tasks may pull.",
        },
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets of the tasks (private, with NAT or VPC endpoints).",
        },
        "SecurityGroups": {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups of the tasks (outbound HTTPS only; no inbound).",
        },
        "AssignPublicIp": {
            "Type": "String",
            "Default": "DISABLED",
            "AllowedValues": ["ENABLED", "DISABLED"],
            "Description": "ENABLED only for public subnets without NAT.",
        },
        CREATE_TOMBSTONES: {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "false when another stack of this account and region (the "
            "primary's, another replica's) already has the tombstone table.",
        },
        ALARM_TOPIC_PARAMETER: topic,
    }


def task_role_statements(
    topology: Topology, replica: ReplicaTarget, settings: InfraSettings
) -> list[Json]:
    """The worker's task role: docs/ECS.md's policy, every data-plane resource by ARN."""
    app = replica.application_name
    lease_tables = [table_arn(app + suffix) for suffix in KCL_LEASE_TABLE_SUFFIXES]
    lease_tables.insert(1, table_arn(app, suffix="/index/*"))
    replica_tables = [table_arn(replica.replica_table(name)) for name in topology.tables]
    statements = [
        # Shard sync, the retention and lineage checks, and the reads; in the stream's region.
        statement(
            "ReadTheStream",
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            stream_arn(topology.stream.name, topology.stream.region),
        ),
        # The KCL creates its lease tables on first start, adds and queries an index on the
        # lease table, and reads and writes leases, the leader lock and worker metrics.
        statement(
            "KclLeaseTables",
            [
                "dynamodb:CreateTable",
                "dynamodb:DeleteItem",
                "dynamodb:DescribeTable",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:UpdateItem",
                "dynamodb:UpdateTable",
            ],
            lease_tables,
        ),
        statement(
            "ApplyToTheReplicaTables",
            ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            replica_tables,
        ),
        statement(
            "Tombstones",
            ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"],
            table_arn(topology.applier.tombstone_table),
        ),
        # The stack creates the status table: the worker only checks and writes it.
        statement(
            "StatusTable",
            ["dynamodb:DescribeTable", "dynamodb:PutItem"],
            table_arn(status_table_name(app)),
        ),
        # PutMetricData has no resource-level permissions: "*" with the namespaces only.
        statement(
            "Metrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringEquals": {"cloudwatch:namespace": [app, NAMESPACE]}},
        ),
    ]
    if topology.dead_letter is not None:
        statements[4:4] = dead_letter_statements(topology.dead_letter)
    if settings.stream_kms_key_arn is not None:
        statements.append(
            kms_decrypt(settings.stream_kms_key_arn, "kinesis", topology.stream.region)
        )
    return statements


def _execution_role(replica: ReplicaTarget) -> Json:
    statements = [
        # GetAuthorizationToken has no resource-level permissions (AWS requires "*").
        statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        statement(
            "PullTheWorkerImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            ref("ImageRepositoryArn"),
        ),
        statement(
            "WriteLogs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            log_group_arn(log_group_name(replica)),
        ),
    ]
    return role("ecs-tasks.amazonaws.com", "lazyrep-worker-execution", statements)


def _task_definition(replica: ReplicaTarget, settings: InfraSettings) -> Json:
    container = {
        "Name": CONTAINER_NAME,
        "Image": ref("ImageUri"),
        "Essential": True,
        "Command": ["--properties", f"{IMAGE_PROPERTIES_DIR}/{replica.name}.properties"],
        # Above the image's shutdownGraceMillis (STOP_TIMEOUT - 10 s): the JVM checkpoints,
        # releases its leases and exits before ECS's SIGKILL.
        "StopTimeout": settings.stop_timeout_s,
        "Environment": [
            {"Name": "LAZYREP_CLOUDWATCH_METRICS", "Value": "true"},
            {"Name": "LAZYREP_LOG_LEVEL", "Value": "INFO"},
        ],
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": ref(LOG_GROUP_ID),
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": CONTAINER_NAME,
            },
        },
    }
    return {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": f"lazyrep-{replica.name}",
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": str(settings.task_cpu),
            "Memory": str(settings.task_memory_mb),
            "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
            "TaskRoleArn": get_att(TASK_ROLE_ID, "Arn"),
            "ExecutionRoleArn": get_att(EXECUTION_ROLE_ID, "Arn"),
            "ContainerDefinitions": [container],
        },
    }


def _service(settings: InfraSettings) -> Json:
    return {
        "Type": "AWS::ECS::Service",
        "Properties": {
            "Cluster": ref(CLUSTER_ID),
            "TaskDefinition": ref(TASK_DEFINITION_ID),
            "LaunchType": "FARGATE",
            "DesiredCount": settings.desired_tasks,
            # New tasks start before old ones stop; the leader moves leases to them.
            "DeploymentConfiguration": {
                "MinimumHealthyPercent": 100,
                "MaximumPercent": 200,
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
            },
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": ref("Subnets"),
                    "SecurityGroups": ref("SecurityGroups"),
                    "AssignPublicIp": ref("AssignPublicIp"),
                }
            },
            "PropagateTags": "SERVICE",
            "EnableExecuteCommand": False,
        },
    }


def replica_template(topology: Topology, name: str, settings: InfraSettings) -> Json:
    """The template for replica target `name`, deployed in its region.

    Raises:
        KeyError: no such replica in the topology.
    """
    replica = topology.replicas[name]
    resources: dict[str, Json] = {}
    taken = {TOMBSTONE_ID, STATUS_ID}
    for primary, schema in topology.tables.items():
        table = replica.replica_table(primary)
        resources[logical_id("Table", table, taken)] = data_table(table, schema)
    tombstones = tombstone_table(topology.applier.tombstone_table)
    tombstones["Condition"] = CREATE_TOMBSTONES
    resources[TOMBSTONE_ID] = tombstones
    resources[STATUS_ID] = status_table(status_table_name(replica.application_name))
    resources[LOG_GROUP_ID] = retained(
        {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": log_group_name(replica),
                "RetentionInDays": settings.log_retention_days,
            },
        }
    )
    resources[CLUSTER_ID] = {
        "Type": "AWS::ECS::Cluster",
        "Properties": {
            "ClusterName": f"lazyrep-{replica.name}",
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
        },
    }
    resources[TASK_ROLE_ID] = role(
        "ecs-tasks.amazonaws.com",
        "lazyrep-worker",
        task_role_statements(topology, replica, settings),
    )
    resources[EXECUTION_ROLE_ID] = _execution_role(replica)
    resources[TASK_DEFINITION_ID] = _task_definition(replica, settings)
    resources[SERVICE_ID] = _service(settings)
    threshold = lag_alarm_threshold_ms(replica, settings)
    resources[LAG_ALARM_ID] = alarm(
        f"Replica {replica.name} is {settings.replica_lag_alarm_fraction:.0%} of the way to "
        f"its {replica.deadline_hours:g} h deadline: raise max_wcu or look at the workers",
        NAMESPACE,
        "IteratorAgeMs",
        {"Replica": replica.name},
        threshold=threshold,
    )
    resources["ReplicaDeadLetterFailuresAlarm"] = alarm(
        f"Replica {replica.name} could not write dead letters (the workers retry)",
        NAMESPACE,
        "DeadLetterFailures",
        {"Replica": replica.name},
        threshold=0,
        statistic="Sum",
    )
    _, has_topic = alarm_topic_parameter()
    conditions = {
        HAS_ALARM_TOPIC: has_topic,
        CREATE_TOMBSTONES: {"Fn::Equals": [ref(CREATE_TOMBSTONES), "true"]},
    }
    outputs = {
        "ClusterName": {"Value": ref(CLUSTER_ID)},
        "ServiceName": {"Value": get_att(SERVICE_ID, "Name")},
        "TaskRoleArn": {"Value": get_att(TASK_ROLE_ID, "Arn")},
        "TombstoneTableCreated": {"Value": if_(CREATE_TOMBSTONES, "true", "false")},
    }
    return template(
        f"lazy-replication replica {replica.name} ({replica.region}) of stream "
        f"{topology.stream.name} ({topology.stream.region}): replica tables and the KCL "
        "workers on ECS Fargate. Generated by `lazyrep deploy templates`: edit the topology, "
        "not this file.",
        _parameters(),
        conditions,
        resources,
        outputs,
    )
