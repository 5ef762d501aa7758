"""The deployment files agree with each other and with the package, checked offline without any server.

deploy/cloudformation.yaml passes cfn-lint; its policies are the shipped JSON files; its buckets, queue, stream and
database are private, encrypted and TLS only; each permission reaches exactly the keys, stream and topic the package
uses; its task definitions give every process the variables its instance and workspace files read, and the platform
every variable it requires and none it does not read; the Dockerfile provides the defaults those files document.
Creating the stack on moto and loading the instance files for real: stock_platform_tests/integration/
test_deploy_stack.py.
"""

import json
import re
import shlex
from datetime import date
from fnmatch import fnmatchcase

import pytest
import yaml
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode

from stock_platform.downloads.run import DownloadRequest, MarkerTarget
from stock_platform.downloads.settings import LAMBDA_FUNCTION
from stock_platform.local.stack import PROJECT_ROOT
from stock_platform.quotes.lake import COMPACTED_NAME, part_key
from stock_platform.quotes.monthly_log import month_key
from stock_platform.quotes.settings import ALERTS_TOPIC_ENV, STREAM_ENV, IntradayConfig, QuoteSettings

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
    "${MarkerSuffix}": ".SUCCESS",  # the parameter's default, asserted below
}
REF_PLACEHOLDERS = {"NotificationTopic": "TOPIC_ARN", "AlertsTopic": "ALERTS_TOPIC", "AWS::AccountId": "ACCOUNT_ID"}
GETATT_PLACEHOLDERS = {("PipelineTaskRole", "Arn"): "PIPELINE_ROLE_ARN", ("QuoteStream", "Arn"): "STREAM_ARN"}
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


def statements(document: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in document["Statement"]}


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def allows(policy: dict, action: str, resource: str) -> bool:
    """IAM's verdict for one action on one ARN under `policy` (wildcards only; no conditions here)."""

    def matching(effect: str) -> bool:
        return any(
            s["Effect"] == effect
            and action in listed(s["Action"])
            and any(fnmatchcase(resource, pattern) for pattern in listed(s["Resource"]))
            for s in policy["Statement"]
        )

    return matching("Allow") and not matching("Deny")


def shipped(name: str) -> dict:
    return json.loads((DEPLOY / "iam" / name).read_text())


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


def test_staged_quote_batches_expire_and_nothing_else_in_the_source_bucket_does(template: dict) -> None:
    (rule,) = template["Resources"]["SourceBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == IntradayConfig().staging_prefix == "Staging/quotes/"
    assert rule["Status"] == "Enabled" and 1 <= rule["ExpirationInDays"] <= 14
    assert set(rule) == {"Id", "Status", "Prefix", "ExpirationInDays"}


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
    ("resource", "policy_name", "shipped_file"),
    [
        ("PipelineTaskRole", "Pipeline", "pipeline-policy.json"),
        ("PipelineTaskRole", "Quotes", "quotes-policy.json"),
        ("DownloaderPolicy", None, "downloader-policy.json"),
        ("SourceBucketPolicy", None, "source-bucket-policy.json"),
    ],
)
def test_the_stack_applies_the_shipped_policy_files_unchanged(
    template: dict, resource: str, policy_name: str | None, shipped_file: str
) -> None:
    properties = template["Resources"][resource]
    document = inline_policy(properties, policy_name) if policy_name else properties["Properties"]["PolicyDocument"]
    assert as_placeholders(document) == shipped(shipped_file)


def test_the_downloader_policy_is_on_both_downloader_roles(template: dict) -> None:
    assert template["Parameters"]["MarkerSuffix"]["Default"] == ".SUCCESS"  # what the JSON file spells out
    roles = template["Resources"]["DownloaderPolicy"]["Properties"]["Roles"]
    assert roles == {
        "Fn::If": [
            "HasDownloaderFunction",
            [{"Ref": "DownloaderTaskRole"}, {"Ref": "DownloaderFunctionRole"}],
            [{"Ref": "DownloaderTaskRole"}],
        ]
    }
    assert "Policies" not in template["Resources"]["DownloaderTaskRole"]["Properties"]


