"""Read ``template.yaml`` the way CloudFormation would: tags, parameters, conditions, names.

The local stack creates what the template declares, and the template tests prove its wiring; both
read the template through this module, so neither keeps a second list of resources.

Examples
--------
>>> template = load_template()  # doctest: +SKIP
>>> params = template.parameters(env="dev")  # doctest: +SKIP
>>> resolver = template.resolver(params)  # doctest: +SKIP
>>> resolver.resolve(template.resource("PredictionsTable").properties["TableName"])  # doctest: +SKIP

Notes
-----
Only what truthwatch's template uses is evaluated: ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If``,
``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``, ``Fn::Join``, ``Fn::Select``,
``Fn::Split``, ``Fn::FindInMap`` and ``AWS::NoValue``. Anything else raises
:class:`TemplateError` naming the function, rather than passing through unresolved. The SAM
transform itself is not run: ``AWS::Serverless::*`` resources are read as written, with the
template's ``Globals`` merged into each function.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAMCONFIG_PATH = REPO_ROOT / "samconfig.toml"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LOCAL_ACCOUNT = "123456789012"
"""The account moto uses unless told otherwise."""
LOCAL_REGION = "us-east-1"

_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")

# A Ref to these types returns an ARN or a URL rather than the resource's name
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference-ref.html).
_REF_IS_ARN = {"AWS::SNS::Topic"}
_REF_IS_URL = {"AWS::SQS::Queue"}

# The property that gives each type its physical name, when a template sets it.
_NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::SES::EmailIdentity": "EmailIdentity",
    SERVERLESS_FUNCTION: "FunctionName",
    "AWS::Serverless::Api": "Name",
    "AWS::Serverless::LayerVersion": "LayerName",
}


class TemplateError(ValueError):
    """The template or samconfig.toml holds something this module cannot read or resolve."""


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that also reads CloudFormation's short-form tags."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if tag_suffix == "Condition":
        name = "Condition"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            # The short form ``!GetAtt Resource.Attribute`` splits on the first dot only.
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def parse_yaml(text: str) -> dict[str, Any]:
    """Parse CloudFormation YAML, turning ``!Ref``, ``!Sub`` and the other tags into long form."""
    document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise TemplateError(f"a template is a mapping, got {type(document).__name__}")
    return document


@dataclass(frozen=True)
class Resource:
    """One resource as the template declares it (properties unresolved)."""

    logical_id: str
    type: str
    properties: dict[str, Any]
    condition: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Function:
    """A ``AWS::Serverless::Function`` with the template's ``Globals`` merged in.

    Attributes
    ----------
    code_dir
        The folder holding the handler, relative to the repository root: ``CodeUri`` for a zip
        function, the Dockerfile's folder for an image function.
    handler
        ``module.function`` as Lambda reads it (``Handler``, or ``ImageConfig.Command[0]``).
    environment
        ``Environment.Variables``, globals first, unresolved.
    """

    logical_id: str
    properties: dict[str, Any]
    code_dir: str
    handler: str
    environment: dict[str, Any]

    @property
    def handler_module(self) -> str:
        """The dotted module path from the repository root, e.g. ``functions.metrics.app``."""
        module = self.handler.rsplit(".", 1)[0]
        return ".".join((*PurePosixPath(self.code_dir).parts, module))

    @property
    def handler_function(self) -> str:
        """The name of the handler callable, e.g. ``lambda_handler``."""
        return self.handler.rsplit(".", 1)[1]

    @property
    def handler_path(self) -> Path:
        """The handler's source file."""
        return REPO_ROOT.joinpath(*self.handler_module.split(".")).with_suffix(".py")

    @property
    def events(self) -> dict[str, Any]:
        """The function's ``Events``, unresolved."""
        events: dict[str, Any] = self.properties.get("Events", {})
        return events

    @property
    def policies(self) -> list[Any]:
        """The function's ``Policies`` as a list (SAM allows a single item too)."""
        policies = self.properties.get("Policies", [])
        return policies if isinstance(policies, list) else [policies]


