"""The generated templates deploy into moto's CloudFormation over HTTP, as they are.

moto's CloudFormation creates the resources in moto's own backends: the stream too, so
it is described through the moto server's URL, not kinesalite's. What moto cannot
create is filtered out of a copy of the template, and the filtered set is pinned, so it
cannot silently grow; what moto accepts but does not apply is pinned the same way (the
unit tests check those properties in the templates themselves).
"""

from __future__ import annotations

import ast
import io
import tomllib
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from binlog.topology import Topology, parse_topology
from emulators.stack import LocalStack
from kcl_consumer.status import status_table_name
from lazyrep.infra import InfraSettings, StackFile, render_templates
from lazyrep.infra_primary import HANDLER, failure_queue_name

pytestmark = pytest.mark.wire

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "topology.toml"
ACCOUNT = "123456789012"  # moto's default account
# Module scoped: set up before the per-test environment isolation, so keys are explicit.
SESSION = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
UNSUPPORTED_BY_MOTO = {"AWS::CloudWatch::Alarm"}
"""Resource types moto's CloudFormation (5.x) cannot create: deployed filtered out."""


@dataclass(frozen=True)
class Deployed:
    topology: Topology
    files: dict[str, StackFile]
    filtered: set[str]
    endpoint: str
    stacks: dict[str, dict[str, Any]]

    def client(self, service: str, region: str) -> Any:
        # Explicitly moto's URL: Kinesis's variable points at kinesalite.
        return SESSION.client(service, region_name=region, endpoint_url=self.endpoint)


def _unique_topology() -> Topology:
    """The example topology with names no other test of the session uses."""
    tag = uuid.uuid4().hex[:8]
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["stream"]["name"] = f"infra-{tag}"
    raw["tables"] = {f"{name}-{tag}": spec for name, spec in raw["tables"].items()}
    for name, replica in raw["replicas"].items():
        replica["application_name"] = f"lazyrep-{name}-{tag}"
        replica["tables"] = {
            f"{primary}-{tag}": f"{renamed}-{tag}"
            for primary, renamed in replica.get("tables", {}).items()
        }
    raw["dead_letter"]["name"] = f"infra-{tag}-dead-letters"
    raw["applier"] = {"tombstone_table": f"tombstones-{tag}"}
    return parse_topology(raw)


def _filtered(body: dict[str, Any], removed: set[str]) -> dict[str, Any]:
    copy = dict(body)
    resources = {}
    for name, resource in body["Resources"].items():
        if resource["Type"] in UNSUPPORTED_BY_MOTO:
            removed.add(resource["Type"])
        else:
            resources[name] = resource
    copy["Resources"] = resources
    return copy


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("topology.toml", EXAMPLE.read_text(encoding="utf-8"))
    return buffer.getvalue()


def _parameters(stack_file: StackFile, code_bucket: str) -> dict[str, str]:
    if stack_file.file_name == "primary.json":
        return {"CodeBucket": code_bucket, "CodeKey": "applier.zip"}
    region = stack_file.region
    return {
        "ImageUri": f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/lazyrep-worker:1.0.0",
        "ImageRepositoryArn": f"arn:aws:ecr:{region}:{ACCOUNT}:repository/lazyrep-worker",
        "Subnets": "subnet-0a,subnet-0b",
        "SecurityGroups": "sg-0a",
        "CreateTombstoneTable": "true",
    }


