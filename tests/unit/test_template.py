"""template.yaml and samconfig.toml: what they declare, against the contracts and the issue's rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.cfn import REPO_ROOT, Resolver, Template, load_template

CONTRACTS = REPO_ROOT / "docs" / "contracts.md"
ENVS = ("default", "dev", "prod")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def resolver_for(template: Template, env: str = "default", **overrides: str) -> Resolver:
    return template.resolver(template.parameters(env, overrides), stack_name=template.stack_name(env))


def contract_resources() -> dict[str, str]:
    """Logical id -> type from the resources table of docs/contracts.md."""
    section = CONTRACTS.read_text(encoding="utf-8").split("## Resources", 1)[1].split("\n## ", 1)[0]
    resources: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        resource_type = re.findall(r"`([^`]+)`", cells[1])[0]
        for logical_id in re.findall(r"`([^`]+)`", cells[0]):
            resources[logical_id] = resource_type
    return resources


def test_contract_resources_exist_with_their_types(template: Template) -> None:
    expected = contract_resources()

    assert len(expected) >= 12
    assert {lid: template.resource(lid).type for lid in expected} == expected


def test_issue_parameters_are_declared_with_descriptions(template: Template) -> None:
    parameters = template.body["Parameters"]
    required = {
        "ModelName", "AlertEmail", "SenderEmail", "AccuracyThreshold", "F1Threshold", "DriftThreshold",
        "LatencyThresholdMs", "CaptureInputs", "CaptureTtlDays", "ApiAuth", "LogRetentionDays", "Stage",
    }  # fmt: skip

    assert required <= set(parameters)
    assert all(spec.get("Description", "").strip() for spec in parameters.values())
    assert parameters["AccuracyThreshold"]["Default"] == 0.9
    assert parameters["DriftThreshold"]["Default"] == 0.2


def test_every_string_parameter_is_constrained(template: Template) -> None:
    for name, spec in template.body["Parameters"].items():
        if spec["Type"] == "String":
            assert "AllowedValues" in spec or "AllowedPattern" in spec, name
        else:
            assert "AllowedValues" in spec or {"MinValue", "MaxValue"} <= set(spec), name


@pytest.mark.parametrize("env", ENVS)
def test_samconfig_environments_give_valid_parameters(template: Template, env: str) -> None:
    parameters = template.parameters(env)
    deploy = template.samconfig[env]["deploy"]["parameters"]

    assert template.stack_name(env) == template.stack_name(env).lower()
    assert deploy["resolve_s3"] is True
    assert deploy["resolve_image_repos"] is True
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert parameters["Stage"] == ("prod" if env == "prod" else "dev")


def test_prod_confirms_its_changesets_and_stacks_differ(template: Template) -> None:
    assert template.samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    assert len({template.stack_name(env) for env in ENVS}) == len(ENVS)


def test_api_auth_cannot_be_switched_off(template: Template) -> None:
    assert set(template.body["Parameters"]["ApiAuth"]["AllowedValues"]) == {"IAM", "API_KEY"}


@pytest.mark.parametrize(("auth", "scheme"), [("IAM", "sigv4"), ("API_KEY", "api_key")])
def test_every_api_method_requires_the_chosen_authentication(
    template: Template, auth: str, scheme: str
) -> None:
    resolver = resolver_for(template, ApiAuth=auth)
    body = resolver.resolve(template.resource("Api").properties["DefinitionBody"])
    schemes = body["components"]["securitySchemes"]

    methods = [(path, verb, op) for path, ops in body["paths"].items() for verb, op in ops.items()]

    assert len(methods) == 4
    for path, verb, operation in methods:
        assert operation["security"] == [{scheme: []}], (path, verb)
        assert operation["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
        assert operation["x-amazon-apigateway-integration"]["uri"].endswith(
            "InferenceFunction.Alias/invocations"
        )
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert schemes["api_key"]["name"] == "x-api-key"


@pytest.mark.parametrize(("auth", "active"), [("IAM", False), ("API_KEY", True)])
def test_usage_plan_and_key_exist_only_for_api_key_auth(template: Template, auth: str, active: bool) -> None:
    resolver = resolver_for(template, ApiAuth=auth)

    assert [resolver.is_active(lid) for lid in ("ApiUsagePlan", "ApiKey", "ApiUsagePlanKey")] == [active] * 3


def test_api_events_match_the_definition_body(template: Template) -> None:
    events = template.functions()["InferenceFunction"].events
    paths = template.resource("Api").properties["DefinitionBody"]["paths"]

    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"]) for e in events.values() if e["Type"] == "Api"
    }

    assert routes == {(path, verb) for path, ops in paths.items() for verb in ops}
    assert all(e["Properties"]["RestApiId"] == {"Ref": "Api"} for e in events.values())


def test_api_routes_are_the_routes_the_handler_serves(template: Template) -> None:
    events = template.functions()["InferenceFunction"].events
    served = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))["paths"]

    routes = {(e["Properties"]["Path"], e["Properties"]["Method"]) for e in events.values()}

    assert routes == {(path, verb) for path, ops in served.items() for verb in ops}


def test_api_stage_logs_access_and_throttles(template: Template) -> None:
    properties = template.resource("Api").properties
    settings = properties["MethodSettings"][0]

    assert properties["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert json.loads(properties["AccessLogSetting"]["Format"])["status"] == "$context.status"
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurst"}


def test_data_bucket_is_private_encrypted_versioned_and_tls_only(template: Template) -> None:
    bucket = template.resource("DataBucket").properties
    policy = template.resource("DataBucketPolicy").properties["PolicyDocument"]["Statement"]

    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy
    )


def test_lifecycle_expires_reports_and_rejected_rows(template: Template) -> None:
    rules = template.resource("DataBucket").properties["LifecycleConfiguration"]["Rules"]
    by_prefix = {rule.get("Prefix"): rule for rule in rules}

    assert by_prefix["reports/"]["ExpirationInDays"] == {"Ref": "ReportRetentionDays"}
    assert by_prefix["rejected/"]["ExpirationInDays"] == {"Ref": "RejectedRetentionDays"}
    assert "labels/" not in by_prefix


@pytest.mark.parametrize("env", ENVS)
def test_data_bucket_variable_names_the_data_bucket(template: Template, env: str) -> None:
    resolver = resolver_for(template, env)

    for function in template.functions().values():
        assert resolver.resolve(function.environment)["DATA_BUCKET"] == resolver.physical_name("DataBucket")
    assert len(resolver.physical_name("DataBucket")) <= 63


@pytest.mark.parametrize(
    ("table", "key", "ttl"),
    [("PredictionsTable", "inference_id", "expires_at"), ("IdempotencyTable", "id", "expiration")],
)
def test_tables_have_their_contract_key_ttl_backups_and_encryption(
    template: Template, table: str, key: str, ttl: str
) -> None:
    properties = template.resource(table).properties

    assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template: Template) -> None:
    key_policy = template.resource("AlarmTopicKey").properties["KeyPolicy"]["Statement"]

    assert template.resource("AlarmTopic").properties["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in key_policy)


def test_each_function_has_a_log_group_with_retention(template: Template) -> None:
    groups = template.resources_of_type("AWS::Logs::LogGroup").values()
    names = {json.dumps(group.properties["LogGroupName"]) for group in groups}

    for logical_id in template.functions():
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{logical_id}}}"}) in names
    assert all(group.properties["RetentionInDays"] == {"Ref": "LogRetentionDays"} for group in groups)


def test_asynchronous_functions_send_failures_to_their_dead_letter_queue(template: Template) -> None:
    functions = template.functions()

    for logical_id, queue in (
        ("MetricsFunction", "MetricsDeadLetterQueue"),
        ("AlarmFunction", "AlarmDeadLetterQueue"),
    ):
        on_failure = functions[logical_id].properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
        assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": [queue, "Arn"]}}


def test_zip_functions_use_the_shared_layer_and_python312(template: Template) -> None:
    layer = template.resource("SharedLayer")

    assert layer.metadata["BuildMethod"] == "python3.12"
    for logical_id in ("MetricsFunction", "AlarmFunction"):
        properties = template.functions()[logical_id].properties
        assert properties["Runtime"] == "python3.12"
        assert properties["Layers"] == [{"Ref": "SharedLayer"}]


def test_inference_image_deploys_through_a_canary_with_rollback_alarms(template: Template) -> None:
    function = template.resource("InferenceFunction")
    preference = function.properties["DeploymentPreference"]

    assert function.properties["PackageType"] == "Image"
    assert function.properties["AutoPublishAlias"] == "live"
    assert preference["Type"].startswith("Canary")
    assert (REPO_ROOT / function.metadata["DockerContext"]).is_dir()
    for alarm in preference["Alarms"]:
        dimensions = {d["Name"]: d["Value"] for d in template.resource(alarm["Ref"]).properties["Dimensions"]}
        assert dimensions["Resource"] == {"Fn::Sub": "${InferenceFunction}:live"}
        assert dimensions["ExecutedVersion"] == {"Fn::GetAtt": ["InferenceFunction", "Version.Version"]}


def test_every_alarm_says_what_to_check_and_notifies_the_topic(template: Template) -> None:
    rollback = {
        a["Ref"] for a in template.resource("InferenceFunction").properties["DeploymentPreference"]["Alarms"]
    }
    resolver = resolver_for(template)

    for logical_id, alarm in template.resources_of_type("AWS::CloudWatch::Alarm").items():
        description = str(resolver.resolve(alarm.properties["AlarmDescription"]))
        assert "First check" in description, logical_id
        topics = [{"Ref": "AlarmTopic"}]
        if logical_id == "AlarmDeadLetterAlarm":
            topics.append({"Ref": "AlarmFallbackTopic"})
        if logical_id not in rollback:
            assert alarm.properties["AlarmActions"] == topics, logical_id
            assert alarm.properties["OKActions"] == topics, logical_id


def test_failed_alarm_delivery_reaches_a_person_without_the_alarm_function(template: Template) -> None:
    resolver = resolver_for(template, AlertEmail="first@example.com,second@example.com")
    topic = template.resource("AlarmFallbackTopic").properties

    (subscription,) = resolver.resolve(topic["Subscription"])

    assert subscription == {"Protocol": "email", "Endpoint": "first@example.com"}
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    for function in template.functions().values():
        assert "AlarmFallbackTopic" not in json.dumps(function.events)


def test_quality_alarms_ignore_hours_without_labels(template: Template) -> None:
    for logical_id in ("AccuracyAlarm", "F1Alarm", "FeatureDriftAlarm", "PredictionDriftAlarm"):
        properties = template.resource(logical_id).properties
        assert properties["TreatMissingData"] == "notBreaching"
        assert properties["Period"] == 3600
        assert properties["EvaluationPeriods"] == {"Ref": "QualityWindowHours"}


@pytest.mark.parametrize("env", ENVS)
def test_quality_window_stays_within_what_cloudwatch_evaluates(template: Template, env: str) -> None:
    spec = template.body["Parameters"]["QualityWindowHours"]
    hours = int(template.parameters(env)["QualityWindowHours"])

    # An alarm with hourly periods evaluates at most seven days (PutMetricAlarm, Period).
    assert spec["MaxValue"] * 3600 <= 604800
    assert spec["MinValue"] <= hours <= spec["MaxValue"]


def test_outputs_describe_the_entry_points(template: Template) -> None:
    outputs = template.body["Outputs"]

    assert {"ApiUrl", "DataBucketName", "PredictionsTableName", "AlarmTopicArn", "DashboardUrl"} <= set(
        outputs
    )
    assert all(output["Description"].strip() for output in outputs.values())


def test_checkov_skips_carry_a_reason(template: Template) -> None:
    skips: list[dict[str, Any]] = [
        skip
        for res in template.resources.values()
        for skip in res.metadata.get("checkov", {}).get("skip", [])
    ]

    assert skips
    assert all(re.fullmatch(r"CKV_AWS_\d+", s["id"]) and len(s["comment"]) > 20 for s in skips)


def test_template_comments_sit_above_resources() -> None:
    lines = Path(REPO_ROOT / "template.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("Resources:")
    end = lines.index("Outputs:")
    resource_lines = [i for i in range(start, end) if re.match(r"^  [A-Z]\w+:$", lines[i])]
    commented = [i for i in resource_lines if lines[i - 1].lstrip().startswith("#")]

    assert len(commented) >= len(resource_lines) // 2


def test_image_build_arg_and_runtime_backend_agree(template: Template) -> None:
    function = template.resource("InferenceFunction")
    environment = function.properties["Environment"]["Variables"]

    assert function.metadata["DockerBuildArgs"]["MODEL_BACKEND"] == environment["MODEL_BACKEND"]
    assert function.metadata["DockerBuildArgs"]["MODEL_VARIANT"] == environment["MODEL_VARIANT"]
    assert function.properties["ImageConfig"]["Command"] == ["app.lambda_handler"]
