"""deploy/ on real servers: the template created on moto's CloudFormation (server mode, over HTTP); the ECS
instance file loaded as a real DagsterInstance on that stack, against a PostgreSQL that, like RDS with
rds.force_ssl=1, only speaks TLS, and launching each run as its own ECS task; the single-machine instance on the
image's default port. The operations deploy/README.md documents: test_deploy_operations.py.

moto's CloudFormation has no model for some resource types. The stack created here is a variant of the template
without them (references to them become placeholders), and the tests assert the exact list of skipped types; the
two moto defects worked around are in `apply_moto_workarounds`. What moto cannot show is checked against the
template itself in unit/test_deploy_config.py.
"""

import ast
import copy
import json
import re
import socket
import ssl
import struct
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import boto3
import dagster as dg
import psycopg
import pytest
from botocore.exceptions import ClientError
from cfnlint.decode import decode
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from moto.cloudformation.parsing import get_model_map
from sqlalchemy.engine import make_url

from stock_platform.local.loopback import LoopbackServer
from stock_platform.local.stack import FAKE_AWS_ENV, PROJECT_ROOT
from stock_platform_tests.waiting import wait_until

pytestmark = pytest.mark.integration

DEPLOY = PROJECT_ROOT / "deploy"
# Resource types of the template that moto's CloudFormation (moto/cloudformation/parsing.py, get_model_map) cannot
# create. The moto stack is created without them.
SKIPPED_TYPES = [
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::SecretsManager::Secret",
    "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::ServiceDiscovery::PrivateDnsNamespace",
    "AWS::ServiceDiscovery::Service",
]
# Bucket settings moto's CloudFormation accepts but does not apply (moto/s3/models.py, FakeBucket
# .create_from_cloudformation_json applies BucketEncryption and Tags only). Asserted absent on moto, so this list stays
# exact as moto improves; the template's values are checked in unit/test_deploy_config.py.
BUCKET_SETTINGS_MOTO_IGNORES = [
    "VersioningConfiguration",
    "PublicAccessBlockConfiguration",
    "OwnershipControls",
    "LifecycleConfiguration",
    "NotificationConfiguration",
]
# Stream settings moto's CloudFormation does not apply (moto/kinesis/models.py, Stream.create_from_cloudformation_json
# passes the shard count and retention only). Asserted absent on moto, like the bucket settings above.
STREAM_SETTINGS_MOTO_IGNORES = ["StreamEncryption"]
STACK_TIMEOUT_S = 120.0


@dataclass
class DeployedStack:
    endpoint: str
    name: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    physical_ids: dict[str, str]  # logical id -> physical id, for the resources moto created
    skipped: dict[str, str]  # logical id -> type, left out of the moto variant

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint)


def placeholder(logical_id: str) -> str:
    return f"arn:aws:skipped:::{logical_id}"


def substitute(text: str, skipped: set[str]) -> str:
    """An Fn::Sub string with its ${Resource} and ${Resource.Attribute} variables for skipped resources filled in."""
    return re.sub(
        r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}", lambda m: placeholder(m[1]) if m[1] in skipped else m[0], text
    )


def without(node, skipped: set[str]):
    """`node` with every Ref, GetAtt and Sub variable naming a skipped resource replaced by a placeholder."""
    if isinstance(node, list):
        return [without(value, skipped) for value in node]
    if not isinstance(node, dict):
        return node
    (function, argument) = next(iter(node.items())) if len(node) == 1 else (None, None)
    named = argument if function == "Ref" else argument[0] if function == "Fn::GetAtt" else None
    if named in skipped:
        return placeholder(named)
    if function == "Fn::Sub":
        if isinstance(argument, str):
            return {function: substitute(argument, skipped)}
        return {function: [substitute(argument[0], skipped), without(argument[1], skipped)]}
    return {key: without(value, skipped) for key, value in node.items()}


def apply_moto_workarounds(resources: dict) -> None:
    """The only other differences between the moto stack and the template: two moto defects."""
    # moto's DBInstance receives the parameter group object where it expects the group's name (AttributeError in
    # rds/models.py, is_default_parameter_group): the moto database keeps the default group. The wiring is checked
    # in unit/test_deploy_config.py, the group's rds.force_ssl=1 here.
    del resources["Database"]["Properties"]["DBParameterGroupName"]
    # moto's RunTask adds up container-level memory only (ecs/models.py, _calculate_task_resource_requirements);
    # Fargate needs only the task-level figure, which each container gets here.
    for resource in resources.values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                container["Memory"] = int(resource["Properties"]["Memory"])


