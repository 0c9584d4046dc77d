"""The CloudFormation templates: cfn-lint clean, least privilege, encrypted, true to the topology.

The security checks walk every IAM policy statement of every generated template, so a
new resource or permission is checked the day it is added, not when someone remembers.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from binlog.applier import TOMBSTONE_EXPIRES, TOMBSTONE_KEY
from binlog.topology import Topology, load_topology, parse_topology
from kcl_consumer.properties import ReplicaKclOptions, parse_properties, render_replica
from kcl_consumer.status import NAMESPACE, CloudWatchStatus, ShardProgress, status_table_name
from lazyrep import infra_primary
from lazyrep.cli import main
from lazyrep.infra import InfraError, InfraSettings, StackFile, render_templates

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "topology.toml"
DEMO = ROOT / "lazyrep" / "demo_topology.toml"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

DATA_PLANE = ("kinesis:", "dynamodb:", "sqs:", "s3:", "kms:")
# The only actions AWS authorises on "*" alone: no resource-level permissions exist.
STAR_ALLOWED = {"cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"}
# Where a data-plane ARN may hold a "*": a DynamoDB table's indexes, an S3 key prefix.
ARN_WILDCARD_TAIL = re.compile(r"(:table/[A-Za-z0-9_.-]+/index/\*|:s3:::[a-z0-9.-]+/[^*]*\*)$")
ARN_TYPES = {
    "kinesis": "AWS::Kinesis::Stream",
    "sqs": "AWS::SQS::Queue",
    "dynamodb": "AWS::DynamoDB::Table",
}


def _raw(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _s3_dead_letters() -> Topology:
    raw = _raw(EXAMPLE)
    raw["dead_letter"] = {"kind": "s3", "name": "shop-dead-letters", "prefix": "parked/"}
    return parse_topology(raw)


def _remote_dead_letters() -> Topology:
    raw = _raw(DEMO)
    raw["dead_letter"] = {"kind": "sqs", "name": "demo-dead", "region": "eu-central-1"}
    return parse_topology(raw)


VARIANTS: dict[str, tuple[Topology, InfraSettings]] = {
    "example": (load_topology(EXAMPLE), InfraSettings()),
    "demo": (load_topology(DEMO), InfraSettings()),
    "s3-dead-letters": (_s3_dead_letters(), InfraSettings()),
    "remote-dead-letters": (_remote_dead_letters(), InfraSettings()),
    "customer-key": (
        load_topology(EXAMPLE),
        InfraSettings(stream_kms_key_arn=KEY_ARN, stop_timeout_s=120, maximum_record_age_s=3600),
    ),
}


def _files(variant: str) -> list[StackFile]:
    topology, settings = VARIANTS[variant]
    return render_templates(topology, settings)


ALL_FILES = [(v, f) for v in VARIANTS for f in _files(v)]
ALL_IDS = [f"{v}/{f.file_name}" for v, f in ALL_FILES]


def _resources(body: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in body["Resources"].items() if r["Type"] == kind}


def _one(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = _resources(body, kind).values()
    return resource["Properties"]  # type: ignore[no-any-return]


def _by_name(files: list[StackFile]) -> dict[str, dict[str, Any]]:
    return {f.file_name: f.body for f in files}


def _statements(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every policy in the template: roles' inline, policies', buckets'."""
    for name, resource in body["Resources"].items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        for document in documents:
            for stmt in document["Statement"]:
                yield name, stmt


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_text(body: dict[str, Any], resource: Any, service: str) -> str:
    """A resource of a statement as a string ARN, or the ARN attribute it stands for."""
    if isinstance(resource, str):
        return resource
    if "Fn::Sub" in resource:
        text = resource["Fn::Sub"]
        assert isinstance(text, str)
        return text
    if "Fn::GetAtt" in resource:
        target, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn"
        assert body["Resources"][target]["Type"] == ARN_TYPES[service], (target, service)
        return f"arn:{service}:getatt:{target}"
    if "Ref" in resource:
        parameter = body["Parameters"][resource["Ref"]]
        assert parameter.get("AllowedPattern", "").startswith("^arn:"), resource
        return f"arn:ref:{resource['Ref']}"
    raise AssertionError(f"unexpected resource form {resource!r}")


