"""A call whose idempotency key is still being processed (a Step Functions retry racing
a slow first attempt) fails with Powertools' IdempotencyAlreadyInProgressError, the
name the ASL's Retry of that Task waits out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

from fileferry.aws.runtime import lambda_error
from fileferry.workflow.registry import definition_text
from tests.aws.conftest import LambdaEnv
from tests.aws.test_handlers import authenticated_once, call


def retried_names(placeholder: str) -> set[str]:
    """Every error name the Task running ``${placeholder}`` retries."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("Type") == "Task" and placeholder in json.dumps(node.get("Resource")):
                found.update(n for r in node.get("Retry", []) for n in r["ErrorEquals"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(definition_text()))
    return found


async def test_a_call_still_in_progress_is_refused_under_the_name_the_asl_retries(
        lambda_env: LambdaEnv, tmp_path: Path, moto: Any, idempotency_table: str) -> None:
    payload, first = await authenticated_once(lambda_env, tmp_path, moto)
    # plant what a first attempt still running leaves: its record INPROGRESS until its
    # deadline (Powertools sets the in-progress expiry from the Lambda's remaining time)
    dynamodb = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    [item] = [i for i in dynamodb.scan(TableName=idempotency_table)["Items"]
              if i["id"]["S"].startswith("FileFerry-AuthSSO#")
              and first["session_id"] in i.get("data", {}).get("S", "")]
    deadline_ms = int(time.time() * 1000) + 600_000
    dynamodb.update_item(TableName=idempotency_table, Key={"id": item["id"]},
                         UpdateExpression="SET #s = :s, in_progress_expiration = :e REMOVE #d",
                         ExpressionAttributeNames={"#s": "status", "#d": "data"},
                         ExpressionAttributeValues={":s": {"S": "INPROGRESS"},
                                                    ":e": {"N": str(deadline_ms)}})

    with pytest.raises(IdempotencyAlreadyInProgressError) as caught:
        await call("AuthenticateSSOFunction", payload)
    name = lambda_error(caught.value)["errorType"]
    assert name == "IdempotencyAlreadyInProgressError"
    assert name in retried_names("AuthenticateSSOFunction")

    # the first attempt ends: the retry then gets its result, not a second session
    dynamodb.update_item(TableName=idempotency_table, Key={"id": item["id"]},
                         UpdateExpression="SET #s = :s, #d = :d",
                         ExpressionAttributeNames={"#s": "status", "#d": "data"},
                         ExpressionAttributeValues={":s": {"S": "COMPLETED"},
                                                    ":d": item["data"]})
    assert await call("AuthenticateSSOFunction", payload) == first