def moto_variant(template: dict) -> tuple[dict, dict[str, str]]:
    supported = set(get_model_map())
    skipped = {name: r["Type"] for name, r in template["Resources"].items() if r["Type"] not in supported}
    variant = copy.deepcopy(template)
    variant["Resources"] = {}
    for name, declared in template["Resources"].items():
        if name in skipped:
            continue
        resource = without(declared, set(skipped))
        depends = resource.get("DependsOn")
        if depends is not None:
            remaining = [d for d in ([depends] if isinstance(depends, str) else depends) if d not in skipped]
            if remaining:
                resource["DependsOn"] = remaining
            else:
                del resource["DependsOn"]
        variant["Resources"][name] = resource
    apply_moto_workarounds(variant["Resources"])
    variant["Outputs"] = without(template["Outputs"], set(skipped))
    return variant, skipped


def create_stack(endpoint: str, template: dict, parameters: dict[str, str], name: str) -> dict:
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )

    def settled() -> dict | None:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        return None if stack["StackStatus"].endswith("_IN_PROGRESS") else stack

    return wait_until(settled, timeout=STACK_TIMEOUT_S, what=f"stack {name} to leave *_IN_PROGRESS")


@pytest.fixture(scope="module")
def deployed(moto_endpoint: str) -> Iterator[DeployedStack]:
    with pytest.MonkeyPatch.context() as env:
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        template, problems = decode(str(DEPLOY / "cloudformation.yaml"))
        assert not problems, problems
        variant, skipped = moto_variant(template)
        ec2 = boto3.client("ec2", endpoint_url=moto_endpoint)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        suffix = uuid.uuid4().hex[:8]
        parameters = {
            "ProjectName": f"sp{suffix}",
            "ImageUri": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/stock-platform:{suffix}",
            "SourceBucketName": f"source-{suffix}",
            "MonitoredBucketName": f"monitored-{suffix}",
            "ComputeLogBucketName": f"compute-logs-{suffix}",
            "NotificationEmail": "operations@example.com",
            "AlertsEmail": "traders@example.com",
            "VpcId": vpc,
            "SubnetIds": ",".join(s["SubnetId"] for s in subnets[:2]),
            "UiAllowedCidr": "203.0.113.10/32",
        }
        name = f"stock-platform-{suffix}"
        stack = create_stack(moto_endpoint, variant, parameters, name)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        listed = boto3.client("cloudformation", endpoint_url=moto_endpoint).describe_stack_resources(StackName=name)
        yield DeployedStack(
            endpoint=moto_endpoint,
            name=name,
            parameters=parameters,
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
            physical_ids={
                r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                for r in listed["StackResources"]
                if "LogicalResourceId" in r
            },
            skipped=skipped,
        )


def stream_summary(deployed: DeployedStack) -> dict:
    kinesis = deployed.client("kinesis")
    return kinesis.describe_stream_summary(StreamName=deployed.outputs["QuoteStreamName"])["StreamDescriptionSummary"]


def shipped_policy(name: str, deployed: DeployedStack) -> dict:
    text = (DEPLOY / "iam" / name).read_text()
    for placeholder_name, value in {
        "SOURCE_BUCKET": deployed.parameters["SourceBucketName"],
        "MONITORED_BUCKET": deployed.parameters["MonitoredBucketName"],
        "TOPIC_ARN": deployed.outputs["NotificationTopicArn"],
        "ALERTS_TOPIC": deployed.outputs["AlertsTopicArn"],
        "STREAM_ARN": stream_summary(deployed)["StreamARN"],
    }.items():
        text = text.replace(placeholder_name, value)
    return json.loads(text)


def role_policy(iam, role: str, name: str) -> dict:
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    # moto's CloudFormation keeps an inline policy as a Python dict and answers with its repr, not JSON.
    return ast.literal_eval(document) if isinstance(document, str) else document


