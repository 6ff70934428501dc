"""Lambda-shaped calls against moto's server (DynamoDB, SSM, Secrets Manager, S3) and sshd.

``lambda_env(config)`` puts a function's environment in place: the configuration
as ``FILEFERRY_CONFIG_JSON``, every boto3 client pointed at moto
(``AWS_ENDPOINT_URL``), the idempotency table, X-Ray off. ``FakeContext`` is the
part of Lambda's context object the handlers use.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.aws.runtime import release_powertools
from fileferry.sandbox.s3 import MotoServer

EVENTS = Path(__file__).resolve().parents[1] / "events"
SAMPLE_TRANSFER = "tr-5f1c2a9e0b7d4c13"
SAMPLE_BUCKET = "fileferry-demo-reports"
IDEMPOTENCY_TABLE = "fileferry-idempotency-" + secrets.token_hex(4)


@dataclass
class FakeContext:
    """Lambda's context: names, and a fixed remaining time (a forced budget when small)."""

    function_name: str = "FileFerry-Test"
    remaining_ms: int = 900_000
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def event(name: str, transfer_id: str, bucket: str = SAMPLE_BUCKET,
          **overrides: Any) -> dict[str, Any]:
    """``tests/events/NAME.json`` for a fresh transfer id and bucket, with ``overrides``."""
    text = (EVENTS / f"{name}.json").read_text(encoding="utf-8")
    text = text.replace(SAMPLE_TRANSFER, transfer_id).replace(SAMPLE_BUCKET, bucket)
    text = text.replace(SAMPLE_TRANSFER[-8:], transfer_id[-8:])
    data: dict[str, Any] = json.loads(text)
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def idempotency_table(moto: MotoServer) -> str:
    """The Powertools idempotency table, as the SAM template defines it."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    dynamodb.create_table(TableName=IDEMPOTENCY_TABLE, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    return IDEMPOTENCY_TABLE


LambdaEnv = Callable[[dict[str, Any]], None]


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, moto: MotoServer,
               idempotency_table: str) -> LambdaEnv:
    """``lambda_env(config_dict)``: this test's functions read ``config_dict``."""

    def apply(config: dict[str, Any]) -> None:
        monkeypatch.setenv("FILEFERRY_CONFIG_JSON", json.dumps(config))
        monkeypatch.delenv("FILEFERRY_CONFIG_SSM", raising=False)
        monkeypatch.setenv("FILEFERRY_CONFIG_MAX_AGE", "0")
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
        monkeypatch.setenv("FILEFERRY_IDEMPOTENCY_TABLE", idempotency_table)
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")

    return apply


@pytest.fixture(scope="package", autouse=True)
def _release_powertools_afterwards() -> Iterator[None]:
    """The handlers called here set Powertools up in this process (as a Lambda's first call
    does); the tests after these get the ``fileferry`` logger back as it was."""
    yield
    release_powertools()
