"""The agent's tools, defined once: name, description, input model (its JSON schema is
what the model sees) and typed handler. Bedrock and the offline planner call them
through :meth:`AgentTools.call`, which never raises:

* an unknown tool or an input that fails its model is an ``invalid`` outcome naming
  what was wrong;
* a policy denial is a ``denied`` outcome with the reason, a refusal (missing
  objects, unknown destination, a plan nobody confirmed) ``refused``, anything else
  ``error``: the model reports them, it cannot talk its way around them, since every
  check is made here, in code, as the signed-in principal.

Results carry object names, ticket numbers and error text in JSON fields: data to
show, never instructions. Nothing moves unless the user's own latest message
confirmed the exact plan (see ``conversation.py``), and ``execute_transfer`` plans
again and refuses when the sources, destination, count or total size changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from fileferry.agent.conversation import Conversation
from fileferry.agent.launch import Launcher, cancel_recorded, create_tickets
from fileferry.agent.planning import Plan, make_plan
from fileferry.config import Settings
from fileferry.endpoints.base import Source
from fileferry.errors import FileFerryError, NotAuthorized, RefusedError
from fileferry.identity.principal import Principal
from fileferry.identity.visibility import can_see, cancel_denial
from fileferry.services import request_cancel, stop_if_parked, transfer_public
from fileferry.store import FINAL_STATUSES, open_store

__all__ = ["TOOLS", "AgentTools", "Tool", "ToolOutcome", "tool_specs"]

log = logging.getLogger(__name__)
In = TypeVar("In", bound=BaseModel)
Outcome = Literal["ok", "denied", "refused", "invalid", "error"]


class ToolOutcome(BaseModel):
    """A tool's result. ``data`` holds what was found; its strings are data only."""

    outcome: Outcome
    message: str
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _ok(message: str, **data: Any) -> ToolOutcome:
    return ToolOutcome(outcome="ok", message=message, data=data)


def _refused(message: str, **data: Any) -> ToolOutcome:
    return ToolOutcome(outcome="refused", message=message, data=data)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListDestinationsIn(_In):
    pass


class PlanTransferIn(_In):
    sources: list[str] = Field(min_length=1, max_length=100, description=(
        "S3 sources exactly as the user gave them: s3://bucket/key (one object), "
        "s3://bucket/prefix/ (every object under it) or a pattern such as "
        "s3://bucket/2026-11-27/*.csv (* also matches /)"))
    destination: str = Field(min_length=2, max_length=1024, pattern=r"^[A-Za-z0-9][\w.-]*:",
                             description="NAME:PATH, NAME a configured destination (see "
                             "list_destinations); PATH relative to its root, empty for the root")


class PlanIdIn(_In):
    plan_id: str = Field(pattern=r"^pl-[0-9a-f]{12}$", description="the plan_id plan_transfer "
                         "returned")


class TransferIdIn(_In):
    transfer_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                             description="a transfer id such as tr-0123456789abcdef")


@dataclass(frozen=True)
class Tool(Generic[In]):
    name: str
    description: str
    model: type[In]
    handler: Callable[[AgentTools, In], Awaitable[ToolOutcome]]

    def spec(self) -> dict[str, Any]:
        """The Converse ``toolSpec`` (the input model's JSON schema, titles removed)."""
        return {"toolSpec": {"name": self.name, "description": self.description,
                             "inputSchema": {"json": _untitled(self.model.model_json_schema())}}}


def _untitled(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _untitled(v) for k, v in schema.items() if k != "title"}
    return [_untitled(v) for v in schema] if isinstance(schema, list) else schema


def _describe(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
                     for e in exc.errors())


