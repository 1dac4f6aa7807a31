"""template.yaml against the code it deploys: handlers, environment, notifications, metrics, policies.

The handlers are written alongside the template; a test about a handler file that does not exist
yet is skipped with a reason that says so, and runs as soon as the file lands.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.cfn import REPO_ROOT, Function, Resolver, Template, load_template
from truthwatch import telemetry

PACKAGE_DIR = REPO_ROOT / "layers" / "truthwatch" / "truthwatch"
CONTRACTS = REPO_ROOT / "docs" / "contracts.md"

# Set by Lambda itself (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html),
# or by the local stack only.
RUNTIME_VARIABLES = {
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER", "_X_AMZN_TRACE_ID",
    "TZ", "AWS_XRAY_CONTEXT_MISSING", "AWS_XRAY_DAEMON_ADDRESS",
}  # fmt: skip
LOCAL_ONLY = {"AWS_ENDPOINT_URL"}

# The AWS metrics the template may alarm on, with the dimension sets AWS publishes them under.
AWS_METRICS: dict[tuple[str, str], set[frozenset[str]]] = (
    {
        ("AWS/Lambda", name): {
            frozenset({"FunctionName"}),
            frozenset({"FunctionName", "Resource"}),
            frozenset({"FunctionName", "Resource", "ExecutedVersion"}),
        }
        for name in ("Errors", "Duration", "Throttles", "Invocations")
    }
    | {
        ("AWS/ApiGateway", name): {frozenset({"ApiName"}), frozenset({"ApiName", "Stage"})}
        for name in ("5XXError", "4XXError", "Count", "Latency", "IntegrationLatency")
    }
    | {("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {frozenset({"QueueName"})}}
)

# Statements allowed a "*" resource, because the action cannot be scoped to one.
# The value is the condition key that must narrow it, or None where the action has none.
WILDCARD_EXCEPTIONS: dict[str, str | None] = {
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
    "cloudwatch:GetMetricData": None,
}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


@pytest.fixture(scope="module")
def resolver(template: Template) -> Resolver:
    # Deploy-time attributes (a published version number) only need a stand-in here.
    return template.resolver(
        template.parameters(), stack_name=template.stack_name(), attributes=lambda lid, attr: f"{lid}.{attr}"
    )


def short_name(function: Function) -> str:
    """``inference``, ``metrics`` or ``alarm``: the function's folder under functions/."""
    return Path(function.code_dir).name


def function_params() -> list[Any]:
    return [pytest.param(lid, id=lid) for lid in load_template().functions()]


def require_handler(function: Function) -> None:
    assert function.handler_path.exists(), f"{function.handler_path.relative_to(REPO_ROOT)} does not exist"


# ---------------------------------------------------------------- handlers


@pytest.mark.parametrize("logical_id", function_params())
def test_handler_exists_and_imports(template: Template, logical_id: str) -> None:
    function = template.functions()[logical_id]
    require_handler(function)

    module = importlib.import_module(function.handler_module)

    assert callable(getattr(module, function.handler_function))


PINNED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][0-9A-Za-z.+!-]*")
"""One exact pin: a distribution name, ``==`` and a literal version (no wildcard, range or marker)."""

PINNED_SETS = sorted(
    {*REPO_ROOT.glob("functions/*/requirements*.txt"), *REPO_ROOT.glob("requirements/*.txt")}
    - {REPO_ROOT / "requirements" / "audit-triage.txt"}
)


def test_every_function_has_a_requirements_file(template: Template) -> None:
    for function in template.functions().values():
        assert (REPO_ROOT / function.code_dir / "requirements.txt").is_file(), function.code_dir


@pytest.mark.parametrize("requirements", PINNED_SETS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_requirement_is_an_exact_pin(requirements: Path) -> None:
    lines = [ln.split("#")[0].strip() for ln in requirements.read_text(encoding="utf-8").splitlines()]
    entries = [ln for ln in lines if ln]

    assert entries
    assert [ln for ln in entries if not PINNED.fullmatch(ln)] == []


# ---------------------------------------------------------------- environment


def contract_variables() -> dict[str, set[str]]:
    """Variable -> functions that read it, from the environment table of docs/contracts.md."""
    section = (
        CONTRACTS.read_text(encoding="utf-8").split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    )
    variables: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[A-Z_]+`", cells[0]):
            readers = {part.split()[0] for part in cells[1].split(",")}
            variables[cells[0].strip("`")] = (
                {"inference", "metrics", "alarm"} if "all" in readers else readers
            )
    return variables


