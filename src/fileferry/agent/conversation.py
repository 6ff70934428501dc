"""One chat session: its messages, the plans proposed in it, and the user's confirmations.

Confirmation is decided here, by code, from the user's own message: never by the
model, and never from a tool result (object names, file contents and ticket text
cannot confirm anything). It counts only for the plan shown last, and only during
the turn of the message that gave it: "yes" then "wait, no" leaves nothing confirmed.

Conversations are keyed by (user, session id), so one user's session id never
opens another user's conversation. ``MemoryConversations`` keeps them in the
process; ``StoreConversations`` in the state store (``agent.persist_conversations``),
with credential-named keys scrubbed, as the store refuses secrets.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from fileferry.agent.planning import Plan
from fileferry.store import Store
from fileferry.store.base import TTL_ATTRIBUTE, refuse_secrets

__all__ = ["PLAN_ID", "Conversation", "ConversationStore", "MemoryConversations",
           "StoreConversations", "confirmation"]

PLAN_ID = re.compile(r"pl-[0-9a-f]{12}")
_YES = {"yes", "y", "yep", "yeah", "confirm", "confirmed", "ok", "okay", "go", "proceed",
        "approve", "approved", "sure"}
_FILLER = {"please", "ahead", "do", "it", "send", "the", "plan", "i", "this", "that", "now",
           "run", "start", "transfer"}
MAX_CONFIRM_WORDS = 8


def confirmation(text: str) -> tuple[bool, str | None]:
    """(whether ``text`` is a plain confirmation, the plan id it names if any).

    Only short messages of yes-words and filler count ("yes", "confirm pl-…", "ok, go
    ahead"); any other word ("no", "but", a destination) makes it no confirmation.
    """
    words = re.findall(r"[a-z0-9-]+", text.lower())
    if not words or len(words) > MAX_CONFIRM_WORDS:
        return False, None
    yes, named = False, None
    for word in words:
        if PLAN_ID.fullmatch(word):
            if named not in (None, word):
                return False, None
            named = word
        elif word in _YES:
            yes = True
        elif word not in _FILLER:
            return False, None
    return yes, named


class Conversation(BaseModel):
    session_id: str
    user: str
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """Bedrock Converse messages (the offline planner keeps none)."""
    plans: dict[str, Plan] = Field(default_factory=dict)
    proposed: str | None = None
    """The plan shown last, the only one a confirmation can apply to."""
    confirmed: str | None = None
    """The plan the user's current message confirmed (reset every turn)."""
    executed: dict[str, str] = Field(default_factory=dict)
    """plan id -> transfer id, so a plan never runs twice."""
    updated_at: float = Field(default_factory=time.time)

    def begin_turn(self, text: str, confirm: str | None = None) -> str | None:
        """Start the user's turn; returns the plan it confirms. ``confirm`` is an explicit
        confirmation (the dashboard's button) of that plan id."""
        self.confirmed = None
        yes, named = (True, confirm) if confirm is not None else confirmation(text)
        if yes and self.proposed is not None and named in (None, self.proposed) \
                and self.proposed not in self.executed:
            self.confirmed = self.proposed
        return self.confirmed

    def propose(self, plan: Plan) -> None:
        self.plans[plan.plan_id] = plan
        self.proposed = plan.plan_id

    def add_user_text(self, text: str) -> None:
        """A user message; merged into the last one when that is a user message too (a
        turn that stopped after tool results), as Converse wants roles to alternate."""
        if self.messages and self.messages[-1]["role"] == "user":
            self.messages[-1]["content"].append({"text": text})
        else:
            self.messages.append({"role": "user", "content": [{"text": text}]})

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The last messages, at most ``limit``, starting with a user message that holds
        text (never an orphan tool result, whose tool use would be cut off)."""
        start = max(0, len(self.messages) - limit)
        while start < len(self.messages) and not _starts_turn(self.messages[start]):
            start += 1
        if start == len(self.messages) and self.messages:
            start = max(i for i, m in enumerate(self.messages) if _starts_turn(m))
        return self.messages[start:]


def _starts_turn(message: dict[str, Any]) -> bool:
    return message["role"] == "user" and any("text" in c for c in message["content"])


class ConversationStore(Protocol):
    async def load(self, session_id: str, user: str) -> Conversation:
        """The conversation, or a new one when there is none (or it expired)."""

    async def save(self, conversation: Conversation) -> None: ...


class MemoryConversations:
    """In this process: the most recent ``limit`` conversations, each for ``ttl`` seconds."""

    def __init__(self, ttl: float = 24 * 3600, limit: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self._items: collections.OrderedDict[tuple[str, str], Conversation] = \
            collections.OrderedDict()
        self._ttl, self._limit, self._clock = ttl, limit, clock

    async def load(self, session_id: str, user: str) -> Conversation:
        found = self._items.get((user, session_id))
        if found is None or found.updated_at + self._ttl < self._clock():
            return Conversation(session_id=session_id, user=user, updated_at=self._clock())
        return found.model_copy(deep=True)

    async def save(self, conversation: Conversation) -> None:
        conversation.updated_at = self._clock()
        key = (conversation.user, conversation.session_id)
        self._items[key] = conversation.model_copy(deep=True)
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)


def _scrub(value: Any) -> Any:
    """Drop every key the store would refuse as a credential (a model may invent any)."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            try:
                refuse_secrets({key: None})
            except ValueError:
                continue
            out[key] = _scrub(inner)
        return out
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


class StoreConversations:
    """In the state store's ``conversations`` table (pk user, sk session id); an item
    carries ``expires_at`` so a backend with expiry (DynamoDB TTL) may reap it."""

    TABLE = "conversations"

    def __init__(self, store: Store, ttl: float = 24 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self._store, self._ttl, self._clock = store, ttl, clock
        self._lock = asyncio.Lock()

    async def load(self, session_id: str, user: str) -> Conversation:
        item = await self._store.backend.get(self.TABLE, user, session_id)
        if item is None or float(item.get(TTL_ATTRIBUTE, 0)) < self._clock():
            return Conversation(session_id=session_id, user=user, updated_at=self._clock())
        return Conversation.model_validate(item["conversation"])

    async def save(self, conversation: Conversation) -> None:
        conversation.updated_at = now = self._clock()
        data = _scrub(conversation.model_dump(mode="json", exclude={"confirmed"}))
        refuse_secrets(data)
        async with self._lock:
            current = await self._store.backend.get(self.TABLE, conversation.user,
                                                    conversation.session_id)
            version = int(current["version"]) + 1 if current else 1
            await self._store.backend.put(self.TABLE, conversation.user,
                                          conversation.session_id,
                                          {"conversation": data, "version": version,
                                           TTL_ATTRIBUTE: int(now + self._ttl)})
