"""Create in moto what ``template.yaml`` declares, read through :mod:`infra.cfn`.

The template is the one source: buckets, tables (keys, TTL), topics, queues, the SES sender
identity and every CloudWatch alarm are created from their resolved properties, with parameter
values from ``samconfig.toml`` or the template defaults. Functions become :class:`FunctionPlan`\\ s
(handler, resolved environment, routes and event sources) that the stack runs in-process.

Event sources are delivered the way moto can deliver them: an S3 notification to a function becomes
a notification to a local SQS queue, an SNS subscription of a function becomes a subscription of a
local SQS queue; the stack polls both and invokes the function with the event Lambda would get.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.cfn import Function, Resolver, Template, load_template, samconfig_overrides
from infra.local.gateway import Route
from infra.local.runtime import FunctionSpec

logger = logging.getLogger(__name__)

LOCAL_QUEUE_PREFIX = "local-delivery"
LOCAL_PARAMETERS = {"AlertEmail": "oncall@example.com", "SenderEmail": "truthwatch@example.com"}
"""Values for parameters that have no default and no samconfig value; a deployment must set them."""
_CLIENT_KEYS = ("Namespace", "MetricName", "Statistic", "ExtendedStatistic", "Period", "Unit")


@dataclass(frozen=True)
class Source:
    """A local queue the stack polls for one function, and how its messages become events."""

    queue_url: str
    queue_arn: str
    kind: str  # "s3" (S3 event in the body) or "sns" (SNS envelope in the body)

    def event_from(self, body: str) -> dict[str, Any] | None:
        """The Lambda event for one queue message, or ``None`` for messages Lambda never sees."""
        payload = json.loads(body)
        if self.kind == "s3":
            # S3 sends s3:TestEvent to a queue when a notification is configured; it never
            # reaches a function subscribed directly.
            return None if payload.get("Event") == "s3:TestEvent" else payload
        return {"Records": [sns_record(payload)]}


def sns_record(envelope: dict[str, Any]) -> dict[str, Any]:
    """One record of Lambda's SNS event, from the envelope SNS delivers to a queue."""
    topic = envelope.get("TopicArn", "")
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{topic}:local",
        "Sns": {
            "Type": envelope.get("Type", "Notification"),
            "MessageId": envelope.get("MessageId", ""),
            "TopicArn": topic,
            "Subject": envelope.get("Subject"),
            "Message": envelope.get("Message", ""),
            "Timestamp": envelope.get("Timestamp", ""),
            "SignatureVersion": envelope.get("SignatureVersion", "1"),
            "Signature": envelope.get("Signature", ""),
            "SigningCertUrl": envelope.get("SigningCertURL", envelope.get("SigningCertUrl", "")),
            "UnsubscribeUrl": envelope.get("UnsubscribeURL", envelope.get("UnsubscribeUrl", "")),
            "MessageAttributes": envelope.get("MessageAttributes", {}),
        },
    }


@dataclass
class FunctionPlan:
    """One function of the template, resolved for the local runtime."""

    spec: FunctionSpec
    api_routes: list[Route] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    on_failure_queue: str | None = None
    alias: str | None = None

    def describe_triggers(self) -> list[str]:
        """What invokes the function, for the console."""
        return list(self.triggers)


@dataclass
class Provisioned:
    """What :func:`provision` created."""

    parameters: dict[str, str]
    names: dict[str, str]
    functions: dict[str, FunctionPlan]
    alarms: list[str]
    stack_name: str


Clients = Callable[[str], Any]


def local_names(template: Template, stack_name: str) -> Callable[[str], str]:
    """Physical names for resources that set none: ``<stack>-<logicalid>``, lower case for buckets."""
    types = {lid: res.type for lid, res in template.resources.items()}

    def name(logical_id: str) -> str:
        base = f"{stack_name}-{logical_id}"
        return base.lower() if types.get(logical_id) == "AWS::S3::Bucket" else base

    return name