def test_moto_skips_exactly_the_listed_resource_types(deployed: DeployedStack) -> None:
    assert sorted(set(deployed.skipped.values())) == SKIPPED_TYPES
    assert sorted(deployed.skipped) == [
        "AlertsEmailSubscription",
        "CodeLocationDiscoveryService",
        "ComputeLogBucketPolicy",
        "DatabaseSecret",
        "DatabaseSecretAttachment",
        "MarkerQueuePolicy",
        "MonitoredBucketPolicy",
        "NotificationEmailSubscription",
        "ServiceNamespace",
        "SourceBucketPolicy",
    ]


def test_the_stack_creates_every_other_resource_and_its_outputs(deployed: DeployedStack) -> None:
    template, _ = decode(str(DEPLOY / "cloudformation.yaml"))
    created = {
        name for name, r in template["Resources"].items() if name not in deployed.skipped and "Condition" not in r
    }
    listed = deployed.client("cloudformation").describe_stack_resources(StackName=deployed.name)["StackResources"]
    statuses = {r["LogicalResourceId"]: r["ResourceStatus"] for r in listed if "LogicalResourceId" in r}
    assert statuses == dict.fromkeys(created, "CREATE_COMPLETE")
    p, out = deployed.parameters, deployed.outputs
    assert out["SourceBucketUrl"] == f"s3://{p['SourceBucketName']}/"
    assert out["MonitoredBucketUrl"] == f"s3://{p['MonitoredBucketName']}/"
    assert out["ComputeLogUrl"] == f"s3://{p['ComputeLogBucketName']}/compute-logs/"
    assert re.fullmatch(r"http://[\w.-]+\.elb\.amazonaws\.com", out["WebserverUrl"]), out["WebserverUrl"]
    assert out["MarkerQueueUrl"].endswith(f"/{p['ProjectName']}-markers")
    assert out["NotificationTopicArn"].endswith(f":{p['ProjectName']}-notifications")
    assert out["AlertsTopicArn"].endswith(f":{p['ProjectName']}-price-alerts")
    assert out["QuoteStreamName"] == f"{p['ProjectName']}-quotes"
    assert out["RunTaskDefinitionArn"].endswith(f":task-definition/{p['ProjectName']}-run:1")
    assert out["DatabaseEndpoint"].endswith(":5432")
    assert out["DatabaseSecretArn"] == placeholder("DatabaseSecret")  # skipped on moto


def test_buckets_are_encrypted_and_what_moto_ignores_is_listed(deployed: DeployedStack) -> None:
    s3 = deployed.client("s3")
    for key in ("SourceBucketName", "MonitoredBucketName", "ComputeLogBucketName"):
        bucket = deployed.parameters[key]
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        # Declared in the template, not applied by moto: see BUCKET_SETTINGS_MOTO_IGNORES.
        applied = {
            "VersioningConfiguration": "Status" in s3.get_bucket_versioning(Bucket=bucket),
            "NotificationConfiguration": "QueueConfigurations"
            in s3.get_bucket_notification_configuration(Bucket=bucket),
        }
        for setting, read in (
            ("PublicAccessBlockConfiguration", s3.get_public_access_block),
            ("OwnershipControls", s3.get_bucket_ownership_controls),
            ("LifecycleConfiguration", s3.get_bucket_lifecycle_configuration),
        ):
            try:
                read(Bucket=bucket)
                applied[setting] = True
            except ClientError:
                applied[setting] = False
        assert sorted(s for s, present in applied.items() if not present) == sorted(BUCKET_SETTINGS_MOTO_IGNORES)


