"""A retried AwaitApproval gets a new task token from Step Functions: the latest one wins.

The RequestApproval handler runs as Lambda runs it, with Powertools idempotency on
moto's DynamoDB; the decision goes through ``approve_transfer`` (engine stepfunctions)
to moto's SendTaskSuccess, whose request is read from boto3's own event hook.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import boto3

from fileferry.config import parse_settings
from fileferry.identity.principal import Principal
from fileferry.models import new_transfer_id
from fileferry.services import approve_transfer
from fileferry.store import open_store
from tests.aws.conftest import LambdaEnv, event
from tests.aws.template import ACCOUNT
from tests.aws.test_handlers import call, lambda_config, start


def _token() -> str:
    return "AQCEAAAAKgAAAAMAAAAAAAAAA" + secrets.token_hex(16)


async def test_a_retried_await_approval_sends_the_decision_to_the_new_token(
        lambda_env: LambdaEnv, tmp_path: Path, moto: Any) -> None:
    partner = {"url": "sftp://ferry@192.0.2.10/inbound/", "password": "not-used-here"}
    config = lambda_config(moto.endpoint_url, tmp_path, {"partner": partner}, workflow={
        "engine": "stepfunctions", "endpoint_url": moto.endpoint_url,
        "state_machine_arn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:FileFerry-T"})
    lambda_env(config)
    tid, old, new = new_transfer_id(), _token(), _token()
    await start(config, event("validate_input", tid))
    assert await call("RequestApprovalFunction", event("request_approval", tid,
                                                       callback_id=old)) is None
    settings = parse_settings(config)
    async with open_store(settings.store.url) as store:
        first = await store.recorded("approval_request", tid)
    assert first is not None and first["callback_id"] == old

    # the Task retried: a new token; then a late replay of the first attempt's event
    await call("RequestApprovalFunction", event("request_approval", tid, callback_id=new))
    await call("RequestApprovalFunction", event("request_approval", tid, callback_id=old))
    async with open_store(settings.store.url) as store:
        kept = await store.recorded("approval_request", tid)
        audit = [e.event for e in await store.audit(tid)]
        record = await store.get_transfer(tid)
    assert kept is not None and kept["callback_id"] == new
    assert {k: v for k, v in kept.items() if k not in ("callback_id", "renewed_at")} == \
        {k: v for k, v in first.items() if k not in ("callback_id", "renewed_at")}
    assert audit.count("approval_requested") == audit.count("approval_token_renewed") == 1
    assert record is not None and record.status == "PENDING_APPROVAL"

    sent: list[tuple[str, dict[str, Any]]] = []

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    events = boto3._get_default_session().events  # clients made later inherit the hook
    events.register("provide-client-params.sfn", capture)
    bob = Principal(user="bob", groups=frozenset({"finance-approvers"}), source="sso")
    try:
        await approve_transfer(settings, tid, bob, "fine")
    finally:
        events.unregister("provide-client-params.sfn", capture)
    [(operation, params)] = [(n, p) for n, p in sent if n.startswith("SendTask")]
    assert operation == "SendTaskSuccess" and params["taskToken"] == new
    assert json.loads(params["output"]) == {"approver": "bob", "reason": "fine"}