@dataclass(frozen=True)
class Template:
    """A parsed ``template.yaml`` and the ``samconfig.toml`` beside it."""

    path: Path
    body: dict[str, Any]
    samconfig: dict[str, Any]

    @property
    def resources(self) -> dict[str, Resource]:
        """Every resource by logical id."""
        return {lid: _resource(lid, raw) for lid, raw in self.body.get("Resources", {}).items()}

    def resource(self, logical_id: str) -> Resource:
        """One resource; :class:`TemplateError` names the missing id."""
        raw = self.body.get("Resources", {}).get(logical_id)
        if raw is None:
            raise TemplateError(f"template {self.path.name} declares no resource {logical_id!r}")
        return _resource(logical_id, raw)

    def resources_of_type(self, resource_type: str) -> dict[str, Resource]:
        """The resources of one type, e.g. ``AWS::DynamoDB::Table``, by logical id."""
        return {lid: res for lid, res in self.resources.items() if res.type == resource_type}

    def functions(self) -> dict[str, Function]:
        """Every ``AWS::Serverless::Function`` with ``Globals.Function`` merged in."""
        globals_ = self.body.get("Globals", {}).get("Function", {})
        return {
            lid: _function(lid, res.properties, globals_, res.metadata)
            for lid, res in self.resources_of_type(SERVERLESS_FUNCTION).items()
        }

    def parameters(self, env: str = "default", overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """Parameter values: defaults, then samconfig.toml's overrides for ``env``, then ``overrides``.

        Raises :class:`TemplateError` when a parameter has no value, is not declared, or breaks its
        ``AllowedValues`` or ``AllowedPattern``.
        """
        declared: dict[str, Any] = self.body.get("Parameters", {})
        values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
        values.update(samconfig_overrides(self.samconfig, env))
        values.update(overrides or {})

        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise TemplateError(f"values given for undeclared parameters: {', '.join(unknown)}")
        missing = sorted(set(declared) - set(values))
        if missing:
            raise TemplateError(f"no value and no default for parameters: {', '.join(missing)}")
        for name, value in values.items():
            _check_parameter(name, value, declared[name])
        return values

    def stack_name(self, env: str = "default") -> str:
        """The stack name ``samconfig.toml`` gives ``env`` (deploy, then global parameters)."""
        name = _samconfig_value(self.samconfig, env, "stack_name")
        if not isinstance(name, str):
            raise TemplateError(f"samconfig.toml sets no stack_name for environment {env!r}")
        return name

    def resolver(
        self,
        parameters: Mapping[str, str],
        *,
        stack_name: str = "truthwatch",
        region: str = LOCAL_REGION,
        account: str = LOCAL_ACCOUNT,
        names: Callable[[str], str] | None = None,
        attributes: Callable[[str, str], str] | None = None,
    ) -> Resolver:
        """A :class:`Resolver` for this template with the given parameter values.

        Parameters
        ----------
        parameters
            Values for every declared parameter, e.g. from :meth:`parameters`.
        names
            Physical name of a resource that sets no name property of its own; the default is
            ``<stack_name>-<LogicalId>``.
        attributes
            ``Fn::GetAtt`` for attributes other than the common ones (``Arn``, ``QueueName``,
            ``QueueUrl``); the default raises :class:`TemplateError`.
        """
        pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack_name}/local",
        }
        return Resolver(
            self, dict(parameters), pseudo, names or (lambda lid: f"{stack_name}-{lid}"), attributes
        )


def load_template(path: Path | str = TEMPLATE_PATH, samconfig: Path | str | None = None) -> Template:
    """Parse a template and the ``samconfig.toml`` beside it (or the one given)."""
    template_path = Path(path)
    config_path = Path(samconfig) if samconfig is not None else template_path.with_name("samconfig.toml")
    config = tomllib.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    return Template(template_path, parse_yaml(template_path.read_text(encoding="utf-8")), config)


