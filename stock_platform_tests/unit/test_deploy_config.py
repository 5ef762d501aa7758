"""The deployment files agree with each other and with the package, checked offline without any server.

deploy/cloudformation.yaml passes cfn-lint; its policies are the shipped JSON files; its buckets, queue and database
are private, encrypted and TLS only; its task definitions give every process the variables its instance and workspace
files read; the Dockerfile provides the defaults those files document. Creating the stack on moto and loading the
instance files for real: stock_platform_tests/integration/test_deploy_stack.py.
"""

import json
import re
import shlex

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from stock_platform.local.stack import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
TEMPLATE_PATH = DEPLOY / "cloudformation.yaml"
# The largest template `aws cloudformation deploy` accepts inline, without staging it in an S3 bucket.
INLINE_TEMPLATE_LIMIT = 51_200
# How the shipped JSON policies name what the stack creates.
PLACEHOLDERS = {
    "${AWS::Partition}": "aws",
    "${AWS::AccountId}": "ACCOUNT_ID",
    "${SourceBucketName}": "SOURCE_BUCKET",
    "${MonitoredBucketName}": "MONITORED_BUCKET",
}
REF_PLACEHOLDERS = {"NotificationTopic": "TOPIC_ARN", "AWS::AccountId": "ACCOUNT_ID"}
GETATT_PLACEHOLDERS = {("PipelineTaskRole", "Arn"): "PIPELINE_ROLE_ARN"}
ECS_HOME = "/opt/dagster/ecs_home"
WORKSPACE = "/opt/dagster/app/workspace.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    decoded, problems = decode(str(TEMPLATE_PATH))
    assert not problems, problems
    return decoded


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def as_placeholders(node):
    """Replace the template's intrinsics by the placeholders the JSON policy files use."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in REF_PLACEHOLDERS:
            return REF_PLACEHOLDERS[node["Ref"]]
        if set(node) == {"Fn::GetAtt"} and tuple(node["Fn::GetAtt"]) in GETATT_PLACEHOLDERS:
            return GETATT_PLACEHOLDERS[tuple(node["Fn::GetAtt"])]
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            text = node["Fn::Sub"]
            for variable, placeholder in PLACEHOLDERS.items():
                text = text.replace(variable, placeholder)
            assert "${" not in text, f"no placeholder for {text}"
            return text
        return {key: as_placeholders(value) for key, value in node.items()}
    if isinstance(node, list):
        return [as_placeholders(value) for value in node]
    return node


def inline_policy(role: dict, name: str) -> dict:
    (policy,) = [p["PolicyDocument"] for p in role["Properties"]["Policies"] if p["PolicyName"] == name]
    return policy


def container(template: dict, task_definition: str) -> dict:
    (definition,) = template["Resources"][task_definition]["Properties"]["ContainerDefinitions"]
    return definition


def variables_of(definition: dict) -> set[str]:
    return {e["Name"] for e in definition.get("Environment", [])} | {s["Name"] for s in definition.get("Secrets", [])}


def env_names(config: object) -> set[str]:
    """Every `env:` variable a Dagster YAML file reads."""
    if isinstance(config, dict):
        found = {config["env"]} if set(config) == {"env"} else set()
        return found.union(*(env_names(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(env_names(v) for v in config))
    return set()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines]


def image_env() -> dict[str, str]:
    pairs = [p for keyword, rest in dockerfile_instructions() if keyword == "ENV" for p in shlex.split(rest)]
    return dict(pair.split("=", 1) for pair in pairs)


def test_template_passes_cfn_lint_with_informational_rules_too() -> None:
    findings = lint_file(TEMPLATE_PATH, config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in findings] == []
    assert len(TEMPLATE_PATH.read_bytes()) <= INLINE_TEMPLATE_LIMIT


def test_every_bucket_is_private_encrypted_and_refuses_plain_http(template: dict) -> None:
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in resources(template, "AWS::S3::BucketPolicy").values()
    }
    buckets = resources(template, "AWS::S3::Bucket")
    assert set(buckets) == {"SourceBucket", "MonitoredBucket", "ComputeLogBucket"} == set(policies)
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", name
        assert all(properties["PublicAccessBlockConfiguration"].values()), name
        assert len(properties["PublicAccessBlockConfiguration"]) == 4, name
        assert properties["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name
        bucket_name = properties["BucketName"]["Ref"]
        (tls,) = [s for s in policies[name]["Statement"] if s["Sid"] == "DenyAnythingNotOverTLS"]
        assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert [r["Fn::Sub"] for r in tls["Resource"]] == [
            f"arn:${{AWS::Partition}}:s3:::${{{bucket_name}}}",
            f"arn:${{AWS::Partition}}:s3:::${{{bucket_name}}}/*",
        ]


def test_only_the_monitored_bucket_is_versioned_and_it_sends_only_marker_events_to_the_queue(template: dict) -> None:
    buckets = resources(template, "AWS::S3::Bucket")
    assert [n for n, b in buckets.items() if "VersioningConfiguration" in b["Properties"]] == ["MonitoredBucket"]
    monitored = buckets["MonitoredBucket"]
    assert monitored["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert monitored["DependsOn"] == "MarkerQueuePolicy"  # S3 checks the queue admits it when the rule is set
    (rule,) = monitored["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert rule == {
        "Event": "s3:ObjectCreated:*",
        "Queue": {"Fn::GetAtt": ["MarkerQueue", "Arn"]},
        "Filter": {"S3Key": {"Rules": [{"Name": "suffix", "Value": {"Ref": "MarkerSuffix"}}]}},
    }
    assert template["Parameters"]["MarkerSuffix"]["Default"] == ".SUCCESS"

    queue_policy = template["Resources"]["MarkerQueuePolicy"]["Properties"]
    assert queue_policy["Queues"] == [{"Ref": "MarkerQueue"}]
    allows = [s for s in queue_policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "OnlyTheMonitoredBucketSends",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["MarkerQueue", "Arn"]},
            "Condition": {
                "ArnEquals": {"aws:SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${MonitoredBucketName}"}},
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
            },
        }
    ]


@pytest.mark.parametrize(
    ("resource", "policy_name", "shipped"),
    [
        ("PipelineTaskRole", "Pipeline", "pipeline-policy.json"),
        ("DownloaderTaskRole", "Downloader", "downloader-policy.json"),
        ("SourceBucketPolicy", None, "source-bucket-policy.json"),
    ],
)
def test_the_stack_applies_the_shipped_policy_files_unchanged(
    template: dict, resource: str, policy_name: str | None, shipped: str
) -> None:
    properties = template["Resources"][resource]
    document = inline_policy(properties, policy_name) if policy_name else properties["Properties"]["PolicyDocument"]
    assert as_placeholders(document) == json.loads((DEPLOY / "iam" / shipped).read_text())


def test_the_downloader_writes_only_downloads_and_markers_and_deletes_nothing() -> None:
    policy = json.loads((DEPLOY / "iam" / "downloader-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    (writes,) = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert sorted(writes["Resource"]) == sorted(
        [
            "arn:aws:s3:::SOURCE_BUCKET/raw/*",
            "arn:aws:s3:::SOURCE_BUCKET/Stocks/*",
            "arn:aws:s3:::SOURCE_BUCKET/*.SUCCESS",
            "arn:aws:s3:::MONITORED_BUCKET/*.SUCCESS",
        ]
    )


def test_the_database_is_private_encrypted_and_refuses_connections_without_tls(template: dict) -> None:
    database = template["Resources"]["Database"]["Properties"]
    parameter_group = template["Resources"]["DatabaseParameterGroup"]["Properties"]
    assert database["DBParameterGroupName"] == {"Ref": "DatabaseParameterGroup"}
    assert parameter_group["Parameters"] == {"rds.force_ssl": "1"}
    assert parameter_group["Family"] == "postgres" + database["EngineVersion"].split(".")[0]
    assert database["StorageEncrypted"] is True and database["PubliclyAccessible"] is False
    # The password exists only in Secrets Manager: generated there, resolved by CloudFormation, never a parameter.
    assert database["MasterUserPassword"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}"
    }
    assert not [p for p in template["Parameters"] if "password" in p.lower()]
    (ingress,) = template["Resources"]["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"], ingress["SourceSecurityGroupId"]) == (
        5432,
        5432,
        {"Ref": "TaskSecurityGroup"},
    )
    assert template["Resources"]["Database"]["DeletionPolicy"] == "Snapshot"


def test_each_process_runs_the_image_with_its_own_role(template: dict) -> None:
    expected = {
        "WebserverTaskDefinition": ("webserver", "WebserverTaskRole"),
        "DaemonTaskDefinition": ("daemon", "DaemonTaskRole"),
        "CodeLocationTaskDefinition": ("code-location", "PipelineTaskRole"),
        "RunTaskDefinition": ("run", "PipelineTaskRole"),
    }
    assert set(resources(template, "AWS::ECS::TaskDefinition")) == set(expected)
    for name, (container_name, role) in expected.items():
        properties = template["Resources"][name]["Properties"]
        assert properties["TaskRoleArn"] == {"Fn::GetAtt": [role, "Arn"]}, name
        assert properties["RequiresCompatibilities"] == ["FARGATE"] and properties["NetworkMode"] == "awsvpc"
        definition = container(template, name)
        assert definition["Name"] == container_name and definition["Image"] == {"Ref": "ImageUri"}
        assert definition["LogConfiguration"]["LogDriver"] == "awslogs"
    # The run launcher starts tasks of this family, with the container the ECS instance file names.
    ecs_instance = yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text())
    assert ecs_instance["run_launcher"]["config"]["container_name"] == container(template, "RunTaskDefinition")["Name"]
    run_family = template["Resources"]["RunTaskDefinition"]["Properties"]["Family"]["Fn::Sub"]
    (launch,) = [
        s
        for s in inline_policy(template["Resources"]["DaemonTaskRole"], "LaunchRuns")["Statement"]
        if s["Action"] == "ecs:RunTask"
    ]
    assert launch["Resource"]["Fn::Sub"].endswith(f":task-definition/{run_family}:*")
    assert "Command" not in container(template, "RunTaskDefinition")  # EcsRunLauncher overrides it per run
    # Exactly one daemon at a time, including during a deployment.
    daemon = template["Resources"]["DaemonService"]["Properties"]
    assert (daemon["DesiredCount"], daemon["DeploymentConfiguration"]["MaximumPercent"]) == (1, 100)


def test_every_process_gets_the_variables_its_instance_and_workspace_read(template: dict) -> None:
    ecs_instance = env_names(yaml.safe_load((DEPLOY / "ecs" / "dagster.yaml").read_text()))
    workspace = env_names(yaml.safe_load((DEPLOY / "workspace.yaml").read_text()))
    defaults = set(image_env())
    assert ecs_instance == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
        "DAGSTER_RUN_TASK_DEFINITION",
        "DAGSTER_COMPUTE_LOG_BUCKET",
    }
    for name in ("WebserverTaskDefinition", "DaemonTaskDefinition", "CodeLocationTaskDefinition", "RunTaskDefinition"):
        definition = container(template, name)
        assert ecs_instance <= variables_of(definition) | defaults, name
        assert {"Name": "DAGSTER_HOME", "Value": ECS_HOME} in definition["Environment"], name
        (password,) = [s for s in definition["Secrets"] if s["Name"] == "DAGSTER_PG_PASSWORD"]
        assert password["ValueFrom"] == {"Fn::Sub": "${DatabaseSecret}:password::"}
    for name in ("WebserverTaskDefinition", "DaemonTaskDefinition"):  # they load the workspace
        definition = container(template, name)
        assert workspace <= variables_of(definition) | defaults, name
        assert definition["Command"][-2:] == ["-w", WORKSPACE]


def test_the_platform_gets_its_settings_and_only_names_it_reads(template: dict) -> None:
    package_source = "\n".join(p.read_text() for p in (PROJECT_ROOT / "stock_platform").rglob("*.py"))
    read_by_package = set(re.findall(r"\"(STOCK_PLATFORM_[A-Z0-9_]+)\"", package_source))
    for name in ("CodeLocationTaskDefinition", "RunTaskDefinition"):
        definition = container(template, name)
        platform = {v for v in variables_of(definition) if v.startswith("STOCK_PLATFORM_")}
        assert {
            "STOCK_PLATFORM_SOURCE_BUCKET",
            "STOCK_PLATFORM_DATABASE_URL",
            "STOCK_PLATFORM_SNS_TOPIC_ARN",
        } <= platform
        assert platform <= read_by_package, name
        (url,) = [e["Value"] for e in definition["Environment"] if e["Name"] == "STOCK_PLATFORM_DATABASE_URL"]
        assert url["Fn::Sub"][0].endswith("?sslmode=require") and ":${" not in url["Fn::Sub"][0].split("@")[0]
        assert "PGPASSWORD" in variables_of(definition)  # the URL carries no password; libpq reads this one


def test_the_image_provides_the_defaults_the_instance_and_workspace_document() -> None:
    env = image_env()
    assert env["DAGSTER_PG_PORT"] == "5432"
    instructions = dockerfile_instructions()
    (cmd,) = [json.loads(rest) for keyword, rest in instructions if keyword == "CMD"]
    (healthcheck,) = [
        json.loads(rest.split(" CMD ", 1)[1]) for keyword, rest in instructions if keyword == "HEALTHCHECK"
    ]
    port = cmd[cmd.index("--port") + 1]
    assert env["DAGSTER_CODE_LOCATION_PORT"] == port == healthcheck[healthcheck.index("--port") + 1] == "4000"
    assert cmd[:3] == ["dagster", "code-server", "start"]
    copies = {rest.split()[-1] for keyword, rest in instructions if keyword == "COPY"}
    assert {f"{ECS_HOME}/", "/opt/dagster/dagster_home/"} <= copies
    assert "DAGSTER_CURRENT_IMAGE" in env
    exposed = next(rest.split() for keyword, rest in instructions if keyword == "EXPOSE")
    assert port in exposed and "3000" in exposed