class AgentTools:
    """The tools for one turn of one conversation, acting as ``principal``.

    ``source`` reads S3 (one shared client); ``launcher`` starts confirmed plans.
    """

    def __init__(self, settings: Settings, principal: Principal, conversation: Conversation,
                 launcher: Launcher, source: Source, clock: Callable[[], float] = time.time
                 ) -> None:
        self.settings, self.principal, self.conversation = settings, principal, conversation
        self.launcher, self.source, self.clock = launcher, source, clock
        self.calls: list[dict[str, Any]] = []
        """Every call this turn: tool, outcome, message (what the chat shows as actions)."""
        self.results: list[tuple[str, ToolOutcome]] = []

    async def call(self, name: str, raw: Any) -> ToolOutcome:
        """Run tool ``name`` on ``raw`` input; never raises (see the module docstring)."""
        outcome = await self._call(name, raw)
        self.calls.append({"tool": name, "outcome": outcome.outcome, "message": outcome.message})
        self.results.append((name, outcome))
        return outcome

    async def _call(self, name: str, raw: Any) -> ToolOutcome:
        tool = TOOLS_BY_NAME.get(name)
        if tool is None:
            return ToolOutcome(outcome="invalid", message=f"there is no tool named {name!r}; "
                               f"the tools are: {', '.join(TOOLS_BY_NAME)}")
        if not isinstance(raw, dict):
            return ToolOutcome(outcome="invalid", message=f"invalid input for {name}: "
                               f"a JSON object is expected, not {type(raw).__name__}")
        try:
            inp = tool.model.model_validate(raw)
        except pydantic.ValidationError as exc:
            return ToolOutcome(outcome="invalid",
                               message=f"invalid input for {name}: {_describe(exc)}")
        try:
            return await tool.handler(self, inp)
        except NotAuthorized as exc:
            return ToolOutcome(outcome="denied", message=str(exc))
        except RefusedError as exc:
            return ToolOutcome(outcome="refused", message=str(exc), data={"error": exc.name})
        except FileFerryError as exc:
            return ToolOutcome(outcome="error", message=str(exc), data={"error": exc.name})
        except Exception:  # a bug must not end the conversation; the log has the details
            log.exception("agent tool %s failed", name)
            return ToolOutcome(outcome="error", message=f"{name} failed with an internal "
                               "error; the server log has the details")

    # --- the handlers

    async def list_destinations(self, inp: ListDestinationsIn) -> ToolOutcome:
        found = [{"name": name, "protocol": d.parsed.scheme, "host": d.parsed.host,
                  "root": d.parsed.path} for name, d in sorted(self.settings.destinations.items())]
        return _ok(f"{len(found)} destination(s) configured", destinations=found)

    async def plan_transfer(self, inp: PlanTransferIn) -> ToolOutcome:
        plan = await self._plan(inp.sources, inp.destination)
        self.conversation.propose(plan)
        return _ok(f"plan {plan.plan_id}: {plan.count} file(s), {plan.view(0)['total_size']} "
                   f"to {plan.destination}. Nothing has moved. Show the user this plan and "
                   "ask them to confirm it; only their own confirmation lets it run.",
                   plan=plan.view(self.settings.agent.plan_files_shown))

    async def create_servicenow_tickets(self, inp: PlanIdIn) -> ToolOutcome:
        plan = self._confirmed(inp.plan_id)
        if isinstance(plan, ToolOutcome):
            return plan
        tickets = await create_tickets(self.settings, plan, self.principal)
        return _ok(f"tickets for {plan.transfer_id}: user {tickets.user}, audit "
                   f"{tickets.audit}", transfer_id=plan.transfer_id, tickets=tickets.model_dump())

    async def execute_transfer(self, inp: PlanIdIn) -> ToolOutcome:
        conv = self.conversation
        if inp.plan_id in conv.executed:
            tid = conv.executed[inp.plan_id]
            return _ok(f"plan {inp.plan_id} was started already as {tid}", transfer_id=tid)
        plan = self._confirmed(inp.plan_id)
        if isinstance(plan, ToolOutcome):
            return plan
        try:
            now = await self._plan(plan.requested, plan.destination, plan.transfer_id)
        except FileFerryError as exc:  # denied or refused now: tickets made for it close
            await cancel_recorded(self.settings, plan.transfer_id, f"not run: {exc}")
            raise
        if now.fingerprint != plan.fingerprint:
            return await self._changed(plan, now)
        started = await self.launcher.start(plan, self.principal)
        conv.executed[plan.plan_id] = plan.transfer_id
        conv.proposed = conv.confirmed = None
        return _ok(f"plan {plan.plan_id} started as transfer {plan.transfer_id}: "
                   f"{started.get('status')}", **started)

    async def get_transfer_status(self, inp: TransferIdIn) -> ToolOutcome:
        store = open_store(self.settings.store.url)
        try:
            view = await transfer_public(self.settings, store, inp.transfer_id, detail=False)
            # the API's rule (identity/visibility.py): own, an approval group's, operators all
            visible = view is not None and await can_see(
                self.settings.sso, store, self.principal, view.transfer_id, view.requester)
        finally:
            await store.close()
        if view is None or not visible:
            return _refused(f"no transfer {inp.transfer_id} that you may see")
        data = view.model_dump(include={"transfer_id", "status", "requester", "destination",
                                        "files_total", "files_done", "bytes_total",
                                        "bytes_done", "tickets", "error", "cancel_requested"})
        return _ok(f"{inp.transfer_id} is {view.status}", transfer=data)

    async def cancel_transfer(self, inp: TransferIdIn) -> ToolOutcome:
        status = await self.get_transfer_status(inp)
        if not status.ok:
            return status
        current = status.data["transfer"]["status"]
        denial = cancel_denial(self.settings.sso, self.principal, inp.transfer_id,
                               status.data["transfer"]["requester"])
        if denial is not None:  # an approver reads it; only its requester or an operator
            raise NotAuthorized(denial)
        if current in FINAL_STATUSES or not await request_cancel(self.settings, inp.transfer_id):
            return _refused(f"{inp.transfer_id} is {current.lower()}; only a pending or "
                            "running transfer can be cancelled")
        stopped = await stop_if_parked(self.settings, inp.transfer_id)  # nobody runs it
        if stopped is not None:
            return _ok(f"{inp.transfer_id} was waiting for approval and is now "
                       f"{stopped.status}", transfer_id=inp.transfer_id, status=stopped.status)
        return _ok(f"cancellation of {inp.transfer_id} requested: it stops cleanly "
                   "(temporary files removed, tickets updated)", transfer_id=inp.transfer_id)

    # --- checks

    async def _plan(self, sources: list[str], destination: str,
                    transfer_id: str | None = None) -> Plan:
        return await make_plan(self.settings, self.principal, sources, destination,
                               source=self.source, clock=self.clock, transfer_id=transfer_id)

    def _confirmed(self, plan_id: str) -> Plan | ToolOutcome:
        """The plan, when the user's current message confirmed it; else the refusal."""
        plan = self.conversation.plans.get(plan_id)
        if plan is None:
            return _refused(f"there is no plan {plan_id} in this conversation; make one "
                            "with plan_transfer")
        if self.conversation.confirmed != plan_id:
            return _refused(f"the user has not confirmed plan {plan_id} in their latest "
                            "message. Show them the plan and ask them to confirm it (reply "
                            "'yes', or press Confirm); it cannot run before they do")
        return plan

    async def _changed(self, plan: Plan, now: Plan) -> ToolOutcome:
        """The plan changed between confirmation and execution: nothing runs; the new
        plan (new ids) is proposed for the user to confirm."""
        await cancel_recorded(self.settings, plan.transfer_id,
                              "the plan changed before it ran")
        fresh = await self._plan(plan.requested, plan.destination)
        self.conversation.propose(fresh)
        return _refused(f"plan {plan.plan_id} changed since the user confirmed it ("
                        f"{'; '.join(plan.differences(now))}); nothing was sent. Show the new "
                        f"plan {fresh.plan_id} and ask the user to confirm it",
                        plan=fresh.view(self.settings.agent.plan_files_shown))