def samconfig_overrides(samconfig: Mapping[str, Any], env: str) -> dict[str, str]:
    """``parameter_overrides`` of one samconfig environment, as a dict.

    SAM accepts a string of ``Key=Value`` pairs (shell-quoted) or a list of such strings.
    """
    raw = _samconfig_value(samconfig, env, "parameter_overrides")
    if raw is None:
        return {}
    items = shlex.split(raw) if isinstance(raw, str) else [str(item) for item in raw]

    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TemplateError(f"samconfig parameter_overrides item {item!r} is not Key=Value")
        overrides[key] = value
    return overrides


class Resolver:
    """Evaluates intrinsic functions against parameter values and a naming scheme."""

    def __init__(
        self,
        template: Template,
        parameters: dict[str, str],
        pseudo: dict[str, str],
        names: Callable[[str], str],
        attributes: Callable[[str, str], str] | None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.pseudo = pseudo
        self._names = names
        self._attributes = attributes
        self._resources = template.resources
        self._conditions: dict[str, bool] = {}

    @property
    def region(self) -> str:
        """The region the resolver puts in ARNs."""
        return self.pseudo["AWS::Region"]

    @property
    def account(self) -> str:
        """The account the resolver puts in ARNs."""
        return self.pseudo["AWS::AccountId"]

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated and ``AWS::NoValue`` removed."""
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def condition(self, name: str) -> bool:
        """The value of a named condition of the template."""
        if name not in self._conditions:
            conditions = self.template.body.get("Conditions", {})
            if name not in conditions:
                raise TemplateError(f"template declares no condition {name!r}")
            self._conditions[name] = bool(self._resolve(conditions[name]))
        return self._conditions[name]

    def is_active(self, logical_id: str) -> bool:
        """Whether a resource is created with these parameters (its ``Condition`` holds)."""
        condition = self._resource(logical_id).condition
        return condition is None or self.condition(condition)

    def physical_name(self, logical_id: str) -> str:
        """The name a resource gets: its own name property when set, else the naming scheme."""
        resource = self._resource(logical_id)
        prop = _NAME_PROPERTIES.get(resource.type)
        if prop is not None and prop in resource.properties:
            return str(self.resolve(resource.properties[prop]))
        return self._names(logical_id)

    def ref(self, name: str) -> str:
        """What ``Ref`` returns for a parameter, pseudo parameter or logical id."""
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        base = name.split(".", 1)[0]
        if base not in self._resources:
            raise TemplateError(f"Ref to {name!r}, which is no parameter or resource of the template")
        if "." in name:
            # SAM's generated resources such as ``Function.Alias``: named by the scheme.
            return self._names(name)

        resource_type = self._resources[name].type
        physical = self.physical_name(name)
        if resource_type in _REF_IS_ARN:
            return self.arn(name)
        if resource_type in _REF_IS_URL:
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{physical}"
        return physical

    def get_att(self, logical_id: str, attribute: str) -> str:
        """What ``Fn::GetAtt`` returns for the common attributes, or the ``attributes`` callable's answer."""
        self._resource(logical_id)
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "QueueName":
            return self.physical_name(logical_id)
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        if self._attributes is not None:
            return self._attributes(logical_id, attribute)
        raise TemplateError(
            f"cannot resolve Fn::GetAtt {logical_id}.{attribute} without an attributes callable"
        )

    def arn(self, logical_id: str) -> str:
        """The ARN of a resource, in the form AWS gives its type."""
        resource_type = self._resource(logical_id).type
        name = self.physical_name(logical_id)
        where = f"{self.region}:{self.account}"
        forms = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{where}:table/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{where}:{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{where}:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{where}:log-group:{name}:*",
            "AWS::KMS::Key": f"arn:aws:kms:{where}:key/{name}",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{where}:alarm:{name}",
            "AWS::SES::EmailIdentity": f"arn:aws:ses:{where}:identity/{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{self.account}:role/{name}",
            SERVERLESS_FUNCTION: f"arn:aws:lambda:{where}:function:{name}",
        }
        if resource_type not in forms:
            raise TemplateError(f"no ARN form known for {logical_id} of type {resource_type}")
        return forms[resource_type]

    def _resource(self, logical_id: str) -> Resource:
        if logical_id not in self._resources:
            raise TemplateError(f"template declares no resource {logical_id!r}")
        return self._resources[logical_id]

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, argument)
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        if key == "Ref":
            return _NO_VALUE if argument == "AWS::NoValue" else self.ref(str(argument))
        if key == "Condition":
            return self.condition(str(argument))
        if key == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return self.get_att(str(logical_id), str(attribute))
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::If":
            name, when_true, when_false = argument
            return self._resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = (self._resolve(side) for side in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._resolve(argument[0])
        if key == "Fn::And":
            return all(self._resolve(part) for part in argument)
        if key == "Fn::Or":
            return any(self._resolve(part) for part in argument)
        if key == "Fn::Join":
            separator, parts = argument
            return str(separator).join(str(part) for part in self._resolve(parts))
        if key == "Fn::Select":
            index, items = argument
            return self._resolve(items)[int(self._resolve(index))]
        if key == "Fn::Split":
            separator, text = argument
            return str(self._resolve(text)).split(str(separator))
        if key == "Fn::FindInMap":
            mapping, top, second = (self._resolve(part) for part in argument)
            return self.template.body["Mappings"][mapping][top][second]
        raise TemplateError(f"intrinsic function {key} is not supported by infra.cfn")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = str(argument[0]), {k: self._resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = str(argument), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if name in self.parameters or name in self.pseudo or name in self._resources:
                return self.ref(name)
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                if logical_id in self._resources and attribute not in {"Alias", "Version"}:
                    return self.get_att(logical_id, attribute)
                return self.ref(name)
            raise TemplateError(f"Fn::Sub variable ${{{name}}} is no parameter, resource or given variable")

        return _SUB_VARIABLE.sub(replace, text)


def _resource(logical_id: str, raw: Mapping[str, Any]) -> Resource:
    if "Type" not in raw:
        raise TemplateError(f"resource {logical_id} has no Type")
    return Resource(
        logical_id=logical_id,
        type=str(raw["Type"]),
        properties=dict(raw.get("Properties") or {}),
        condition=raw.get("Condition"),
        metadata=dict(raw.get("Metadata") or {}),
    )


def _function(
    logical_id: str, properties: Mapping[str, Any], globals_: Mapping[str, Any], metadata: Mapping[str, Any]
) -> Function:
    merged = _merge_globals(globals_, properties)
    environment = dict(merged.get("Environment", {}).get("Variables", {}))

    if merged.get("PackageType") == "Image":
        dockerfile = PurePosixPath(str(metadata.get("DockerContext", "."))) / str(
            metadata.get("Dockerfile", "")
        )
        code_dir = str(dockerfile.parent)
        command = merged.get("ImageConfig", {}).get("Command") or []
        if not command:
            raise TemplateError(f"image function {logical_id} sets no ImageConfig.Command (module.handler)")
        handler = str(command[0])
    else:
        code_dir = str(PurePosixPath(str(merged.get("CodeUri", "."))))
        handler = str(merged.get("Handler", ""))
    if "." not in handler:
        raise TemplateError(f"function {logical_id} handler {handler!r} is not module.function")
    return Function(logical_id, merged, code_dir, handler, environment)


def _merge_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's merge: maps merge key by key (the function wins), anything else is replaced."""
    merged: dict[str, Any] = copy.deepcopy(dict(globals_))
    for key, value in properties.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _samconfig_value(samconfig: Mapping[str, Any], env: str, key: str) -> Any:
    section = samconfig.get(env, {})
    for command in ("deploy", "global"):
        parameters = section.get(command, {}).get("parameters", {})
        if key in parameters:
            return parameters[key]
    return None


def _check_parameter(name: str, value: str, spec: Mapping[str, Any]) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(str(pattern), value) is None:
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            raise TemplateError(f"parameter {name}={value} is outside [{low}, {high}]")
