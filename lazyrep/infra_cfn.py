"""CloudFormation building blocks: intrinsic functions, ARNs, logical ids, IAM statements.

The templates are plain JSON documents built from dicts, so tests can walk them
(every policy statement, every resource) without a CloudFormation parser. ARNs are
`Fn::Sub` strings over `AWS::Partition` and `AWS::AccountId`, so one template fits
every partition (aws, aws-cn, aws-us-gov) and account.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Json = dict[str, Any]
"""A CloudFormation fragment (template, resource, property, statement)."""

TEMPLATE_VERSION = "2010-09-09"

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def sub(text: str) -> Json:
    """`Fn::Sub` of `text` (`${AWS::Region}`, `${Param}`, `${Resource.Arn}`)."""
    return {"Fn::Sub": text}


def ref(name: str) -> Json:
    """`Ref` to a parameter or resource."""
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    """`Fn::GetAtt` of a resource's attribute."""
    return {"Fn::GetAtt": [resource, attribute]}


def if_(condition: str, then: object, otherwise: object) -> Json:
    """`Fn::If` on a condition."""
    return {"Fn::If": [condition, then, otherwise]}


NO_VALUE = ref("AWS::NoValue")


def logical_id(prefix: str, name: str, taken: set[str]) -> str:
    """A CloudFormation logical id (alphanumeric, up to 255) for `name`, unique in `taken`.

    `orders-eu` becomes `TableOrdersEu`; a second name that sanitises the same way
    (`orders.eu`) gets a numeric suffix instead of silently replacing the first.
    """
    words = [w for w in _NOT_ALNUM.split(name) if w]
    base = (prefix + "".join(w[:1].upper() + w[1:] for w in words))[:240]
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    taken.add(candidate)
    return candidate


# --- ARNs --------------------------------------------------------------------------------
# Region given: a resource in another region than the stack's (the stream, seen from a
# replica region; a dead-letter queue elsewhere). None: the stack's own region.


def _region(region: str | None) -> str:
    return region if region is not None else "${AWS::Region}"


def stream_arn(name: str, region: str | None = None) -> Json:
    """The Kinesis stream `name` (same account)."""
    return sub(
        f"arn:${{AWS::Partition}}:kinesis:{_region(region)}:${{AWS::AccountId}}:stream/{name}"
    )


def table_arn(name: str, region: str | None = None, suffix: str = "") -> Json:
    """The DynamoDB table `name`; `suffix` `/index/*` for its indexes."""
    return sub(
        f"arn:${{AWS::Partition}}:dynamodb:{_region(region)}:${{AWS::AccountId}}:table/{name}{suffix}"
    )


def queue_arn(name: str, region: str | None = None) -> Json:
    """The SQS queue `name`."""
    return sub(f"arn:${{AWS::Partition}}:sqs:{_region(region)}:${{AWS::AccountId}}:{name}")


def bucket_objects_arn(bucket: str, prefix: str) -> Json:
    """Objects of `bucket` under `prefix` (S3 ARNs have no region or account)."""
    return sub(f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix}*")


def log_group_arn(name: str) -> Json:
    """The log group `name` and its streams (`:*`, as CloudWatch Logs' ARNs require)."""
    return sub(
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{name}:*"
    )


# --- IAM -----------------------------------------------------------------------------------


def statement(
    sid: str,
    actions: Sequence[str],
    resources: Sequence[object] | object,
    condition: Mapping[str, Any] | None = None,
) -> Json:
    """One Allow statement: the actions on exactly these resources."""
    resource = list(resources) if isinstance(resources, list | tuple) else resources
    doc: Json = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resource}
    if condition:
        doc["Condition"] = dict(condition)
    return doc


def policy_document(statements: Iterable[Json]) -> Json:
    """An IAM policy document of `statements`."""
    return {"Version": "2012-10-17", "Statement": list(statements)}


def assume_role_policy(service: str) -> Json:
    """A trust policy letting `service` (lambda.amazonaws.com, ecs-tasks...) assume the role."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ]
    )


def role(service: str, policy_name: str, statements: Sequence[Json], **extra: Any) -> Json:
    """An IAM role for `service` with one inline policy of `statements`."""
    properties: Json = {
        "AssumeRolePolicyDocument": assume_role_policy(service),
        "Policies": [{"PolicyName": policy_name, "PolicyDocument": policy_document(statements)}],
    }
    properties.update(extra)
    return {"Type": "AWS::IAM::Role", "Properties": properties}


def kms_decrypt(key_arn: str, service: str, region: str) -> Json:
    """kms:Decrypt on one customer managed key, only through `service` in `region`."""
    return statement(
        "DecryptWithTheStreamKey",
        ["kms:Decrypt"],
        key_arn,
        {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}},
    )


# --- Alarms and templates ----------------------------------------------------------------

ALARM_TOPIC_PARAMETER = "AlarmTopicArn"
HAS_ALARM_TOPIC = "HasAlarmTopic"


def alarm_topic_parameter() -> tuple[Json, Json]:
    """The optional SNS topic every alarm notifies: (parameter, condition)."""
    parameter = {
        "Type": "String",
        "Default": "",
        "Description": "SNS topic ARN the alarms notify (empty: alarms without actions).",
    }
    condition = {"Fn::Not": [{"Fn::Equals": [ref(ALARM_TOPIC_PARAMETER), ""]}]}
    return parameter, condition


def alarm(
    description: str,
    namespace: str,
    metric: str,
    dimensions: Mapping[str, object],
    *,
    threshold: float,
    statistic: str = "Maximum",
    period_s: int = 300,
    evaluation_periods: int = 1,
    comparison: str = "GreaterThanThreshold",
    missing_data: str = "notBreaching",
) -> Json:
    """A CloudWatch alarm on one metric, notifying the alarm topic if one is given."""
    actions = if_(HAS_ALARM_TOPIC, [ref(ALARM_TOPIC_PARAMETER)], NO_VALUE)
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Statistic": statistic,
            "Period": period_s,
            "EvaluationPeriods": evaluation_periods,
            "Threshold": threshold,
            "ComparisonOperator": comparison,
            "TreatMissingData": missing_data,
            "AlarmActions": actions,
            "OKActions": actions,
        },
    }


def retained(resource: Json) -> Json:
    """`resource` kept when the stack deletes or replaces it: it holds data."""
    resource["DeletionPolicy"] = "Retain"
    resource["UpdateReplacePolicy"] = "Retain"
    return resource


def template(
    description: str,
    parameters: Mapping[str, Json],
    conditions: Mapping[str, Json],
    resources: Mapping[str, Json],
    outputs: Mapping[str, Json],
) -> Json:
    """A whole template; empty sections are left out (CloudFormation rejects them)."""
    doc: Json = {"AWSTemplateFormatVersion": TEMPLATE_VERSION, "Description": description}
    for key, section in (
        ("Parameters", parameters),
        ("Conditions", conditions),
        ("Resources", resources),
        ("Outputs", outputs),
    ):
        if section:
            doc[key] = dict(section)
    return doc