def provision(
    *,
    root: Path,
    clients: Clients,
    region: str,
    account: str,
    config_env: str,
    overrides: dict[str, str],
    model_dir: Path,
) -> Provisioned:
    """Create the template's resources in moto and plan its functions.

    Parameters
    ----------
    root
        The repository root holding ``template.yaml`` and ``samconfig.toml``.
    clients
        Builds a boto3 client of the local endpoint for a service name.
    model_dir
        Replaces the inference function's ``MODEL_DIR`` (the image path means nothing here).
    """
    template = load_template(root / "template.yaml")
    stack_name = _stack_name(template, config_env)
    parameters = template.parameters(env=config_env, overrides=_declared(template, overrides, config_env))
    names_of = local_names(template, stack_name)
    resolver = template.resolver(
        parameters,
        stack_name=stack_name,
        region=region,
        account=account,
        names=names_of,
        attributes=lambda lid, attribute: local_attribute(names_of(lid), attribute),
    )
    active = {lid: res for lid, res in template.resources.items() if resolver.is_active(lid)}
    names = {lid: resolver.physical_name(lid) for lid in active}

    by_type: dict[str, list[str]] = {}
    for lid, res in active.items():
        by_type.setdefault(res.type, []).append(lid)

    for lid in by_type.get("AWS::S3::Bucket", []):
        _create_bucket(clients("s3"), resolver, lid)
    for lid in by_type.get("AWS::DynamoDB::Table", []):
        _create_table(clients("dynamodb"), resolver, lid)
    for lid in by_type.get("AWS::SNS::Topic", []):
        clients("sns").create_topic(Name=names[lid])
    for lid in by_type.get("AWS::SQS::Queue", []):
        _create_queue(clients("sqs"), resolver, lid)
    for lid in by_type.get("AWS::SES::EmailIdentity", []):
        _verify_identity(clients("ses"), str(resolver.resolve(active[lid].properties["EmailIdentity"])))
    if parameters.get("SenderIdentity") == "existing":
        # The identity a deployed stack would find already verified in the account.
        _verify_identity(clients("ses"), parameters["SenderEmail"])

    functions = {
        lid: _plan_function(function, resolver, clients, model_dir, stack_name)
        for lid, function in template.functions().items()
        if lid in active
    }
    _wire_bucket_notifications(template, resolver, clients, functions, active)

    alarms = [
        _put_alarm(clients("cloudwatch"), resolver, lid) for lid in by_type.get("AWS::CloudWatch::Alarm", [])
    ]
    return Provisioned(parameters, names, functions, alarms, stack_name)


def local_attribute(physical_name: str, attribute: str) -> str:
    """``Fn::GetAtt`` of attributes that exist only once deployed (a published version, an API id).

    The local stack runs ``$LATEST`` of every function, so a version number is ``1``; anything else
    gets a stable placeholder naming the resource, which no local resource reads.
    """
    if attribute in ("Version.Version", "Version"):
        return "1"
    return f"{physical_name}-{attribute.replace('.', '-').lower()}"


def _stack_name(template: Template, config_env: str) -> str:
    try:
        return template.stack_name(config_env)
    except ValueError:
        return "truthwatch"


def _declared(template: Template, overrides: dict[str, str], config_env: str) -> dict[str, str]:
    declared = template.body.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"--parameter names {', '.join(unknown)}, which template.yaml does not declare")
    configured = samconfig_overrides(template.samconfig, config_env)
    values = {
        name: value
        for name, value in LOCAL_PARAMETERS.items()
        if name in declared and "Default" not in declared[name] and name not in configured
    }
    values.update(overrides)
    return values