@pytest.fixture(scope="module")
def deployed(local_stack: LocalStack) -> Deployed:
    """Every template of a fresh copy of the example topology, deployed in its region."""
    endpoint = local_stack.endpoints.cloudformation
    assert endpoint, "the local stack routes CloudFormation to moto"
    topology = _unique_topology()
    files = render_templates(topology, InfraSettings())
    code_bucket = f"{topology.stream.name}-code"
    s3 = SESSION.client("s3", region_name=topology.stream.region, endpoint_url=endpoint)
    s3.create_bucket(Bucket=code_bucket)
    s3.put_object(Bucket=code_bucket, Key="applier.zip", Body=_code_zip())
    filtered: set[str] = set()
    stacks = {}
    for stack_file in files:  # in deploy order: the primary first
        cfn = SESSION.client("cloudformation", region_name=stack_file.region, endpoint_url=endpoint)
        name = f"{topology.stream.name}-{stack_file.file_name.removesuffix('.json')}"
        body = StackFile(
            stack_file.file_name, stack_file.region, _filtered(stack_file.body, filtered)
        )
        cfn.create_stack(
            StackName=name,
            TemplateBody=body.text,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in _parameters(stack_file, code_bucket).items()
            ],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        cfn.get_waiter("stack_create_complete").wait(
            StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        stacks[stack_file.file_name] = {
            "name": name,
            "resources": cfn.list_stack_resources(StackName=name)["StackResourceSummaries"],
            "outputs": cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", []),
            "expected": set(body.body["Resources"]),
        }
    return Deployed(topology, {f.file_name: f for f in files}, filtered, endpoint, stacks)


def test_every_resource_moto_supports_is_created(deployed: Deployed) -> None:
    # The filtered types are exactly the known ones: a new unsupported type fails here.
    assert deployed.filtered == UNSUPPORTED_BY_MOTO
    assert set(deployed.stacks) == {"primary.json", "replica-eu.json", "replica-apac.json"}
    for file_name, stack in deployed.stacks.items():
        created = {
            r["LogicalResourceId"]
            for r in stack["resources"]
            if r["ResourceStatus"] == "CREATE_COMPLETE" and r["LogicalResourceId"]
        }
        assert created == stack["expected"], file_name


def test_the_stream_has_the_topology_retention_and_shards(deployed: Deployed) -> None:
    stream = deployed.topology.stream
    kinesis = deployed.client("kinesis", stream.region)
    summary = kinesis.describe_stream_summary(StreamName=stream.name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == stream.retention_hours == 48
    assert summary["OpenShardCount"] == stream.shards == 4
    assert summary["StreamARN"] == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{stream.name}"


def _key_schema(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in table["KeySchema"]
    ]


def test_tables_have_the_topology_key_schemas_in_every_region(deployed: Deployed) -> None:
    topology = deployed.topology
    targets = [(topology.stream.region, {t: t for t in topology.tables})]
    targets += [
        (r.region, {t: r.replica_table(t) for t in topology.tables})
        for r in topology.replicas.values()
    ]
    for region, names in targets:
        dynamodb = deployed.client("dynamodb", region)
        for primary, name in names.items():
            table = dynamodb.describe_table(TableName=name)["Table"]
            schema = topology.tables[primary]
            expected = [(schema.partition.name, "HASH", schema.partition.type)]
            if schema.sort is not None:
                expected.append((schema.sort.name, "RANGE", schema.sort.type))
            assert _key_schema(table) == expected, (region, name)
            assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
            assert table["DeletionProtectionEnabled"] is True
        tombstones = dynamodb.describe_table(TableName=topology.applier.tombstone_table)["Table"]
        assert _key_schema(tombstones) == [("k", "HASH", "B")]
    for replica in topology.replicas.values():
        dynamodb = deployed.client("dynamodb", replica.region)
        status = status_table_name(replica.application_name)
        table = dynamodb.describe_table(TableName=status)["Table"]
        assert _key_schema(table) == [("shard_id", "HASH", "S")]


def test_what_moto_accepts_but_does_not_apply_is_still_ignored(deployed: Deployed) -> None:
    # moto's CloudFormation drops StreamEncryption, the tables' SSESpecification (it reads
    # the API's `Enabled`, CloudFormation's is `SSEEnabled`), TimeToLiveSpecification and
    # PointInTimeRecoverySpecification. tests/unit/test_infra_templates.py checks them in
    # the templates. If moto starts applying one, this fails: assert it here instead.
    topology = deployed.topology
    kinesis = deployed.client("kinesis", topology.stream.region)
    summary = kinesis.describe_stream_summary(StreamName=topology.stream.name)
    assert summary["StreamDescriptionSummary"]["EncryptionType"] == "NONE"
    dynamodb = deployed.client("dynamodb", topology.stream.region)
    tombstones = topology.applier.tombstone_table
    assert "SSEDescription" not in dynamodb.describe_table(TableName=tombstones)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=tombstones)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"
    backups = dynamodb.describe_continuous_backups(TableName=tombstones)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "DISABLED"
    primary = deployed.files["primary.json"].body["Resources"]
    assert primary["Stream"]["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    assert primary["TombstoneTable"]["Properties"]["TimeToLiveSpecification"]["Enabled"]


def test_queues_are_encrypted_and_keep_messages(deployed: Deployed) -> None:
    topology = deployed.topology
    assert topology.dead_letter is not None
    sqs = deployed.client("sqs", topology.stream.region)
    for name in (topology.dead_letter.name, failure_queue_name(topology)):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["SqsManagedSseEnabled"] == "true", name
        assert attributes["MessageRetentionPeriod"] == "1209600"
        assert attributes["MaximumMessageSize"] == "1048576"


def test_the_mapping_and_function_are_deployed_as_configured(deployed: Deployed) -> None:
    topology = deployed.topology
    region = topology.stream.region
    awslambda = deployed.client("lambda", region)
    stream_arn = f"arn:aws:kinesis:{region}:{ACCOUNT}:stream/{topology.stream.name}"
    (mapping,) = awslambda.list_event_source_mappings(EventSourceArn=stream_arn)[
        "EventSourceMappings"
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == -1
    assert mapping["MaximumRecordAgeInSeconds"] == -1
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == (
        f"arn:aws:sqs:{region}:{ACCOUNT}:{failure_queue_name(topology)}"
    )
    function = awslambda.get_function(FunctionName=mapping["FunctionArn"])["Configuration"]
    assert function["Handler"] == HANDLER == "lambda_consumer.handler.handle"
    assert function["Runtime"] == "python3.11"
    assert function["Environment"]["Variables"]["LAZYREP_TOPOLOGY"] == "/var/task/topology.toml"


def test_workers_stop_gracefully_and_read_the_stream_across_regions(deployed: Deployed) -> None:
    topology = deployed.topology
    for name, replica in topology.replicas.items():
        stack = deployed.stacks[f"replica-{name}.json"]
        ecs = deployed.client("ecs", replica.region)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["outputs"]}
        services = ecs.describe_services(
            cluster=outputs["ClusterName"], services=[outputs["ServiceName"]]
        )["services"]
        assert [s["desiredCount"] for s in services] == [2]
        task = ecs.describe_task_definition(taskDefinition=services[0]["taskDefinition"])
        (container,) = task["taskDefinition"]["containerDefinitions"]
        assert container["stopTimeout"] == 60  # > shutdownGraceMillis 50,000 of the image
        assert container["command"] == [
            "--properties",
            f"/etc/lazyrep/properties/{name}.properties",
        ]
        iam = deployed.client("iam", replica.region)
        role = outputs["TaskRoleArn"].rsplit("/", 1)[1]
        document = iam.get_role_policy(RoleName=role, PolicyName="lazyrep-worker")["PolicyDocument"]
        if isinstance(document, str):
            # moto keeps a CloudFormation-made inline policy as the repr of its dict.
            document = ast.literal_eval(document)
        statements = {s["Sid"]: s for s in document["Statement"]}
        assert statements["ReadTheStream"]["Resource"] == (
            f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{topology.stream.name}"
        )
        assert (
            f"arn:aws:dynamodb:{replica.region}:{ACCOUNT}:table/{replica.application_name}"
            in (statements["KclLeaseTables"]["Resource"])
        )
