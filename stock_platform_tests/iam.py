"""moto's server with IAM enforced, and users holding exactly one policy: for the least-privilege tests."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stock_platform.local.stack import start_moto


@pytest.fixture
def enforcing_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The first three requests (creating an admin) are unauthenticated; every later one is checked against IAM.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")
    server = start_moto(log_path=tmp_path / "moto.log")
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    yield server.endpoint
    server.stop()


def keys_for(iam, user: str, policy: dict) -> dict[str, str]:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
