"""The downloader Lambda's part of deploy/cloudformation.yaml agrees with the shipped policy and the package.

moto's CloudFormation cannot run the function (no Docker), and the stack test creates only unconditional resources,
so these are checked on the template itself.
"""

import json
import re

from stock_platform.downloads.settings import LAMBDA_FUNCTION, PROVIDER
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform_tests.unit.test_deploy_config import DEPLOY, as_placeholders, container, inline_policy, template

__all__ = ["template"]  # the module-scoped fixture, shared with test_deploy_config.py

CONDITION = "HasDownloaderFunction"


def test_the_lambda_role_holds_the_shipped_downloader_policy_and_trusts_only_lambda(template: dict) -> None:
    role = template["Resources"]["DownloaderFunctionRole"]
    assert role["Condition"] == CONDITION
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    downloader = template["Resources"]["DownloaderPolicy"]["Properties"]
    shipped = json.loads((DEPLOY / "iam" / "downloader-policy.json").read_text())
    assert as_placeholders(downloader["PolicyDocument"]) == shipped
    # With the function, its role holds the policy too (DownloaderPolicy's Roles when CONDITION holds).
    assert {"Ref": "DownloaderFunctionRole"} in downloader["Roles"]["Fn::If"][1]
    assert downloader["Roles"]["Fn::If"][0] == CONDITION
    assert [p["PolicyName"] for p in role["Properties"]["Policies"]] == ["WriteItsOwnLogs"]
    assert inline_policy(role, "WriteItsOwnLogs")["Statement"][0]["Resource"] == {
        "Fn::GetAtt": ["DownloaderLogGroup", "Arn"]
    }


def test_the_function_runs_the_handler_image_with_variables_the_package_reads(template: dict) -> None:
    function = template["Resources"]["DownloaderFunction"]
    assert function["Condition"] == CONDITION
    properties = function["Properties"]
    assert properties["PackageType"] == "Image" and properties["Code"] == {"ImageUri": {"Ref": "DownloaderImageUri"}}
    assert properties["Role"] == {"Fn::GetAtt": ["DownloaderFunctionRole", "Arn"]} and properties["Timeout"] == 900
    package = "\n".join(p.read_text() for p in (PROJECT_ROOT / "stock_platform").rglob("*.py"))
    read = set(re.findall(r"\"(STOCK_PLATFORM_[A-Z0-9_]+)\"", package))
    variables = set(properties["Environment"]["Variables"])
    assert PROVIDER in variables and variables <= read
    # And every variable the handler requires (read without a default).
    handler = (PROJECT_ROOT / "stock_platform" / "downloads" / "lambda_handler.py").read_text()
    required = set(re.findall(r"env\[\"(STOCK_PLATFORM_[A-Z0-9_]+)\"\]", handler))
    assert required and required <= variables


def test_only_the_pipeline_may_invoke_the_function_and_the_runs_are_told_its_name(template: dict) -> None:
    invoke = template["Resources"]["PipelineInvokesTheDownloader"]
    assert invoke["Properties"]["Roles"] == [{"Ref": "PipelineTaskRole"}]
    assert invoke["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": {"Fn::GetAtt": ["DownloaderFunction", "Arn"]},
        }
    ]
    for task in ("RunTaskDefinition", "CodeLocationTaskDefinition"):
        [value] = [e["Value"] for e in container(template, task)["Environment"] if e["Name"] == LAMBDA_FUNCTION]
        assert value == {"Fn::If": [CONDITION, {"Ref": "DownloaderFunction"}, ""]}, task