def package_modules(path: Path, seen: set[Path] | None = None) -> Iterator[Path]:
    """``path`` and every truthwatch module it imports, directly or through another one."""
    seen = set() if seen is None else seen
    if path in seen or not path.exists():
        return
    seen.add(path)
    yield path
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "truthwatch":
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.split(".")[0] == "truthwatch"]
        for name in names:
            parts = name.split(".")[1:]
            if parts:
                yield from package_modules(PACKAGE_DIR.joinpath(*parts).with_suffix(".py"), seen)


def variables_read(path: Path, known: set[str]) -> set[str]:
    """Environment variable names a module reads.

    Direct reads (``environ["X"]``, ``environ.get("X")``, ``getenv("X")``) of any name count; in a
    module that touches the environment, so does every string constant naming a variable of the
    contract (settings classes keep their names in tables and read them in a loop).
    """
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    readers = _environment_readers(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        key = _environment_key(node)
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Name):
            key = node.args[0] if node.func.id in readers else key
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.add(key.value)
    if "environ" in source or "from_env" in source:
        constants = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        found |= constants & known
    return found


def _environment_key(node: ast.AST) -> ast.expr | None:
    """The key of ``environ[key]``, ``environ.get(key)`` or ``getenv(key)``; ``None`` for other nodes."""
    if isinstance(node, ast.Subscript) and _is_environment(node.value):
        return node.slice
    if isinstance(node, ast.Call) and node.args and _reads_environment(node.func):
        return node.args[0]
    return None


def _environment_readers(tree: ast.AST) -> set[str]:
    """Functions that read the variable their first parameter names (``def required(name)``)."""
    readers = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef) or not function.args.args:
            continue
        parameter = function.args.args[0].arg
        keys = (_environment_key(node) for node in ast.walk(function))
        if any(isinstance(key, ast.Name) and key.id == parameter for key in keys):
            readers.add(function.name)
    return readers


def _reads_environment(func: ast.expr) -> bool:
    """``getenv(...)``, or ``get``/``pop`` on an environment mapping."""
    if not isinstance(func, ast.Attribute):
        return False
    return func.attr == "getenv" or (func.attr in {"get", "pop"} and _is_environment(func.value))


def _is_environment(node: ast.expr) -> bool:
    """``os.environ`` or a mapping named like one (``env``, ``environ``, ``environment``)."""
    text = ast.unparse(node)
    return text.endswith("environ") or text.split(".")[-1] in {"env", "environ", "environment"}


@pytest.mark.parametrize("logical_id", function_params())
def test_every_contract_variable_of_a_function_is_set(
    template: Template, resolver: Resolver, logical_id: str
) -> None:
    function = template.functions()[logical_id]
    environment = resolver.resolve(function.environment)

    expected = {name for name, readers in contract_variables().items() if short_name(function) in readers}

    assert expected - LOCAL_ONLY
    assert sorted(expected - LOCAL_ONLY - set(environment)) == []
    assert all(str(value).strip() for value in environment.values())


@pytest.mark.parametrize("logical_id", function_params())
def test_every_variable_a_handler_reads_is_set(
    template: Template, resolver: Resolver, logical_id: str
) -> None:
    function = template.functions()[logical_id]
    require_handler(function)
    environment = set(resolver.resolve(function.environment))
    known = set(contract_variables())

    read = {
        name for module in package_modules(function.handler_path) for name in variables_read(module, known)
    }

    assert read, f"found no environment reads in {function.handler_path.name} and its modules"
    assert sorted(read - environment - RUNTIME_VARIABLES - LOCAL_ONLY) == []


def test_local_only_variables_are_never_deployed(template: Template) -> None:
    for function in template.functions().values():
        assert not LOCAL_ONLY & set(function.environment)


def test_metrics_namespace_variable_is_the_telemetry_namespace(
    template: Template, resolver: Resolver
) -> None:
    for function in template.functions().values():
        assert resolver.resolve(function.environment)["POWERTOOLS_METRICS_NAMESPACE"] == telemetry.NAMESPACE


# ---------------------------------------------------------------- label notification