def test_the_downloader_writes_only_downloads_and_its_own_markers_and_deletes_nothing() -> None:
    policy = shipped("downloader-policy.json")
    actions = {a for s in policy["Statement"] for a in listed(s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    (writes,) = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert sorted(writes["Resource"]) == sorted(
        [
            "arn:aws:s3:::SOURCE_BUCKET/raw/*",
            "arn:aws:s3:::SOURCE_BUCKET/Stocks/*",
            "arn:aws:s3:::MONITORED_BUCKET/downloads/*.SUCCESS",
        ]
    )
    # The markers the package writes (the stack sets no monitored prefix), for one day and for a range.
    marker = MarkerTarget(client=None, bucket="MONITORED_BUCKET")
    for days in (("2026-01-09",), ("2026-01-05", "2026-01-06", "2026-01-09")):
        key = marker.key(DownloadRequest(days, "0f1e2d3c-run"))
        assert allows(policy, "s3:PutObject", f"arn:aws:s3:::MONITORED_BUCKET/{key}"), key
    for elsewhere in (
        "MONITORED_BUCKET/batch.SUCCESS",
        "SOURCE_BUCKET/downloads/x.SUCCESS",
        "MONITORED_BUCKET/downloads/x",
    ):
        assert not allows(policy, "s3:PutObject", f"arn:aws:s3:::{elsewhere}"), elsewhere


def test_the_quotes_policy_reaches_exactly_the_keys_stream_and_topic_the_quotes_code_uses() -> None:
    policy = shipped("quotes-policy.json")
    found = statements(policy)
    # Every Kinesis call of the stream resource, but the producer's PutRecords (producers run outside the stack).
    source = (PROJECT_ROOT / "stock_platform" / "resources" / "kinesis.py").read_text()
    calls = set(re.findall(r"(?:client|get_client\(\))\.([a-z_]+)\(", source)) - {"put_records", "get_paginator"}
    stream = found["ReadTheQuoteStream"]
    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", a.split(":")[1]).lower() for a in stream["Action"]}
    assert snake == calls == {"list_shards", "get_shard_iterator", "get_records"}
    assert stream["Resource"] == "STREAM_ARN"
    assert found["PublishOnlyToTheAlertsTopic"]["Resource"] == "ALERTS_TOPIC"

    intraday = IntradayConfig()
    arn = "arn:aws:s3:::SOURCE_BUCKET/"
    day = date(2026, 1, 9)
    part = part_key(intraday.lake_prefix, day, "AAPL", "b7c1e2")
    compacted = f"{intraday.lake_prefix}date={day.isoformat()}/ticker=AAPL/{COMPACTED_NAME}"
    for key in (month_key(intraday.log_prefix, "202601"), part, compacted, f"{intraday.staging_prefix}b7c1e2.json"):
        assert allows(policy, "s3:GetObject", arn + key) and allows(policy, "s3:PutObject", arn + key), key
    assert allows(policy, "s3:DeleteObject", arn + part)  # quote_lake deletes the parts it compacted...
    for kept in (compacted, month_key(intraday.log_prefix, "202601"), f"{intraday.staging_prefix}b7c1e2.json"):
        assert not allows(policy, "s3:DeleteObject", arn + kept), kept  # ...and nothing else
    for other in ("Stocks/aapl.us.txt", "Processed/company=aapl/prices.parquet", "Lake/other/x", "QuotesX/1.csv"):
        assert not allows(policy, "s3:PutObject", arn + other), other
    prefixes = {r.removeprefix(arn).removesuffix("*") for r in found["ReadAndWriteOnlyTheQuoteObjects"]["Resource"]}
    assert prefixes == {intraday.log_prefix, intraday.lake_prefix, intraday.staging_prefix}


def test_the_quote_stream_is_encrypted_and_either_provisioned_or_on_demand(template: dict) -> None:
    stream = template["Resources"]["QuoteStream"]
    properties = stream["Properties"]
    assert properties["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert properties["StreamModeDetails"] == {
        "StreamMode": {"Fn::If": ["QuoteStreamOnDemand", "ON_DEMAND", "PROVISIONED"]}
    }
    assert properties["ShardCount"] == {
        "Fn::If": ["QuoteStreamOnDemand", {"Ref": "AWS::NoValue"}, {"Ref": "QuoteStreamShards"}]
    }
    assert template["Conditions"]["QuoteStreamOnDemand"] == {"Fn::Equals": [{"Ref": "QuoteStreamShards"}, "0"]}
    shards = template["Parameters"]["QuoteStreamShards"]
    assert (shards["Default"], shards["MinValue"]) == (1, 0)


def test_alerts_have_their_own_topic_and_e_mail_subscription(template: dict) -> None:
    topics = resources(template, "AWS::SNS::Topic")
    assert set(topics) == {"NotificationTopic", "AlertsTopic"}
    assert all(t["Properties"]["KmsMasterKeyId"] == "alias/aws/sns" for t in topics.values())
    subscriptions = {
        s["Properties"]["TopicArn"]["Ref"]: (s["Condition"], s["Properties"]["Protocol"], s["Properties"]["Endpoint"])
        for s in resources(template, "AWS::SNS::Subscription").values()
    }
    assert subscriptions == {
        "NotificationTopic": ("HasNotificationEmail", "email", {"Ref": "NotificationEmail"}),
        "AlertsTopic": ("HasAlertsEmail", "email", {"Ref": "AlertsEmail"}),
    }
    assert template["Conditions"]["HasAlertsEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertsEmail"}, ""]}]}


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
    # What the package binds without a default (dg.EnvVar), plus what switches on the domains' AWS parts: the
    # stream sensor, the alerts topic and the downloader Lambda. Deployed, the whole platform runs.
    required = set(re.findall(r"EnvVar\(\"(STOCK_PLATFORM_[A-Z0-9_]+)\"\)", package_source))
    assert {"STOCK_PLATFORM_SOURCE_BUCKET", "STOCK_PLATFORM_DATABASE_URL", "STOCK_PLATFORM_SNS_TOPIC_ARN"} <= required
    required |= {STREAM_ENV, ALERTS_TOPIC_ENV, LAMBDA_FUNCTION}
    for name in ("CodeLocationTaskDefinition", "RunTaskDefinition"):
        definition = container(template, name)
        platform = {v for v in variables_of(definition) if v.startswith("STOCK_PLATFORM_")}
        assert required <= platform, (name, required - platform)
        assert platform <= read_by_package, (name, platform - read_by_package)
        values = {e["Name"]: e["Value"] for e in definition["Environment"]}
        assert values[STREAM_ENV] == {"Ref": "QuoteStream"}
        assert values[ALERTS_TOPIC_ENV] == {"Ref": "AlertsTopic"}  # not the runs' topic
        assert values["STOCK_PLATFORM_SNS_TOPIC_ARN"] == {"Ref": "NotificationTopic"}
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