def test_the_queue_topic_and_log_groups(deployed: DeployedStack) -> None:
    sqs = deployed.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=deployed.physical_ids["MarkerQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    dead_letter = sqs.get_queue_attributes(
        QueueUrl=deployed.physical_ids["MarkerDeadLetterQueue"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert queue["SqsManagedSseEnabled"] == "true" and queue["MessageRetentionPeriod"] == "1209600"
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letter, "maxReceiveCount": 5}
    topic = deployed.client("sns").get_topic_attributes(TopicArn=deployed.outputs["NotificationTopicArn"])
    assert topic["Attributes"]["KmsMasterKeyId"] == "alias/aws/sns"
    project = deployed.parameters["ProjectName"]
    groups = deployed.client("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{project}/")["logGroups"]
    assert {g["logGroupName"]: g["retentionInDays"] for g in groups} == {
        f"/ecs/{project}/{kind}": 30 for kind in ("webserver", "daemon", "code-location", "runs")
    }


def test_the_quote_stream_and_the_alerts_topic(deployed: DeployedStack) -> None:
    summary = stream_summary(deployed)
    assert summary["StreamStatus"] == "ACTIVE" and summary["RetentionPeriodHours"] == 24
    # The default: one provisioned shard (QuoteStreamShards=1).
    assert summary["OpenShardCount"] == 1 and summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    applied = {"StreamEncryption": summary.get("EncryptionType", "NONE") != "NONE"}
    assert sorted(s for s, present in applied.items() if not present) == STREAM_SETTINGS_MOTO_IGNORES
    sns = deployed.client("sns")
    alerts = sns.get_topic_attributes(TopicArn=deployed.outputs["AlertsTopicArn"])["Attributes"]
    assert alerts["KmsMasterKeyId"] == "alias/aws/sns"
    assert deployed.outputs["AlertsTopicArn"] != deployed.outputs["NotificationTopicArn"]


def test_roles_carry_the_shipped_least_privilege_policies(deployed: DeployedStack) -> None:
    iam = deployed.client("iam")
    roles = {
        name: deployed.physical_ids[name]
        for name in (
            "PipelineTaskRole",
            "DownloaderTaskRole",
            "DaemonTaskRole",
            "WebserverTaskRole",
            "TaskExecutionRole",
        )
    }
    for role in roles.values():
        trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    assert role_policy(iam, roles["PipelineTaskRole"], "Pipeline") == shipped_policy("pipeline-policy.json", deployed)
    assert role_policy(iam, roles["PipelineTaskRole"], "Quotes") == shipped_policy("quotes-policy.json", deployed)
    assert role_policy(iam, roles["DownloaderTaskRole"], "Downloader") == shipped_policy(
        "downloader-policy.json", deployed
    )
    launch = role_policy(iam, roles["DaemonTaskRole"], "LaunchRuns")
    statements = {s["Sid"]: s for s in launch["Statement"]}
    run_family = deployed.outputs["RunTaskDefinitionArn"].rsplit(":", 1)[0]
    assert statements["StartRunTasksOfItsDefinitionOnItsCluster"]["Resource"] == f"{run_family}:*"
    assert sorted(statements["PassOnlyTheRunRoles"]["Resource"]) == sorted(
        [
            iam.get_role(RoleName=roles["PipelineTaskRole"])["Role"]["Arn"],
            iam.get_role(RoleName=roles["TaskExecutionRole"])["Role"]["Arn"],
        ]
    )
    # Nobody may delete anything from the buckets, but the pipeline its own frames (prune_unlisted) and the lake
    # parts it has compacted (quote_lake).
    source = f"arn:aws:s3:::{deployed.parameters['SourceBucketName']}"
    deleting = []
    for role in roles.values():
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = role_policy(iam, role, name)
            for statement in document["Statement"]:
                actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
                deletes = [a for a in actions if a.startswith("s3:Delete") or a in ("s3:*", "*")]
                if deletes and statement["Effect"] == "Allow":
                    resource = statement["Resource"]
                    deleting.append((role, name, deletes, [resource] if isinstance(resource, str) else resource))
    assert sorted(deleting) == [
        (roles["PipelineTaskRole"], "Pipeline", ["s3:DeleteObject"], [f"{source}/Processed/*"]),
        (roles["PipelineTaskRole"], "Quotes", ["s3:DeleteObject"], [f"{source}/Lake/quotes/date=*/part-*.parquet"]),
    ]


def test_database_network_and_services(deployed: DeployedStack) -> None:
    rds = deployed.client("rds")
    (database,) = rds.describe_db_instances(DBInstanceIdentifier=deployed.physical_ids["Database"])["DBInstances"]
    assert (database["Engine"], database["EngineVersion"], database["Endpoint"]["Port"]) == ("postgres", "16.15", 5432)
    assert database["StorageEncrypted"] and not database["PubliclyAccessible"]
    forced = [
        (g["DBParameterGroupName"], p["ParameterValue"])
        for g in rds.describe_db_parameter_groups()["DBParameterGroups"]
        if g["DBParameterGroupName"].startswith(deployed.name)
        for p in rds.describe_db_parameters(DBParameterGroupName=g["DBParameterGroupName"])["Parameters"]
        if p["ParameterName"] == "rds.force_ssl"
    ]
    assert [value for _, value in forced] == ["1"]

    ec2 = deployed.client("ec2")
    groups = {
        name: deployed.physical_ids[name]
        for name in ("DatabaseSecurityGroup", "TaskSecurityGroup", "LoadBalancerSecurityGroup")
    }

    def ingress(group: str) -> list[tuple[int, str]]:
        (described,) = ec2.describe_security_groups(GroupIds=[groups[group]])["SecurityGroups"]
        return sorted(
            (rule["FromPort"], source)
            for rule in described["IpPermissions"]
            for source in [p["GroupId"] for p in rule["UserIdGroupPairs"]] + [r["CidrIp"] for r in rule["IpRanges"]]
        )

    assert ingress("DatabaseSecurityGroup") == [(5432, groups["TaskSecurityGroup"])]
    assert ingress("TaskSecurityGroup") == sorted(
        [(3000, groups["LoadBalancerSecurityGroup"]), (4000, groups["TaskSecurityGroup"])]
    )
    assert ingress("LoadBalancerSecurityGroup") == [(80, "203.0.113.10/32"), (443, "203.0.113.10/32")]

    ecs = deployed.client("ecs")
    cluster = deployed.parameters["ProjectName"]
    services = ecs.describe_services(cluster=cluster, services=["webserver", "daemon", "code-location"])["services"]
    assert {s["serviceName"]: s["desiredCount"] for s in services} == {"webserver": 1, "daemon": 1, "code-location": 1}
    run = ecs.describe_task_definition(taskDefinition=deployed.outputs["RunTaskDefinitionArn"])["taskDefinition"]
    (container,) = run["containerDefinitions"]
    assert container["name"] == "run" and container["image"] == deployed.parameters["ImageUri"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["STOCK_PLATFORM_SOURCE_BUCKET"] == deployed.parameters["SourceBucketName"]
    assert environment["STOCK_PLATFORM_QUOTES_STREAM"] == deployed.outputs["QuoteStreamName"]
    assert environment["STOCK_PLATFORM_ALERTS_TOPIC_ARN"] == deployed.outputs["AlertsTopicArn"]
    assert environment["STOCK_PLATFORM_SNS_TOPIC_ARN"] == deployed.outputs["NotificationTopicArn"]
    assert environment["DAGSTER_COMPUTE_LOG_BUCKET"] == deployed.parameters["ComputeLogBucketName"]
    assert environment["STOCK_PLATFORM_DATABASE_URL"] == (
        f"postgresql+psycopg://stock_admin@{database['Endpoint']['Address']}:5432/stock_platform?sslmode=require"
    )
    assert {s["name"] for s in container["secrets"]} == {"DAGSTER_PG_PASSWORD", "PGPASSWORD"}
    assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{cluster}/runs"

    elb = deployed.client("elbv2")
    (target_group,) = elb.describe_target_groups(TargetGroupArns=[deployed.physical_ids["WebserverTargetGroup"]])[
        "TargetGroups"
    ]
    assert (target_group["Port"], target_group["HealthCheckPath"], target_group["TargetType"]) == (
        3000,
        "/server_info",
        "ip",
    )
    (listener,) = elb.describe_listeners(LoadBalancerArn=deployed.physical_ids["LoadBalancer"])["Listeners"]
    assert (listener["Port"], listener["DefaultActions"][0]["Type"]) == (80, "forward")


# ---- The ECS instance file on the stack, over TLS.

SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


HANDSHAKE_TIMEOUT_S = 30


class TlsOnlyPostgres:
    """127.0.0.1:<port> in front of the test PostgreSQL (embedded, Unix socket), serving TLS sessions only, as RDS does
    with rds.force_ssl=1: a client that does not ask for TLS gets PostgreSQL's error and is counted as refused."""

    def __init__(self, upstream: str, cert_dir: Path) -> None:
        url = make_url(upstream)
        if url.host:
            self.upstream: tuple[int, object] = (socket.AF_INET, (url.host, url.port or 5432))
        else:
            self.upstream = (socket.AF_UNIX, f"{url.query['host']}/.s.PGSQL.{url.port or 5432}")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*self_signed_certificate(cert_dir))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls_sessions = 0
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _serve(self, client: socket.socket) -> None:
        # The handshake is bounded: a stalled one (seen under heavy CPU load) fails this connection, and the
        # client's own connect timeout (PGCONNECT_TIMEOUT) plus dagster-postgres's retries try again.
        client.settimeout(HANDSHAKE_TIMEOUT_S)
        with suppress(OSError, ConnectionError, ssl.SSLError):
            _, code = struct.unpack("!ii", self._read(client, 8))
            if code == GSSENC_REQUEST:  # no GSSAPI here: say so, the client then asks for TLS
                client.sendall(b"N")
                _, code = struct.unpack("!ii", self._read(client, 8))
            if code != SSL_REQUEST:
                self.refused += 1
                fields = b"SFATAL\0C28000\0Mconnection refused: TLS is required\0\0"
                client.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
                client.close()
                return
            client.sendall(b"S")
            tls = self.context.wrap_socket(client, server_side=True)
            tls.settimeout(None)  # an established session may sit idle in a pool
            self.tls_sessions += 1
            family, address = self.upstream
            upstream = socket.socket(family, socket.SOCK_STREAM)
            upstream.connect(address)
            threading.Thread(target=self._pipe, args=(upstream, tls), daemon=True).start()
            self._pipe(tls, upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError, ssl.SSLError):
            while data := source.recv(65536):
                target.sendall(data)
        for end in (source, target):
            with suppress(OSError):
                end.close()


@contextmanager
def fresh_database(stack) -> Iterator[str]:
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with stack.connect() as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield database
    finally:
        with stack.connect() as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


@dataclass
class EcsInstance:
    instance: dg.DagsterInstance
    proxy: TlsOnlyPostgres
    database: str
    user: str


@pytest.fixture
def ecs_instance(
    deployed: DeployedStack, stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EcsInstance]:
    """deploy/ecs/dagster.yaml as the stack's tasks load it: storage through the TLS-only endpoint, the stack's run
    task definition and compute-log bucket (on moto)."""
    proxy = TlsOnlyPostgres(stack.database_url, tmp_path)
    url = make_url(stack.database_url)
    home = tmp_path / "ecs_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DEPLOY / "ecs" / "dagster.yaml").read_text())
    try:
        with fresh_database(stack) as database:
            monkeypatch.delenv("PGSSLMODE", raising=False)  # TLS must come from the instance file itself
            monkeypatch.setenv("PGCONNECT_TIMEOUT", "60")  # libpq gives up on a stalled handshake; Dagster retries
            for key, value in {
                "DAGSTER_HOME": str(home),
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(proxy.port),
                "DAGSTER_PG_USERNAME": url.username or "postgres",
                "DAGSTER_PG_PASSWORD": url.password or "",
                "DAGSTER_PG_DB": database,
                # The family, as a run task has it: the launcher resolves it on the stack to the exact revision.
                "DAGSTER_RUN_TASK_DEFINITION": f"{deployed.parameters['ProjectName']}-run",
                "DAGSTER_COMPUTE_LOG_BUCKET": deployed.parameters["ComputeLogBucketName"],
            }.items():
                monkeypatch.setenv(key, value)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield EcsInstance(instance, proxy, database, url.username or "postgres")
    finally:
        proxy.close()


def test_the_ecs_instance_loads_on_the_stack_and_speaks_only_tls(deployed: DeployedStack, ecs_instance) -> None:
    instance, proxy = ecs_instance.instance, ecs_instance.proxy
    launcher = instance.run_launcher
    assert type(launcher).__name__ == "EcsRunLauncher"
    assert launcher.task_definition == deployed.outputs["RunTaskDefinitionArn"]
    assert launcher.container_name == "run"
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "HeldPostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    queue = instance.run_coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 4
    assert [(limit["key"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [("stock_platform/target", 1)]
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    assert instance.run_coordinator.dequeue_interval_seconds == 1
    assert instance.run_monitoring_enabled and instance.run_retries_enabled
    assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
    with instance.compute_log_manager.capture_logs(["deploy-test", "step"]):
        print("a step's output", flush=True)
    assert instance.get_runs() == []  # the storage answers, over TLS

    bucket = deployed.parameters["ComputeLogBucketName"]
    keys = [o["Key"] for o in deployed.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(k.startswith("compute-logs/storage/deploy-test/") for k in keys), keys
    assert proxy.tls_sessions > 0 and proxy.refused == 0
    with pytest.raises(psycopg.OperationalError, match="TLS is required"):
        psycopg.connect(
            host="127.0.0.1",
            port=proxy.port,
            dbname=ecs_instance.database,
            user=ecs_instance.user,
            sslmode="disable",
            connect_timeout=5,
        )
    assert proxy.refused == 1


@contextmanager
def task_metadata_endpoint(cluster: str, task_arn: str) -> Iterator[str]:
    """ECS's task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4) as a task sees it: which cluster and task it is."""

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"Cluster": cluster, "TaskARN": task_arn}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = LoopbackServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_each_run_is_its_own_ecs_task_of_the_run_task_definition(
    deployed: DeployedStack, ecs_instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's own task on the stack's cluster: the launcher copies its cluster and network for each run.
    ecs = deployed.client("ecs")
    cluster = deployed.parameters["ProjectName"]
    subnet = deployed.parameters["SubnetIds"].split(",")[0]
    (daemon,) = ecs.run_task(
        cluster=cluster,
        taskDefinition=f"{cluster}-daemon",
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "assignPublicIp": "ENABLED"}},
    )["tasks"]
    instance = ecs_instance.instance
    origin = JobPythonOrigin(
        "stock_batch_job",
        RepositoryPythonOrigin(
            "/usr/local/bin/python",
            ModuleCodePointer("stock_platform.definitions", "defs", None),
            container_image=deployed.parameters["ImageUri"],
        ),
    )
    with task_metadata_endpoint(daemon["clusterArn"], daemon["taskArn"]) as metadata:
        monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata)
        runs = [create_run_for_test(instance, job_name="stock_batch_job", job_code_origin=origin) for _ in range(2)]
        for run in runs:
            instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    task_arns = [instance.get_run_by_id(run.run_id).tags["ecs/task_arn"] for run in runs]
    assert len(set(task_arns)) == 2  # one task per run
    tasks = {t["taskArn"]: t for t in ecs.describe_tasks(cluster=cluster, tasks=task_arns, include=["TAGS"])["tasks"]}
    for run, arn in zip(runs, task_arns, strict=True):
        task = tasks[arn]
        assert task["taskDefinitionArn"] == deployed.outputs["RunTaskDefinitionArn"]
        assert task["launchType"] == "FARGATE" and task["clusterArn"] == daemon["clusterArn"]
        (override,) = task["overrides"]["containerOverrides"]
        assert override["name"] == "run"
        # The code location's interpreter (the image's), as the code server reports it in the run's origin.
        assert override["command"][:5] == ["/usr/local/bin/python", "-m", "dagster", "api", "execute_run"]
        assert run.run_id in override["command"][5]
        assert {"key": "dagster/run_id", "value": run.run_id} in task["tags"]


def test_the_single_machine_instance_takes_the_image_default_port(stack, tmp_path: Path, monkeypatch) -> None:
    url = make_url(stack.database_url)
    if (url.port or 5432) != 5432:
        pytest.skip(f"the test server listens on {url.port}, not the default port this test is about")
    image_env = dict(
        pair.split("=", 1)
        for line in re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text()).splitlines()
        if line.startswith("ENV ")
        for pair in line[4:].split()
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    with fresh_database(stack) as database:
        for key, value in image_env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "")  # empty: libpq uses PGHOST, the embedded socket
        if not url.host:
            monkeypatch.setenv("PGHOST", url.query["host"])
        monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", database)
        assert image_env["DAGSTER_PG_PORT"] == "5432"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
            assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
            assert instance.run_coordinator.dequeue_interval_seconds == 1
            assert instance.get_runs() == []
