"""infra.cfn on small templates: tags, parameters, conditions, names and the Globals merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cfn import Template, TemplateError, load_template, parse_yaml, samconfig_overrides

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Email:
    Type: String
    AllowedPattern: "^[^@]+@[^@]+$"
  Days:
    Type: Number
    Default: 30
    MinValue: 1
    MaxValue: 90
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Globals:
  Function:
    Runtime: python3.12
    Environment:
      Variables:
        SHARED: !Sub "${AWS::StackName}-shared"
        OVERRIDDEN: global
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Topic:
    Type: AWS::SNS::Topic
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-dlq"
  ProdOnly:
    Type: AWS::SQS::Queue
    Condition: IsProd
  Zip:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/metrics/
      Handler: app.lambda_handler
      Environment:
        Variables:
          OVERRIDDEN: own
          TABLE: !Ref Table
          TABLE_ARN: !GetAtt Table.Arn
          QUEUE: !GetAtt Queue.QueueName
          MAYBE: !If [IsProd, "yes", !Ref AWS::NoValue]
  Image:
    Type: AWS::Serverless::Function
    Metadata:
      Dockerfile: functions/inference/Dockerfile
      DockerContext: .
    Properties:
      PackageType: Image
      ImageConfig:
        Command: ["app.lambda_handler"]
"""