def s3_filter_matches(rules: list[dict[str, str]], key: str) -> bool:
    """S3's key filter: every prefix and suffix rule must hold."""
    checks = {"prefix": key.startswith, "suffix": key.endswith}
    return all(checks[rule["Name"].lower()](rule["Value"]) for rule in rules)


def test_label_notification_reaches_the_metrics_function_for_labels_only(template: Template) -> None:
    events = template.functions()["MetricsFunction"].events
    s3_events = [e["Properties"] for e in events.values() if e["Type"] == "S3"]

    assert len(s3_events) == 1
    (event,) = s3_events
    rules = event["Filter"]["S3Key"]["Rules"]
    assert event["Bucket"] == {"Ref": "DataBucket"}
    assert event["Events"] in ("s3:ObjectCreated:*", ["s3:ObjectCreated:*"])
    assert s3_filter_matches(rules, "labels/2026/12/batch-01.csv.gz")
    assert s3_filter_matches(rules, "labels/ground-truth.jsonl")
    for key in (
        "reports/v1/2026-12-01/batch.json",
        "rejected/labels/a.csv.jsonl",
        "models/digits/v1/model.json",
        "labels-archive/a.csv",
    ):
        assert not s3_filter_matches(rules, key), key


# ---------------------------------------------------------------- metrics


def published_dimension_sets(spec: telemetry.MetricSpec) -> set[frozenset[str]]:
    """The dimension sets the code publishes ``spec`` under, observed from the publishers."""
    if spec.publisher == "metrics":
        from truthwatch.publish import MetricPoint, metric_data

        point = MetricPoint(spec.name, 0.5, datetime(2026, 1, 1, tzinfo=UTC), "digits", "v1")
        return {frozenset(d["Name"] for d in datum["Dimensions"]) for datum in metric_data([point])}

    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from truthwatch.inference_metrics import add_model_dimensions

    provider = AmazonCloudWatchEMFProvider(namespace=telemetry.NAMESPACE, service="")
    add_model_dimensions(provider, SimpleNamespace(name="digits", version="v1"))  # type: ignore[arg-type]
    provider.add_metric(name=spec.name, unit=spec.unit, value=1)
    directive = provider.serialize_metric_set()["_aws"]["CloudWatchMetrics"][0]
    return {frozenset(dimensions) for dimensions in directive["Dimensions"]}


def alarm_metrics(properties: dict[str, Any]) -> list[dict[str, Any]]:
    """Namespace, name and dimensions of each metric an alarm reads (single metric or metric math)."""
    if "MetricName" in properties:
        return [properties]
    return [q["MetricStat"]["Metric"] for q in properties.get("Metrics", []) if "MetricStat" in q]


def test_every_alarm_watches_a_published_metric(template: Template, resolver: Resolver) -> None:
    functions = {resolver.physical_name(lid) for lid in template.functions()}
    queues = {resolver.physical_name(lid) for lid in template.resources_of_type("AWS::SQS::Queue")}

    alarms = template.resources_of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 12
    for logical_id, alarm in alarms.items():
        for metric in alarm_metrics(resolver.resolve(alarm.properties)):
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            namespace, name = metric["Namespace"], metric["MetricName"]
            if namespace == telemetry.NAMESPACE:
                assert name in telemetry.BY_NAME, logical_id
                assert frozenset(dimensions) in published_dimension_sets(telemetry.BY_NAME[name]), logical_id
                assert dimensions["ModelName"] == resolver.parameters["ModelName"]
                continue
            assert frozenset(dimensions) in AWS_METRICS[(namespace, name)], logical_id
            if "FunctionName" in dimensions:
                assert dimensions["FunctionName"] in functions, logical_id
            if "QueueName" in dimensions:
                assert dimensions["QueueName"] in queues, logical_id
            if "ApiName" in dimensions:
                assert dimensions["ApiName"] == resolver.resolve(template.resource("Api").properties["Name"])


def test_issue_alarms_cover_quality_and_service(template: Template) -> None:
    watched = {
        (alarm.properties["Namespace"], alarm.properties["MetricName"])
        for alarm in template.resources_of_type("AWS::CloudWatch::Alarm").values()
    }
    quality = {telemetry.ACCURACY, telemetry.F1_MACRO, telemetry.FEATURE_PSI_MAX, telemetry.PREDICTION_PSI}

    assert {(telemetry.NAMESPACE, spec.name) for spec in quality} <= watched
    assert {
        (telemetry.NAMESPACE, telemetry.CAPTURE_FAILURES.name),
        (telemetry.NAMESPACE, "inference_latency"),
    } <= watched
    assert {("AWS/ApiGateway", "5XXError"), ("AWS/Lambda", "Errors")} <= watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched


