"""The agent's status and cancel tools follow the API's visibility rule
(identity/visibility.py): an approver reads the transfer waiting for their group but
cannot cancel it, an outsider is told there is no such transfer, an operator cancels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fileferry.identity.principal import Principal
from tests.agent.conftest import MALLORY, AgentEnv, tools_for
from tests.agent.test_tools import _planned

BOB = Principal("bob", frozenset({"approvers"}), source="sso")
DAVE = Principal("dave", frozenset({"ops-audit"}), source="sso")


async def test_an_approver_reads_an_operator_cancels(make_env: Callable[..., AgentEnv],
                                                     s3: Any) -> None:
    env = make_env(sso={"issuer": "http://127.0.0.1:9/realms/test", "audience": "fileferry",
                        "operator_groups": ["ops-audit"]},
                   policies=[{"name": "with-approval", "users": ["*"], "sources": ["s3://*"],
                              "destinations": ["*"],
                              "requires_approval": {"group": "approvers", "timeout": 600}}])
    alice, plan_id = await _planned(env, s3)
    alice.conversation.begin_turn("yes")
    started = await alice.call("execute_transfer", {"plan_id": plan_id})
    assert started.ok and started.data["status"] == "PENDING_APPROVAL", started
    tid = {"transfer_id": started.data["transfer_id"]}
    bob = tools_for(env.settings, BOB)
    shown = await bob.call("get_transfer_status", tid)
    assert shown.ok and shown.data["transfer"]["requester"] == "alice"
    refused = await bob.call("cancel_transfer", tid)
    assert refused.outcome == "denied" and "only its requester (alice)" in refused.message
    for name in ("get_transfer_status", "cancel_transfer"):
        out = await tools_for(env.settings, MALLORY).call(name, tid)
        assert out.outcome == "refused" and "that you may see" in out.message
    stopped = await tools_for(env.settings, DAVE).call("cancel_transfer", tid)
    assert stopped.ok and "was waiting for approval" in stopped.message, stopped
    after = await alice.call("get_transfer_status", tid)
    assert after.data["transfer"]["status"] == "CANCELLED", after