SAMCONFIG = """
version = 0.1
[default.global.parameters]
stack_name = "demo"
[default.deploy.parameters]
parameter_overrides = "Email=a@example.com Days=7"
[prod.deploy.parameters]
stack_name = "demo-prod"
parameter_overrides = ["Stage=prod", "Email=ops@example.com"]
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    (tmp_path / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG, encoding="utf-8")
    return load_template(tmp_path / "template.yaml")


def test_short_form_tags_become_long_form() -> None:
    body = parse_yaml("A: !GetAtt Fn.Version.Version\nB: !Sub [x, {y: 1}]\nC: !Ref P\nD: !Condition C1\n")

    assert body["A"] == {"Fn::GetAtt": ["Fn", "Version.Version"]}
    assert body["B"] == {"Fn::Sub": ["x", {"y": 1}]}
    assert body["C"] == {"Ref": "P"}
    assert body["D"] == {"Condition": "C1"}


def test_parse_yaml_refuses_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(TemplateError, match="mapping"):
        parse_yaml("- a\n- b\n")


def test_parameters_take_defaults_then_samconfig_then_overrides(template: Template) -> None:
    assert template.parameters() == {"Stage": "dev", "Email": "a@example.com", "Days": "7"}
    assert template.parameters("prod")["Stage"] == "prod"
    assert template.parameters("prod")["Days"] == "30"
    assert template.parameters(overrides={"Days": "9"})["Days"] == "9"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Stage": "qa"}, "not one of"),
        ({"Email": "nobody"}, "does not match"),
        ({"Days": "91"}, "outside"),
        ({"Days": "many"}, "not a number"),
        ({"Colour": "red"}, "undeclared"),
    ],
)
def test_parameters_refuse_values_the_template_forbids(
    template: Template, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        template.parameters(overrides=overrides)


def test_parameters_name_a_parameter_without_a_value(template: Template) -> None:
    no_config = Template(template.path, template.body, {})

    with pytest.raises(TemplateError, match="Email"):
        no_config.parameters()


def test_samconfig_overrides_read_shell_quoted_strings() -> None:
    config = {"x": {"deploy": {"parameters": {"parameter_overrides": 'A="two words" B=c=d'}}}}

    assert samconfig_overrides(config, "x") == {"A": "two words", "B": "c=d"}
    assert samconfig_overrides(config, "missing") == {}


def test_stack_name_falls_back_to_global_parameters(template: Template) -> None:
    assert template.stack_name() == "demo"
    assert template.stack_name("prod") == "demo-prod"
    with pytest.raises(TemplateError, match="stack_name"):
        template.stack_name("qa")


def test_conditions_follow_parameters(template: Template) -> None:
    dev = template.resolver(template.parameters())
    prod = template.resolver(template.parameters("prod"))

    assert (dev.condition("IsProd"), dev.condition("NotProd")) == (False, True)
    assert (prod.condition("IsProd"), prod.condition("NotProd")) == (True, False)
    assert not dev.is_active("ProdOnly")
    assert prod.is_active("ProdOnly")


def test_functions_merge_globals_and_resolve_names_and_arns(template: Template) -> None:
    resolver = template.resolver(template.parameters(), stack_name="demo", region="eu-west-1", account="111")
    zip_function = template.functions()["Zip"]

    environment = resolver.resolve(zip_function.environment)

    assert environment == {
        "SHARED": "demo-shared",
        "OVERRIDDEN": "own",
        "TABLE": "demo-Table",
        "TABLE_ARN": "arn:aws:dynamodb:eu-west-1:111:table/demo-Table",
        "QUEUE": "demo-dlq",
    }
    assert zip_function.properties["Runtime"] == "python3.12"


def test_no_value_drops_the_key_only_when_the_condition_is_false(template: Template) -> None:
    prod = template.resolver(template.parameters("prod"))

    assert prod.resolve(template.functions()["Zip"].environment)["MAYBE"] == "yes"


def test_handler_module_for_zip_and_image_functions(template: Template) -> None:
    functions = template.functions()

    assert functions["Zip"].handler_module == "functions.metrics.app"
    assert functions["Image"].handler_module == "functions.inference.app"
    assert functions["Image"].handler_function == "lambda_handler"
    assert functions["Image"].handler_path.parts[-3:] == ("functions", "inference", "app.py")


def test_ref_follows_the_type_of_the_resource(template: Template) -> None:
    resolver = template.resolver(template.parameters(), stack_name="demo", account="111", region="us-east-1")

    assert resolver.ref("Topic") == "arn:aws:sns:us-east-1:111:demo-Topic"
    assert resolver.ref("Queue") == "https://sqs.us-east-1.amazonaws.com/111/demo-dlq"
    assert resolver.ref("Zip.Alias") == "demo-Zip.Alias"


def test_names_callable_names_resources_without_a_name_of_their_own(template: Template) -> None:
    resolver = template.resolver(
        template.parameters(), stack_name="demo", names=lambda lid: f"local-{lid.lower()}"
    )

    assert resolver.physical_name("Table") == "local-table"
    assert resolver.physical_name("Queue") == "demo-dlq"


def test_sub_keeps_escaped_literals_and_uses_given_variables(template: Template) -> None:
    resolver = template.resolver(template.parameters(), stack_name="demo")

    assert resolver.resolve({"Fn::Sub": "${!Literal}-${Stage}"}) == "${Literal}-dev"
    assert resolver.resolve({"Fn::Sub": ["${X}/${AWS::StackName}", {"X": {"Ref": "Days"}}]}) == "7/demo"
    assert resolver.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]}) == "a-dev"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Nothing"}, "no parameter or resource"),
        ({"Fn::Sub": "${Nothing}"}, "Nothing"),
        ({"Fn::GetAtt": ["Table", "StreamArn"]}, "attributes callable"),
        ({"Fn::ImportValue": "x"}, "not supported"),
        ({"Condition": "Missing"}, "no condition"),
    ],
)
def test_unresolvable_values_raise_naming_the_cause(template: Template, value: object, message: str) -> None:
    resolver = template.resolver(template.parameters())

    with pytest.raises(TemplateError, match=message):
        resolver.resolve(value)


def test_attributes_callable_answers_other_attributes(template: Template) -> None:
    resolver = template.resolver(template.parameters(), attributes=lambda lid, attr: f"{lid}/{attr}")

    assert resolver.resolve({"Fn::GetAtt": ["Table", "StreamArn"]}) == "Table/StreamArn"


def test_missing_resource_is_named(template: Template) -> None:
    with pytest.raises(TemplateError, match="Nope"):
        template.resource("Nope")