def _create_bucket(s3: Any, resolver: Resolver, logical_id: str) -> None:
    name = resolver.physical_name(logical_id)
    properties = resolver.resolve(resolver.template.resource(logical_id).properties)
    s3.create_bucket(Bucket=name)
    if properties.get("VersioningConfiguration", {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _create_table(dynamodb: Any, resolver: Resolver, logical_id: str) -> None:
    properties = resolver.resolve(resolver.template.resource(logical_id).properties)
    arguments: dict[str, Any] = {
        "TableName": resolver.physical_name(logical_id),
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in properties:
            arguments[key] = properties[key]
    dynamodb.create_table(**arguments)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true", "True"):
        dynamodb.update_time_to_live(
            TableName=arguments["TableName"],
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


def _create_queue(sqs: Any, resolver: Resolver, logical_id: str) -> None:
    properties = resolver.resolve(resolver.template.resource(logical_id).properties)
    attributes = {"FifoQueue": "true"} if properties.get("FifoQueue") in (True, "true") else {}
    sqs.create_queue(QueueName=resolver.physical_name(logical_id), Attributes=attributes)


def _verify_identity(ses: Any, identity: str) -> None:
    # moto marks an identity verified at once; SES would wait for the confirmation link.
    if "@" in identity:
        ses.verify_email_identity(EmailAddress=identity)
    else:
        ses.verify_domain_identity(Domain=identity)


def _put_alarm(cloudwatch: Any, resolver: Resolver, logical_id: str) -> str:
    properties = resolver.resolve(resolver.template.resource(logical_id).properties)
    name = resolver.physical_name(logical_id)
    arguments: dict[str, Any] = {"AlarmName": name}
    for key in (
        "AlarmDescription",
        "ActionsEnabled",
        "OKActions",
        "AlarmActions",
        "InsufficientDataActions",
        "Dimensions",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluateLowSampleCountPercentile",
        "Metrics",
        "ThresholdMetricId",
        *_CLIENT_KEYS,
    ):
        if key in properties:
            arguments[key] = properties[key]
    for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
        if key in arguments:
            arguments[key] = int(arguments[key])
    if "Threshold" in arguments:
        arguments["Threshold"] = float(arguments["Threshold"])
    if "ActionsEnabled" in arguments:
        arguments["ActionsEnabled"] = arguments["ActionsEnabled"] in (True, "true", "True")
    cloudwatch.put_metric_alarm(**arguments)
    return name


def _plan_function(
    function: Function, resolver: Resolver, clients: Clients, model_dir: Path, stack_name: str
) -> FunctionPlan:
    properties = resolver.resolve(function.properties)
    name = resolver.physical_name(function.logical_id)
    environment = {k: str(v) for k, v in resolver.resolve(function.environment).items()}
    if "MODEL_DIR" in environment or properties.get("PackageType") == "Image":
        environment["MODEL_DIR"] = str(model_dir)
    environment.update(
        {
            # What Lambda sets in every environment, and what `sam local` sets so Powertools
            # leaves X-Ray alone.
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(properties.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_SAM_LOCAL": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    spec = FunctionSpec(
        logical_id=function.logical_id,
        name=name,
        module=function.handler_module,
        handler=function.handler_function,
        environment=environment,
        timeout_s=float(properties.get("Timeout", 3)),
        memory_mb=int(properties.get("MemorySize", 128)),
    )
    plan = FunctionPlan(spec, alias=properties.get("AutoPublishAlias"))

    for event_name, event in (properties.get("Events") or {}).items():
        kind, details = event.get("Type"), event.get("Properties", {})
        if kind == "Api":
            plan.api_routes.append(Route(str(details["Path"]), str(details["Method"]).upper()))
            plan.triggers.append(f"{str(details['Method']).upper()} {details['Path']}")
        elif kind == "SNS":
            plan.sources.append(
                _subscribe_queue(clients, str(details["Topic"]), f"{stack_name}-{event_name}")
            )
            plan.triggers.append(f"SNS {details['Topic'].rsplit(':', 1)[-1]}")
        elif kind == "S3":
            continue  # wired with the bucket's other notifications
        else:
            logger.warning("event %s of type %s is not delivered locally", event_name, kind)

    destination = (
        (properties.get("EventInvokeConfig") or {}).get("DestinationConfig", {}).get("OnFailure", {})
    )
    target = destination.get("Destination")
    if isinstance(target, str) and target.startswith("arn:aws:sqs:"):
        plan.on_failure_queue = clients("sqs").get_queue_url(QueueName=target.rsplit(":", 1)[-1])["QueueUrl"]
    return plan


def _local_queue(clients: Clients, name: str) -> tuple[str, str]:
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName=f"{LOCAL_QUEUE_PREFIX}-{name}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _subscribe_queue(clients: Clients, topic_arn: str, name: str) -> Source:
    url, arn = _local_queue(clients, name)
    clients("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return Source(url, arn, "sns")


def _wire_bucket_notifications(
    template: Template,
    resolver: Resolver,
    clients: Clients,
    functions: dict[str, FunctionPlan],
    active: dict[str, Any],
) -> None:
    # Every S3 notification to a function, from SAM events or the bucket's own configuration,
    # becomes a queue notification; a bucket holds one configuration, so they are put together.
    arns = {resolver.arn(lid): lid for lid in functions}
    wanted: dict[str, list[tuple[str, list[str], Any]]] = {}
    for lid, function in template.functions().items():
        if lid not in functions:
            continue
        for event in resolver.resolve(function.events).values():
            if event.get("Type") == "S3":
                details = event["Properties"]
                events = details["Events"] if isinstance(details["Events"], list) else [details["Events"]]
                wanted.setdefault(str(details["Bucket"]), []).append((lid, events, details.get("Filter")))
    for bucket_lid in (lid for lid, res in active.items() if res.type == "AWS::S3::Bucket"):
        config = resolver.resolve(template.resource(bucket_lid).properties).get(
            "NotificationConfiguration", {}
        )
        for item in config.get("LambdaConfigurations", []):
            if item.get("Function") in arns:
                target = arns[item["Function"]]
                wanted.setdefault(resolver.physical_name(bucket_lid), []).append(
                    (target, [item["Event"]], item.get("Filter"))
                )

    s3 = clients("s3")
    for bucket, targets in wanted.items():
        queue_configurations = []
        for lid, events, key_filter in targets:
            url, arn = _local_queue(clients, f"{functions[lid].spec.name}-s3")
            functions[lid].sources.append(Source(url, arn, "s3"))
            prefix = _prefix(key_filter)
            functions[lid].triggers.append(f"S3 s3://{bucket}/{prefix}*")
            entry: dict[str, Any] = {"QueueArn": arn, "Events": events}
            rules = (key_filter or {}).get("S3Key", {}).get("Rules", [])
            if rules:
                # CloudFormation spells the filter S3Key.Rules, the S3 API Key.FilterRules.
                entry["Filter"] = {"Key": {"FilterRules": rules}}
            queue_configurations.append(entry)
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queue_configurations}
        )


def _prefix(key_filter: Any) -> str:
    rules = (key_filter or {}).get("S3Key", {}).get("Rules", [])
    return next((str(r["Value"]) for r in rules if str(r.get("Name", "")).lower() == "prefix"), "")