# --- cfn-lint ------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "stack_file"), ALL_FILES, ids=ALL_IDS)
def test_cfn_lint_is_clean(variant: str, stack_file: StackFile) -> None:
    # GIVEN a generated template WHEN cfn-lint checks it for its own region, with the
    # informational rules too THEN it finds nothing.
    matches = lint(
        stack_file.text, regions=[stack_file.region], config=ManualArgs(include_checks=["I"])
    )
    assert [str(m) for m in matches] == []


# --- Least privilege -----------------------------------------------------------------------


def _resource_problem(body: dict[str, Any], action: str, resource: Any) -> str | None:
    service = action.split(":", maxsplit=1)[0]
    try:
        text = _resource_text(body, resource, service)
    except (AssertionError, KeyError) as exc:
        return f"{action} on {resource!r}: {exc!r}"
    if text == "*" or ("*" in text and ARN_WILDCARD_TAIL.search(text) is None):
        return f"{action} on {text}"
    if service != "s3" and f":{service}:" not in text:
        return f"{action} on {text}, not a {service} ARN"
    return None


def privilege_problems(body: dict[str, Any]) -> list[str]:
    """Every Allow statement that grants a wildcard action, or a data-plane API on "*"."""
    problems = []
    for where, stmt in _statements(body):
        if stmt["Effect"] == "Deny":
            continue
        if "NotAction" in stmt or "NotResource" in stmt:
            problems.append(f"{where}: NotAction/NotResource")
            continue
        actions = _as_list(stmt["Action"])
        problems += [f"{where}: wildcard action {a}" for a in actions if "*" in a]
        resources = _as_list(stmt["Resource"])
        if "*" in resources:
            if resources != ["*"] or not set(actions) <= STAR_ALLOWED:
                problems.append(f"{where}: {actions} on *")
            elif "cloudwatch:PutMetricData" in actions:
                condition = stmt.get("Condition", {}).get("StringEquals", {})
                if NAMESPACE not in condition.get("cloudwatch:namespace", []):
                    problems.append(f"{where}: PutMetricData without a namespace condition")
            continue
        for action in (a for a in actions if a.startswith(DATA_PLANE)):
            for resource in resources:
                problem = _resource_problem(body, action, resource)
                if problem:
                    problems.append(f"{where}: {problem}")
            if action.startswith("kms:"):
                texts = [_resource_text(body, r, "kms") for r in resources]
                via = stmt.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
                if not (all(":key/" in text for text in texts) or via):
                    problems.append(f"{where}: {action} needs a key ARN or kms:ViaService")
    return problems


@pytest.mark.parametrize(("variant", "stack_file"), ALL_FILES, ids=ALL_IDS)
def test_no_wildcard_on_data_plane_apis(variant: str, stack_file: StackFile) -> None:
    statements = list(_statements(stack_file.body))
    assert statements or stack_file.file_name == "dead-letters.json"
    assert privilege_problems(stack_file.body) == []