def test_dashboard_graphs_only_published_metrics(template: Template, resolver: Resolver) -> None:
    body = json.loads(resolver.resolve(template.resource("Dashboard").properties["DashboardBody"]))
    alarm_arns = {resolver.arn(lid) for lid in template.resources_of_type("AWS::CloudWatch::Alarm")}

    searched, graphed = set(), set()
    for widget in body["widgets"]:
        properties = widget["properties"]
        assert set(properties.get("alarms", [])) <= alarm_arns
        for row in properties.get("metrics", []):
            if isinstance(row[0], dict):
                searched |= set(re.findall(r'MetricName=\\?"(\w+)\\?"', row[0]["expression"]))
                continue
            namespace, name, *rest = row
            dimensions = frozenset(str(item) for item in rest[0::2] if not isinstance(item, dict))
            if namespace == telemetry.NAMESPACE:
                assert dimensions in published_dimension_sets(telemetry.BY_NAME[name]), name
                graphed.add(name)
            else:
                assert dimensions in AWS_METRICS[(namespace, name)], name

    assert {"accuracy_score", "f1_macro_score", "feature_psi_max", "prediction_psi"} <= searched
    assert searched <= set(telemetry.BY_NAME)
    assert "inference_latency" in graphed


# ---------------------------------------------------------------- policies


def statements(function: Function) -> Iterator[tuple[str, dict[str, Any]]]:
    """(policy template or "Statement", statement) for each policy entry of a function."""
    for policy in function.policies:
        for kind, value in policy.items():
            if kind == "Statement":
                for statement in value:
                    yield kind, statement
            else:
                yield kind, value


def template_arns(template: Template, resolver: Resolver) -> dict[str, str]:
    """ARN -> logical id, for every resource type that has an ARN form."""
    arns: dict[str, str] = {}
    for logical_id in template.resources:
        try:
            arns[resolver.arn(logical_id)] = logical_id
        except ValueError:
            continue
    return arns


def owner_of(resource_arn: str, arns: dict[str, str], resolver: Resolver) -> str | None:
    """The logical id a policy resource points into: itself, an object prefix, or a table index."""
    if resource_arn in arns:
        return arns[resource_arn]
    bucket = arns.get(resource_arn.split("/", 1)[0])
    if bucket is not None and resolver.template.resource(bucket).type == "AWS::S3::Bucket":
        return bucket
    if "/index/" in resource_arn:
        return arns.get(resource_arn.split("/index/", 1)[0])
    return None


@pytest.mark.parametrize("logical_id", function_params())
def test_every_policy_resource_is_a_resource_of_the_template(
    template: Template, resolver: Resolver, logical_id: str
) -> None:
    function = template.functions()[logical_id]
    arns = template_arns(template, resolver)
    sam_templates = {"DynamoDBWritePolicy": "TableName", "DynamoDBReadPolicy": "TableName"}
    # The sender's SES identity may exist outside the stack (SenderIdentity=existing): the address
    # or its domain, both named by the SenderEmail parameter.
    sender = template.parameters()["SenderEmail"]
    identities = {
        resolver.arn("SesSenderIdentity").replace(sender, name) for name in (sender, sender.split("@")[1])
    }

    for kind, statement in statements(function):
        if kind != "Statement":
            assert kind in sam_templates, f"{logical_id} uses policy template {kind}; add it here"
            table = resolver.resolve(statement[sam_templates[kind]])
            assert table in {
                resolver.physical_name(lid) for lid in template.resources_of_type("AWS::DynamoDB::Table")
            }
            continue
        resources = resolver.resolve(statement["Resource"])
        for resource in resources if isinstance(resources, list) else [resources]:
            if resource == "*":
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                assert len(actions) == 1 and actions[0] in WILDCARD_EXCEPTIONS, (logical_id, statement)
                condition_key = WILDCARD_EXCEPTIONS[actions[0]]
                if condition_key is None:
                    assert "Condition" not in statement, (logical_id, statement)
                else:
                    assert statement["Condition"]["StringEquals"][condition_key] == telemetry.NAMESPACE
                continue
            assert resource in identities or owner_of(resource, arns, resolver) is not None, (
                logical_id,
                resource,
            )