def test_the_quote_parameters_defaults_are_settings_the_package_accepts(template: dict, monkeypatch) -> None:
    run = {e["Name"]: e["Value"] for e in container(template, "RunTaskDefinition")["Environment"]}
    parameters = template["Parameters"]
    for variable, parameter in {
        "STOCK_PLATFORM_QUOTES_SENSOR_INTERVAL_SECONDS": "QuoteSensorIntervalSeconds",
        "STOCK_PLATFORM_ALERT_THRESHOLD_PERCENT": "AlertThresholdPercent",
    }.items():
        assert run[variable] == {"Ref": parameter}
        monkeypatch.setenv(variable, str(parameters[parameter]["Default"]))
    monkeypatch.setenv(STREAM_ENV, "stock-platform-quotes")
    monkeypatch.setenv(ALERTS_TOPIC_ENV, "arn:aws:sns:us-east-1:123456789012:stock-platform-price-alerts")
    settings = QuoteSettings.from_environment()
    assert (settings.sensor_interval_seconds, settings.alert_threshold_percent) == (60, 1.0)
    assert settings.stream_configured and settings.alerts_topic_env == ALERTS_TOPIC_ENV
    # The quote prefixes stay the package's defaults, which the quotes policy and the lifecycle rule name.
    assert not {"STOCK_PLATFORM_QUOTES_PREFIX", "STOCK_PLATFORM_QUOTES_LAKE_PREFIX"} & set(run)
    assert "STOCK_PLATFORM_QUOTES_STAGING_PREFIX" not in run
