"""What every agent does per message, and what it answers (``ChatReply``).

``ChatAgent.send`` loads the user's conversation (serialised per session: two
messages of one session never interleave), lets the user's own words confirm the
plan shown last, has the agent respond through the tools, and saves the
conversation. The reply carries the plan awaiting confirmation as structured
data, rendered by FileFerry (``render_plan``), never by the model: the user
confirms what the tools found, not a paraphrase.

``make_agent`` picks ``BedrockFileFerryAgent`` when ``agent.model_id`` is set,
else the ``OfflinePlanner``.
"""

from __future__ import annotations

import abc
import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from fileferry.agent.conversation import (
    Conversation,
    ConversationStore,
    MemoryConversations,
    StoreConversations,
)
from fileferry.agent.launch import Launcher
from fileferry.agent.tools import AgentTools
from fileferry.config import Settings
from fileferry.endpoints.base import Source
from fileferry.endpoints.s3 import S3Source
from fileferry.identity.principal import Principal
from fileferry.store import Store

__all__ = ["ChatAgent", "ChatReply", "conversations_for", "make_agent", "render_plan"]

MAX_MESSAGE = 4000


class ChatReply(BaseModel):
    session_id: str
    agent: Literal["bedrock", "offline"]
    text: str
    plan: dict[str, Any] | None = None
    """A plan proposed this turn, awaiting the user's confirmation (``plan_id``...)."""
    transfer: dict[str, Any] | None = None
    """The transfer started or looked up this turn (``transfer_id``, ``status``...)."""
    actions: list[dict[str, Any]] = Field(default_factory=list)
    """Each tool called this turn: ``tool``, ``outcome``, ``message``."""


def render_plan(plan: dict[str, Any]) -> list[str]:
    """A plan as plain lines (the CLI prints them without markup: names are data)."""
    lines = [f"Plan {plan['plan_id']}: {plan['count']} file(s), {plan['total_size']} "
             f"({plan['total_bytes']} bytes) to {plan['destination']}",
             f"  sources: {', '.join(plan['sources'])}"]
    lines += [f"  {f['source']} -> {f['target']} ({f['size']} bytes)" for f in plan["files"]]
    if plan["files_not_shown"]:
        lines.append(f"  … and {plan['files_not_shown']} more file(s)")
    lines.append(f"  check: {plan['verification'] or 'n/a'}; policy: {plan['policy']}")
    if plan.get("policy_warning"):
        lines.append(f"  warning: {plan['policy_warning']}")
    if plan.get("approval_required_from"):
        lines.append(f"  needs approval from: {plan['approval_required_from']}")
    lines.append(f"  creates: {plan['would_create']['files']}; "
                 f"{plan['would_create']['tickets']}")
    return lines


class ChatAgent(abc.ABC):
    """The turn machinery; subclasses write ``respond``."""

    kind: Literal["bedrock", "offline"]

    def __init__(self, settings: Settings, launcher: Launcher,
                 conversations: ConversationStore | None = None, source: Source | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.launcher, self.clock = settings, launcher, clock
        self.conversations = conversations or MemoryConversations(
            settings.agent.conversation_ttl, clock=clock)
        self._source = source
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = \
            weakref.WeakValueDictionary()

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = S3Source(self.settings.s3, self.settings.transfer.default_chunk_size)
        return self._source

    async def send(self, session_id: str, principal: Principal, text: str, *,
                   confirm: str | None = None) -> ChatReply:
        """Answer one user message; ``confirm`` is an explicit confirmation of a plan id
        (the dashboard's button). Text longer than ``MAX_MESSAGE`` is cut there."""
        text = text.strip()[:MAX_MESSAGE]
        key = (principal.user, session_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            conv = await self.conversations.load(session_id, principal.user)
            before = conv.proposed
            conv.begin_turn(text, confirm)
            tools = AgentTools(self.settings, principal, conv, self.launcher, self.source,
                               self.clock)
            answer = await self.respond(conv, tools, text)
            conv.messages = conv.recent(self.settings.agent.history_messages)
            reply = self._reply(conv, tools, answer, before)
            conv.confirmed = None
            await self.conversations.save(conv)
            return reply

    @abc.abstractmethod
    async def respond(self, conv: Conversation, tools: AgentTools, text: str) -> str:
        """The answer's text, after calling whatever tools it needs."""

    def _reply(self, conv: Conversation, tools: AgentTools, text: str,
               proposed_before: str | None) -> ChatReply:
        plan = None
        if conv.proposed is not None and conv.proposed != proposed_before:
            plan = conv.plans[conv.proposed].view(self.settings.agent.plan_files_shown)
        transfer = None
        for name, outcome in tools.results:
            if outcome.ok and name == "execute_transfer":
                transfer = outcome.data
            elif outcome.ok and name in ("get_transfer_status", "cancel_transfer") \
                    and transfer is None:
                transfer = outcome.data.get("transfer") or outcome.data
        return ChatReply(session_id=conv.session_id, agent=self.kind, text=text, plan=plan,
                         transfer=transfer, actions=tools.calls)


def conversations_for(settings: Settings, store: Store | None) -> ConversationStore:
    """The store's table when ``agent.persist_conversations`` (and a store is given),
    else memory."""
    if settings.agent.persist_conversations and store is not None:
        return StoreConversations(store, settings.agent.conversation_ttl)
    return MemoryConversations(settings.agent.conversation_ttl)


def make_agent(settings: Settings, launcher: Launcher, *, store: Store | None = None,
               client: Any = None) -> ChatAgent:
    """Bedrock when ``agent.model_id`` is configured, else the offline planner.
    ``client`` is a ready ``bedrock-runtime`` client (tests pass a stubbed one)."""
    conversations = conversations_for(settings, store)
    if settings.agent.bedrock:
        from fileferry.agent.bedrock import BedrockFileFerryAgent

        return BedrockFileFerryAgent(settings, launcher, conversations, client=client)
    from fileferry.agent.offline import OfflinePlanner

    return OfflinePlanner(settings, launcher, conversations)
