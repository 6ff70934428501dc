"""The tools against real servers: planning, the confirmation gate, the re-check before
running, policy denials as results, status and cancel as the signed-in user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fileferry.agent.conversation import Conversation
from fileferry.agent.tools import TOOLS, ToolOutcome, tool_specs
from fileferry.store import open_store
from tests.agent.conftest import ALICE, MALLORY, AgentEnv, tools_for
from tests.helpers import seed
from tests.transfer.test_engine_sftp import tree

FILES = {"daily/2026-11-27/invoices-a.csv": b"a" * 1000,
         "daily/2026-11-27/invoices-b.csv": b"b" * 2000,
         "daily/2026-11-27/notes.txt": b"n" * 10,
         "daily/2026-11-27/sub/deep.csv": b"d" * 5}


def test_specs_are_generated_from_the_input_models() -> None:
    specs = {s["toolSpec"]["name"]: s["toolSpec"] for s in tool_specs()}
    assert list(specs) == ["list_destinations", "plan_transfer", "create_servicenow_tickets",
                           "execute_transfer", "get_transfer_status", "cancel_transfer"]
    plan = specs["plan_transfer"]["inputSchema"]["json"]
    assert plan["required"] == ["sources", "destination"]
    assert plan["additionalProperties"] is False
    assert plan["properties"]["sources"]["type"] == "array"
    assert "title" not in str(plan)
    assert specs["execute_transfer"]["inputSchema"]["json"]["properties"]["plan_id"][
        "pattern"] == "^pl-[0-9a-f]{12}$"
    assert all(t.description for t in TOOLS)


async def test_plan_expands_prefixes_and_patterns(agent_env: AgentEnv, s3: Any) -> None:
    seed(s3, agent_env.bucket, FILES)
    tools = tools_for(agent_env.settings)
    out = await tools.call("plan_transfer", {
        "sources": [f"s3://{agent_env.bucket}/daily/2026-11-27/*.csv"],
        "destination": "acme:inbound/"})
    assert out.ok, out.message
    plan = out.data["plan"]
    assert plan["count"] == 3 and plan["total_bytes"] == 3005
    assert sorted(f["target"] for f in plan["files"]) == [
        f"{agent_env.remote}/inbound/{n}" for n in ("deep.csv", "invoices-a.csv",
                                                     "invoices-b.csv")]
    assert plan["verification"] == "server-md5"
    assert "local mode" in plan["policy"] and plan["policy_warning"]
    assert tools.conversation.proposed == plan["plan_id"]
    prefix = await tools.call("plan_transfer", {
        "sources": [f"s3://{agent_env.bucket}/daily/2026-11-27/"], "destination": "acme:"})
    assert prefix.data["plan"]["count"] == 4
    assert f"{agent_env.remote}/sub/deep.csv" in {f["target"] for f in
                                                  prefix.data["plan"]["files"]}
    assert tree(agent_env.remote) == {}  # planning moved nothing


async def test_plan_refusals_are_results(agent_env: AgentEnv, s3: Any) -> None:
    seed(s3, agent_env.bucket, FILES)
    tools = tools_for(agent_env.settings)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"sources": [f"s3://{agent_env.bucket}/nothing/*.csv"], "destination": "acme:"},
         "refused", "no objects match"),
        ({"sources": [f"s3://{agent_env.bucket}/daily/"], "destination": "evil:"},
         "refused", "unknown destination 'evil'"),
        ({"sources": [f"s3://{agent_env.bucket}/daily/"], "destination": "acme:../../etc"},
         "refused", "outside"),
        ({"sources": ["/etc/passwd"], "destination": "acme:"}, "refused", "must be s3://"),
        ({"sources": [], "destination": "acme:"}, "invalid", "sources"),
        ({"sources": ["s3://b/k"]}, "invalid", "destination: Field required"),
        ({"sources": ["s3://b/k"], "destination": "acme:", "force": True}, "invalid",
         "force: Extra inputs are not permitted"),
    ]
    for raw, outcome, words in cases:
        out = await tools.call("plan_transfer", raw)
        assert (out.outcome, words in out.message) == (outcome, True), (raw, out)
    assert tools.conversation.plans == {}
    unknown = await tools.call("rm_rf", {"path": "/"})
    assert unknown.outcome == "invalid" and "no tool named 'rm_rf'" in unknown.message
    assert (await tools.call("plan_transfer", ["s3://b/k"])).outcome == "invalid"


async def _planned(env: AgentEnv, s3: Any, principal: Any = ALICE) -> tuple[Any, str]:
    seed(s3, env.bucket, FILES)
    tools = tools_for(env.settings, principal)
    out = await tools.call("plan_transfer", {
        "sources": [f"s3://{env.bucket}/daily/2026-11-27/*.csv"], "destination": "acme:in/"})
    assert out.ok, out.message
    return tools, out.data["plan"]["plan_id"]


async def test_execute_needs_the_users_confirmation(agent_env: AgentEnv, s3: Any) -> None:
    tools, plan_id = await _planned(agent_env, s3)
    for name in ("execute_transfer", "create_servicenow_tickets"):
        out = await tools.call(name, {"plan_id": plan_id})
        assert out.outcome == "refused" and "has not confirmed" in out.message, out
    conv = tools.conversation
    conv.begin_turn("yes, but to another partner")
    assert (await tools.call("execute_transfer", {"plan_id": plan_id})).outcome == "refused"
    assert (await tools.call("execute_transfer", {"plan_id": "pl-000000000000"})).message \
        .startswith("there is no plan pl-000000000000")
    assert tree(agent_env.remote) == {}
    conv.begin_turn("yes")
    done = await tools.call("execute_transfer", {"plan_id": plan_id})
    assert done.ok and done.data["status"] == "SUCCEEDED", done
    assert done.data["files_delivered"] == 3
    assert set(tree(agent_env.remote / "in")) == {"deep.csv", "invoices-a.csv",
                                                  "invoices-b.csv"}
    again = await tools.call("execute_transfer", {"plan_id": plan_id})
    assert again.ok and "started already" in again.message
    assert again.data["transfer_id"] == done.data["transfer_id"]


async def test_a_changed_plan_is_refused_and_proposed_again(agent_env: AgentEnv,
                                                           s3: Any) -> None:
    tools, plan_id = await _planned(agent_env, s3)
    tools.conversation.begin_turn("yes")
    tickets = await tools.call("create_servicenow_tickets", {"plan_id": plan_id})
    assert tickets.ok, tickets
    seed(s3, agent_env.bucket, {"daily/2026-11-27/late.csv": b"late"})
    out = await tools.call("execute_transfer", {"plan_id": plan_id})
    assert out.outcome == "refused" and "changed since the user confirmed" in out.message
    assert "3 files then, 4 now" in out.message
    fresh = out.data["plan"]
    assert fresh["plan_id"] != plan_id and fresh["count"] == 4
    assert tools.conversation.proposed == fresh["plan_id"]
    assert (await tools.call("execute_transfer", {"plan_id": fresh["plan_id"]})).outcome \
        == "refused"  # the new plan needs its own confirmation
    assert tree(agent_env.remote) == {}
    # The transfer recorded for the tickets is closed, and so are its tickets.
    async with open_store(agent_env.settings.store.url) as store:
        record = await store.get_transfer(tickets.data["transfer_id"])
    assert record is not None and record.status == "CANCELLED"
    user = [r for r in agent_env.snow.records("incident")
            if r["number"] == tickets.data["tickets"]["user"]]
    assert user and "CANCELLED" in agent_env.snow.store.journal_text(
        "incident", user[0]["sys_id"], "work_notes")


def _policies(bucket: str) -> list[dict[str, Any]]:
    return [{"name": "finance-to-acme", "groups": ["finance"],
             "sources": [f"s3://{bucket}/daily/*"], "destinations": ["acme"],
             "max_total_size": 2500}]


async def test_policy_denials_are_results_not_exceptions(
        make_env: Callable[..., AgentEnv], s3: Any, bucket: str) -> None:
    env = make_env(policies=_policies(bucket))
    seed(s3, env.bucket, FILES)
    mallory = tools_for(env.settings, MALLORY)
    out = await mallory.call("plan_transfer", {"sources": [f"s3://{bucket}/daily/"],
                                               "destination": "acme:"})
    assert out.outcome == "denied" and "no policy allows mallory" in out.message
    assert "invoices" not in str(out.model_dump())  # denied before anything was listed
    alice = tools_for(env.settings, ALICE)
    too_big = await alice.call("plan_transfer", {"sources": [f"s3://{bucket}/daily/"],
                                                 "destination": "acme:"})
    assert too_big.outcome == "denied" and "at most 2500 bytes" in too_big.message
    fine = await alice.call("plan_transfer", {
        "sources": [f"s3://{bucket}/daily/2026-11-27/invoices-b.csv"], "destination": "acme:"})
    assert fine.ok and fine.data["plan"]["policy"] == "policy finance-to-acme"
    assert fine.data["plan"]["policy_warning"] is None


async def test_status_and_cancel_as_the_signed_in_user(
        make_env: Callable[..., AgentEnv], s3: Any) -> None:
    issuer = "http://127.0.0.1:9/realms/test"  # never contacted: tools get a Principal
    env = make_env(sso={"issuer": issuer, "audience": "fileferry"},
                   policies=[{"name": "all", "users": ["*"], "sources": ["s3://*"],
                              "destinations": ["*"]}])
    tools, plan_id = await _planned(env, s3)
    tools.conversation.begin_turn("yes")
    done = await tools.call("execute_transfer", {"plan_id": plan_id})
    tid = done.data["transfer_id"]
    mine = await tools.call("get_transfer_status", {"transfer_id": tid})
    assert mine.ok and mine.data["transfer"]["status"] == "SUCCEEDED"
    assert mine.data["transfer"]["tickets"]["user"].startswith("INC")
    other = tools_for(env.settings, MALLORY)
    for name in ("get_transfer_status", "cancel_transfer"):
        out = await other.call(name, {"transfer_id": tid})
        assert out.outcome == "refused" and "that you may see" in out.message
    finished = await tools.call("cancel_transfer", {"transfer_id": tid})
    assert finished.outcome == "refused" and "succeeded" in finished.message
    bad = await tools.call("get_transfer_status", {"transfer_id": "../../etc"})
    assert bad.outcome == "invalid"


async def test_a_tool_bug_is_an_error_result(agent_env: AgentEnv,
                                             monkeypatch: Any) -> None:
    tools = tools_for(agent_env.settings)

    async def broken(self: Any, inp: Any) -> ToolOutcome:
        raise RuntimeError("boom")

    from fileferry.agent import tools as module

    monkeypatch.setitem(module.TOOLS_BY_NAME, "list_destinations", module.Tool(
        "list_destinations", "x", module.ListDestinationsIn, broken))
    out = await tools.call("list_destinations", {})
    assert out.outcome == "error" and "internal error" in out.message
    assert tools.calls == [{"tool": "list_destinations", "outcome": "error",
                            "message": out.message}]


def test_conversation_model_round_trips() -> None:
    conv = Conversation(session_id="s", user="u")
    assert Conversation.model_validate(conv.model_dump(mode="json")) == conv


async def test_a_plan_denied_at_execution_closes_its_tickets(
        make_env: Callable[..., AgentEnv], s3: Any, bucket: str) -> None:
    env = make_env(policies=_policies(bucket))
    seed(s3, env.bucket, FILES)
    tools = tools_for(env.settings, ALICE)
    key = f"s3://{bucket}/daily/2026-11-27/invoices-b.csv"
    planned = await tools.call("plan_transfer", {"sources": [key], "destination": "acme:"})
    plan_id = planned.data["plan"]["plan_id"]
    tools.conversation.begin_turn("yes")
    tickets = await tools.call("create_servicenow_tickets", {"plan_id": plan_id})
    seed(s3, env.bucket, {"daily/2026-11-27/invoices-b.csv": b"B" * 3000})  # over the limit
    out = await tools.call("execute_transfer", {"plan_id": plan_id})
    assert out.outcome == "denied" and "at most 2500 bytes, not 3000" in out.message
    async with open_store(env.settings.store.url) as store:
        record = await store.get_transfer(tickets.data["transfer_id"])
    assert record is not None and record.status == "CANCELLED"
    assert tree(env.remote) == {}


async def test_a_plan_that_needs_approval_is_parked_not_waited_for(
        make_env: Callable[..., AgentEnv], s3: Any, bucket: str) -> None:
    env = make_env(policies=[{"name": "with-approval", "users": ["*"],
                              "sources": ["s3://*"], "destinations": ["*"],
                              "requires_approval": {"group": "approvers", "timeout": 600}}])
    tools, plan_id = await _planned(env, s3)
    plan = tools.conversation.plans[plan_id]
    assert plan.approval_group == "approvers"
    assert plan.view(5)["approval_required_from"] == "approvers"
    tools.conversation.begin_turn("yes")
    started = await tools.call("execute_transfer", {"plan_id": plan_id})
    assert started.ok and started.data["status"] == "PENDING_APPROVAL", started
    tid = started.data["transfer_id"]
    stopped = await tools.call("cancel_transfer", {"transfer_id": tid})
    assert stopped.ok and "was waiting for approval" in stopped.message, stopped
    status = await tools.call("get_transfer_status", {"transfer_id": tid})
    assert status.data["transfer"]["status"] in ("CANCELLED", "REFUSED")
    assert tree(env.remote) == {}