@pytest.mark.parametrize(
    ("action", "resource", "problem"),
    [
        ("dynamodb:*", {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:r:a:table/t"}, "wildcard"),
        ("dynamodb:PutItem", "*", "on *"),
        ("kinesis:GetRecords", {"Fn::Sub": "arn:${AWS::Partition}:kinesis:r:a:stream/*"}, "on"),
        ("sqs:SendMessage", {"Fn::GetAtt": ["Stream", "Arn"]}, "sqs:SendMessage on"),
        ("s3:PutObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::*"}, "on arn"),
        ("kms:Decrypt", "arn:aws:kms:us-east-1:111122223333:alias/x", "key ARN"),
        ("cloudwatch:PutMetricData", "*", "namespace"),
        ("logs:PutLogEvents", "*", "on *"),
    ],
)
def test_the_privilege_check_catches_what_it_should(
    action: str, resource: Any, problem: str
) -> None:
    # GIVEN a generated template with one bad statement added THEN the walk reports it.
    body = json.loads(json.dumps(_by_name(_files("example"))["primary.json"]))
    bad = {"Sid": "Bad", "Effect": "Allow", "Action": [action], "Resource": resource}
    body["Resources"]["ApplierRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ].append(bad)
    problems = privilege_problems(body)
    assert len(problems) == 1, problems
    assert problem in problems[0]


@pytest.mark.parametrize(("variant", "stack_file"), ALL_FILES, ids=ALL_IDS)
def test_no_managed_policies(variant: str, stack_file: StackFile) -> None:
    # Managed policies (AWSLambdaKinesisExecutionRole, AmazonECSTaskExecutionRolePolicy)
    # grant on "*": every permission is inline, where the walk above checks it.
    for resource in stack_file.body["Resources"].values():
        assert "ManagedPolicyArns" not in resource.get("Properties", {})


def _dynamodb_tables(body: dict[str, Any], role: str) -> set[str]:
    names = set()
    for where, stmt in _statements(body):
        if where != role:
            continue
        if any(a.startswith("dynamodb:") for a in _as_list(stmt["Action"])):
            for resource in _as_list(stmt["Resource"]):
                names.add(resource["Fn::Sub"].rsplit(":table/", 1)[1])
    return names


def test_applier_role_writes_exactly_the_primary_tables() -> None:
    topology, settings = VARIANTS["example"]
    body = _by_name(render_templates(topology, settings))["primary.json"]
    assert _dynamodb_tables(body, "ApplierRole") == {*topology.tables, "lazyrep-tombstones"}
    # The stream by its resource, the queues by theirs or by name in their region.
    statements = {s["Sid"]: s for _, s in _statements(body)}
    assert statements["ReadTheStream"]["Resource"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert statements["ReportDiscardedBatches"]["Resource"] == {
        "Fn::GetAtt": ["MappingFailureQueue", "Arn"]
    }
    assert statements["ParkDeadLetters"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sqs:us-east-1:${AWS::AccountId}:shop-binlog-dead-letters"
    }


def test_worker_role_scopes_the_replica_its_leases_and_the_stream() -> None:
    topology, settings = VARIANTS["example"]
    body = _by_name(render_templates(topology, settings))["replica-eu.json"]
    app = "lazyrep-shop-eu-west-1"
    assert _dynamodb_tables(body, "WorkerTaskRole") == {
        "users",
        "orders-eu",  # the eu name of orders, never the primary's
        "attachments",
        "lazyrep-tombstones",
        app,
        f"{app}/index/*",
        f"{app}-CoordinatorState",
        f"{app}-WorkerMetricStats",
        status_table_name(app),
    }
    statements = {s["Sid"]: s for w, s in _statements(body) if w == "WorkerTaskRole"}
    # Cross-region: the stream's region, not the stack's.
    assert statements["ReadTheStream"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:kinesis:us-east-1:${AWS::AccountId}:stream/shop-binlog"
    }
    assert statements["ApplyToTheReplicaTables"]["Action"] == [
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert statements["Metrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": [app, NAMESPACE]}
    }


def test_s3_dead_letters_grant_put_object_under_the_prefix_only() -> None:
    topology, settings = VARIANTS["s3-dead-letters"]
    for body in _by_name(render_templates(topology, settings)).values():
        parks = [s for _, s in _statements(body) if s.get("Sid") == "ParkDeadLetters"]
        for stmt in parks:
            assert stmt["Action"] == ["s3:PutObject"]
            assert stmt["Resource"] == {
                "Fn::Sub": "arn:${AWS::Partition}:s3:::shop-dead-letters/parked/*"
            }


def test_customer_key_readers_decrypt_through_kinesis_only() -> None:
    topology, settings = VARIANTS["customer-key"]
    files = _by_name(render_templates(topology, settings))
    assert _one(files["primary.json"], "AWS::Kinesis::Stream")["StreamEncryption"] == {
        "EncryptionType": "KMS",
        "KeyId": KEY_ARN,
    }
    for name, body in files.items():
        decrypts = [s for _, s in _statements(body) if "kms:Decrypt" in s["Action"]]
        assert decrypts, name
        for stmt in decrypts:
            assert stmt["Resource"] == KEY_ARN
            assert stmt["Condition"] == {
                "StringEquals": {"kms:ViaService": "kinesis.us-east-1.amazonaws.com"}
            }


# --- Encryption at rest --------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "stack_file"), ALL_FILES, ids=ALL_IDS)
def test_everything_that_stores_data_is_encrypted(variant: str, stack_file: StackFile) -> None:
    body = stack_file.body
    for name, resource in body["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::Kinesis::Stream":
            assert props["StreamEncryption"]["EncryptionType"] == "KMS", name
            assert props["StreamEncryption"]["KeyId"] in ("alias/aws/kinesis", KEY_ARN)
        elif kind == "AWS::SQS::Queue":
            assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId")
        elif kind == "AWS::S3::Bucket":
            (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
            assert all(props["PublicAccessBlockConfiguration"].values())
        elif kind == "AWS::DynamoDB::Table":
            assert props["SSESpecification"] == {"SSEEnabled": True}, name
            assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        if kind in ("AWS::Kinesis::Stream", "AWS::DynamoDB::Table", "AWS::S3::Bucket"):
            assert resource["DeletionPolicy"] == "Retain", name


# --- The workers' shutdown and the mapping's settings --------------------------------------


@pytest.mark.parametrize("variant", ["example", "customer-key"])
def test_stop_timeout_exceeds_the_shutdown_grace(variant: str) -> None:
    topology, settings = VARIANTS[variant]
    for name in topology.replicas:
        body = _by_name(render_templates(topology, settings))[f"replica-{name}.json"]
        (container,) = _one(body, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
        # The properties the image bakes for the same STOP_TIMEOUT (Dockerfile).
        options = ReplicaKclOptions(stop_timeout_s=container["StopTimeout"])
        grace = int(
            parse_properties(render_replica(topology, name, options))["shutdownGraceMillis"]
        )
        assert container["StopTimeout"] == settings.stop_timeout_s
        assert container["StopTimeout"] * 1000 > grace
        assert grace == settings.shutdown_grace_ms
        assert container["Command"] == [
            "--properties",
            f"/etc/lazyrep/properties/{name}.properties",
        ]


def test_the_mapping_has_the_recommended_settings() -> None:
    topology, settings = VARIANTS["example"]
    body = _by_name(render_templates(topology, settings))["primary.json"]
    mapping = _one(body, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == -1
    assert mapping["MaximumRecordAgeInSeconds"] == -1
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    queue = destination["Fn::GetAtt"][0]
    # Discarded batches go to their own queue, not among the poison records.
    assert body["Resources"][queue]["Properties"]["QueueName"] == "shop-binlog-esm-failures"
    function = _one(body, "AWS::Lambda::Function")
    assert function["Runtime"] == "python3.11"
    module, _, attribute = function["Handler"].rpartition(".")
    handler = importlib.import_module(module)
    assert callable(getattr(handler, attribute))
    # The alarms' dimensions are the handler's metrics'.
    assert (infra_primary.SERVICE, infra_primary.NAMESPACE) == (handler.SERVICE, handler.NAMESPACE)
    assert function["Environment"]["Variables"]["LAZYREP_TOPOLOGY"] == {"Ref": "TopologyPath"}


def test_a_finite_record_age_is_set_and_must_fit_the_retention() -> None:
    topology, settings = VARIANTS["customer-key"]
    body = _by_name(render_templates(topology, settings))["primary.json"]
    assert _one(body, "AWS::Lambda::EventSourceMapping")["MaximumRecordAgeInSeconds"] == 3600
    # 48 h retention - 2 h margin = 165,600 s: Lambda must give up while replay still can.
    with pytest.raises(InfraError, match="165600"):
        render_templates(topology, InfraSettings(maximum_record_age_s=170_000))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stop_timeout_s", 121, "stop_timeout_s must be in 15..120"),
        ("parallelization_factor", 11, "parallelization_factor"),
        ("maximum_record_age_s", 30, "maximum_record_age_s must be in 60"),
        ("task_memory_mb", 8192, "task_memory_mb must be 1024..4096"),
        ("stream_kms_key_arn", "alias/mine", "KMS key ARN"),
        ("log_retention_days", 31, "log_retention_days"),
    ],
)
def test_settings_name_the_wrong_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InfraSettings(**{field: value})  # type: ignore[arg-type]


def test_a_topology_without_dead_letters_is_refused() -> None:
    raw = _raw(EXAMPLE)
    del raw["dead_letter"]
    with pytest.raises(InfraError, match="dead_letter"):
        render_templates(parse_topology(raw))


# --- True to the topology ------------------------------------------------------------------


def _key_schema(props: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert len(types) == len(props["KeySchema"])  # no attribute defined but unused
    return [
        (k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in props["KeySchema"]
    ]


def _expected_keys(topology: Topology, table: str) -> list[tuple[str, str, str]]:
    schema = topology.tables[table]
    keys = [(schema.partition.name, "HASH", schema.partition.type)]
    if schema.sort is not None:
        keys.append((schema.sort.name, "RANGE", schema.sort.type))
    return keys


@pytest.mark.parametrize("variant", ["example", "demo"])
def test_templates_match_the_topology(variant: str) -> None:
    topology, settings = VARIANTS[variant]
    files = _by_name(render_templates(topology, settings))
    assert set(files) == {"primary.json", *(f"replica-{n}.json" for n in topology.replicas)}
    primary = files["primary.json"]
    stream = _one(primary, "AWS::Kinesis::Stream")
    assert stream["Name"] == topology.stream.name
    assert stream["RetentionPeriodHours"] == topology.stream.retention_hours
    assert stream["ShardCount"] == topology.stream.shards
    tombstones = topology.applier.tombstone_table
    tombstone_keys = [(TOMBSTONE_KEY, "HASH", "B")]

    def tables(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        found = _resources(body, "AWS::DynamoDB::Table").values()
        return {t["Properties"]["TableName"]: t["Properties"] for t in found}

    primary_tables = tables(primary)
    assert set(primary_tables) == {*topology.tables, tombstones}
    for name in topology.tables:
        assert _key_schema(primary_tables[name]) == _expected_keys(topology, name)
    assert _key_schema(primary_tables[tombstones]) == tombstone_keys
    assert primary_tables[tombstones]["TimeToLiveSpecification"] == {
        "AttributeName": TOMBSTONE_EXPIRES,
        "Enabled": True,
    }
    for name, replica in topology.replicas.items():
        body = files[f"replica-{name}.json"]
        status = status_table_name(replica.application_name)
        replica_tables = tables(body)
        expected = {replica.replica_table(t): t for t in topology.tables}
        assert set(replica_tables) == {*expected, tombstones, status}
        for table, primary_name in expected.items():
            assert _key_schema(replica_tables[table]) == _expected_keys(topology, primary_name)
        assert _key_schema(replica_tables[tombstones]) == tombstone_keys
        assert body["Resources"]["TombstoneTable"]["Condition"] == "CreateTombstoneTable"
        assert replica_tables[status]["TimeToLiveSpecification"]["Enabled"] is True


def test_replica_lag_alarm_watches_the_metric_the_worker_publishes() -> None:
    topology, settings = VARIANTS["example"]
    body = _by_name(render_templates(topology, settings))["replica-eu.json"]
    lag = body["Resources"]["ReplicaLagAlarm"]["Properties"]
    assert lag["Threshold"] == 69_120_000  # 80% of eu's 24 h deadline, in ms

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def put_metric_data(self, **kwargs: Any) -> None:
            self.calls.append(kwargs)

    # GIVEN the worker's CloudWatch publisher WHEN it reports a late shard THEN it sends
    # exactly the namespace, metric and dimension the alarm watches.
    recorder = Recorder()
    publisher = CloudWatchStatus(recorder, "eu", clock=lambda: 1_000.0)
    publisher.publish(
        ShardProgress("shardId-0", "eu", "w", "processing", applied_arrival_ms=400_000)
    )
    (call,) = recorder.calls
    assert call["Namespace"] == lag["Namespace"]
    (datum,) = [d for d in call["MetricData"] if d["MetricName"] == lag["MetricName"]]
    assert [{d["Name"]: d["Value"] for d in datum["Dimensions"]}] == [
        {d["Name"]: d["Value"] for d in lag["Dimensions"]}
    ]


def test_primary_alarms_cover_iterator_age_and_dead_letters() -> None:
    topology, settings = VARIANTS["example"]
    body = _by_name(render_templates(topology, settings))["primary.json"]
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in _resources(body, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] != "ApproximateNumberOfMessagesVisible"
    }
    assert alarms["IteratorAge"]["Threshold"] == 900_000
    assert alarms["GetRecords.IteratorAgeMilliseconds"]["Threshold"] == 46 * 3_600_000
    assert alarms["DeadLetterFailures"]["Namespace"] == NAMESPACE
    depth = [
        r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for r in _resources(body, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    ]
    assert sorted(depth) == ["DeadLetterQueue", "MappingFailureQueue"]


def test_dead_letters_in_another_region_get_their_own_template() -> None:
    topology, settings = VARIANTS["remote-dead-letters"]
    files = render_templates(topology, settings)
    assert [(f.file_name, f.region) for f in files] == [
        ("dead-letters.json", "eu-central-1"),
        ("primary.json", "us-east-1"),
        ("replica-eu.json", "eu-west-1"),
        ("replica-apac.json", "ap-southeast-2"),
    ]
    by_name = _by_name(files)
    assert _one(by_name["dead-letters.json"], "AWS::SQS::Queue")["QueueName"] == "demo-dead"
    queues = _resources(by_name["primary.json"], "AWS::SQS::Queue").values()
    assert [q["Properties"]["QueueName"] for q in queues] == ["demo-binlog-esm-failures"]


# --- The command ---------------------------------------------------------------------------


def test_deploy_templates_writes_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["deploy", "templates", "--topology", str(EXAMPLE), "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "primary.json",
        "replica-apac.json",
        "replica-eu.json",
    ]
    assert json.loads((tmp_path / "primary.json").read_text())["Resources"]["Stream"]
    assert runner.invoke(main, [*args, "--check"]).exit_code == 0
    (tmp_path / "replica-eu.json").write_text("{}\n")
    stale = runner.invoke(main, [*args, "--check"])
    assert stale.exit_code == 1
    assert "replica-eu.json" in stale.output


def test_deploy_templates_refuses_a_bad_setting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            *("deploy", "templates", "--topology", str(EXAMPLE), "--out", str(tmp_path)),
            *("--stop-timeout", "5"),
        ],
    )
    assert result.exit_code == 2
    assert "stop_timeout_s must be in 15..120" in result.output
    assert not list(tmp_path.iterdir())