TOOLS: tuple[Tool[Any], ...] = (
    Tool("list_destinations", "List the configured destinations (partners) a transfer can "
         "go to: name, protocol, host and root folder.", ListDestinationsIn,
         AgentTools.list_destinations),
    Tool("plan_transfer", "Plan a transfer without moving anything: expands prefixes and "
         "patterns, sizes, count, target paths, which policy allows it, what would be "
         "created. Returns a plan_id for the user to confirm.", PlanTransferIn,
         AgentTools.plan_transfer),
    Tool("create_servicenow_tickets", "Create the user and audit tickets for a plan the user "
         "has confirmed (optional: execute_transfer creates them too).", PlanIdIn,
         AgentTools.create_servicenow_tickets),
    Tool("execute_transfer", "Start the transfer of a plan. Only for the plan the user "
         "confirmed in their latest message; refused otherwise, or when the plan changed.",
         PlanIdIn, AgentTools.execute_transfer),
    Tool("get_transfer_status", "The status, progress and tickets of a transfer.",
         TransferIdIn, AgentTools.get_transfer_status),
    Tool("cancel_transfer", "Cancel a pending or running transfer (it stops cleanly).",
         TransferIdIn, AgentTools.cancel_transfer),
)
TOOLS_BY_NAME: dict[str, Tool[Any]] = {t.name: t for t in TOOLS}


def tool_specs() -> list[dict[str, Any]]:
    """Every tool as a Converse ``toolSpec``."""
    return [t.spec() for t in TOOLS]