def s3_grants(template: Template, resolver: Resolver, logical_id: str) -> set[tuple[str, str]]:
    """(action, bucket prefix) pairs a function's own statements grant on the data bucket."""
    bucket_arn = resolver.arn("DataBucket")
    grants: set[tuple[str, str]] = set()
    for kind, statement in statements(template.functions()[logical_id]):
        if kind != "Statement":
            continue
        resources = resolver.resolve(statement["Resource"])
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for resource in resources if isinstance(resources, list) else [resources]:
            if resource.startswith(bucket_arn + "/"):
                grants |= {(action, resource.removeprefix(bucket_arn + "/")) for action in actions}
            elif resource == bucket_arn:
                # Bucket-level actions (ListBucket) are scoped by their s3:prefix condition.
                prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                grants |= {(action, prefix) for action in actions for prefix in prefixes}
    return grants


def test_bucket_access_follows_the_bucket_layout(template: Template, resolver: Resolver) -> None:
    assert s3_grants(template, resolver, "InferenceFunction") == {("s3:PutObject", "models/*")}
    assert s3_grants(template, resolver, "MetricsFunction") == {
        ("s3:GetObject", "labels/*"),
        ("s3:GetObjectVersion", "labels/*"),
        ("s3:GetObject", "models/*"),
        ("s3:GetObjectVersion", "models/*"),
        ("s3:ListBucket", "models/"),
        ("s3:ListBucket", "models/*"),
        ("s3:PutObject", "reports/*"),
        ("s3:PutObject", "rejected/*"),
        ("s3:AbortMultipartUpload", "reports/*"),
        ("s3:AbortMultipartUpload", "rejected/*"),
    }
    assert s3_grants(template, resolver, "AlarmFunction") == set()  # it only links to reports


def test_reads_of_the_versioned_bucket_may_name_a_version(template: Template, resolver: Resolver) -> None:
    # Notifications of a versioned bucket carry a version id and the metrics function reads by
    # it; S3 authorises GetObject with VersionId as s3:GetObjectVersion.
    versioning = template.resource("DataBucket").properties["VersioningConfiguration"]
    assert versioning["Status"] == "Enabled"

    for logical_id in template.functions():
        grants = s3_grants(template, resolver, logical_id)
        read = {prefix for action, prefix in grants if action == "s3:GetObject"}
        by_version = {prefix for action, prefix in grants if action == "s3:GetObjectVersion"}
        assert read <= by_version, (logical_id, read - by_version)


def test_alarm_function_sends_only_as_the_sender_identity(template: Template, resolver: Resolver) -> None:
    ses = [
        s for kind, s in statements(template.functions()["AlarmFunction"]) if "ses:SendEmail" in s["Action"]
    ]

    sender = template.parameters()["SenderEmail"]
    identities = "arn:aws:ses:us-east-1:123456789012:identity/"

    assert len(ses) == 1
    assert resolver.resolve(ses[0]["Resource"]) == [identities + sender, identities + sender.split("@")[1]]
    assert resolver.arn("SesSenderIdentity") == identities + sender


@pytest.mark.parametrize(("choice", "created"), [("create", True), ("existing", False)])
def test_sender_identity_is_created_only_when_asked(template: Template, choice: str, created: bool) -> None:
    resolver = template.resolver(template.parameters(overrides={"SenderIdentity": choice}))

    assert resolver.is_active("SesSenderIdentity") is created


@pytest.mark.parametrize(
    ("logical_id", "calls"),
    [("InferenceFunction", {"dynamodb:BatchWriteItem"}), ("MetricsFunction", {"dynamodb:BatchGetItem"})],
)
def test_prediction_table_grants_only_the_calls_the_code_makes(
    template: Template, resolver: Resolver, logical_id: str, calls: set[str]
) -> None:
    table = resolver.arn("PredictionsTable")
    granted: set[str] = set()
    for kind, statement in statements(template.functions()[logical_id]):
        assert kind == "Statement", f"{logical_id} uses policy template {kind}"
        resources = resolver.resolve(statement["Resource"])
        if table in (resources if isinstance(resources, list) else [resources]):
            actions = statement["Action"]
            granted |= set(actions if isinstance(actions, list) else [actions])

    assert granted == calls
