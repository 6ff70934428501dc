"""``POST /api/chat``: the agent (Bedrock, or the offline planner) behind the dashboard's
chat panel, as the authenticated caller.

The conversation is keyed by the caller and ``session_id``. ``confirm`` is the
Confirm button: an explicit confirmation of that plan id (valid only for the plan
shown last). A confirmed plan is queued on this server's workers; the reply's
``transfer.events`` is the transfer's event stream for the live progress.
Denials and refusals come back inside the reply (200), bad input is a 422.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from fileferry.agent.chat import ChatAgent, ChatReply, make_agent
from fileferry.agent.launch import QueuedLauncher
from fileferry.api.auth import requester_for, require_principal
from fileferry.api.errors import ApiError
from fileferry.api.schemas import ErrorBody
from fileferry.api.state import ServerState, State
from fileferry.identity.principal import Principal

__all__ = ["ChatMessage", "agent_for", "principal_for", "router"]

router = APIRouter(prefix="/api/chat", tags=["chat"],
                   responses={code: {"model": ErrorBody} for code in (401, 422)},
                   dependencies=[Depends(require_principal)])
CallerDep = Annotated[Principal, Depends(require_principal)]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                            description="the conversation (the dashboard makes one per tab)")
    message: str = Field(default="", max_length=4000)
    confirm: str | None = Field(default=None, pattern=r"^pl-[0-9a-f]{12}$",
                                description="confirm this plan (the plan shown last)")


def principal_for(caller: Principal) -> Principal:
    """The identity principal tools act as: an SSO principal as it is; a token caller
    (a shared service credential) as the requester ``api``, with no groups."""
    if caller.source != "token":
        return caller
    return Principal(user=requester_for(caller, None), source="os")


def agent_for(request: Request, ff: ServerState) -> ChatAgent:
    """The server's one agent (created on first use), queueing transfers on its workers."""
    agent: ChatAgent | None = getattr(request.app.state, "agent", None)
    if agent is None:
        agent = make_agent(ff.settings, QueuedLauncher(ff.settings, ff.pool.submit),
                           store=ff.store)
        request.app.state.agent = agent
    return agent


@router.post("", response_model=ChatReply)
async def chat(body: ChatMessage, ff: State, caller: CallerDep, request: Request) -> ChatReply:
    """Answer one message; the reply holds a plan to confirm, or the transfer started."""
    if not body.message.strip() and body.confirm is None:
        raise ApiError(422, "UsageError", "message: write a request, or confirm a plan",
                       [{"field": "message", "message": "empty"}])
    text = body.message.strip() or f"confirm {body.confirm}"
    return await agent_for(request, ff).send(body.session_id, principal_for(caller), text,
                                             confirm=body.confirm)
