"""The ``agent:`` configuration section (kept apart so ``config.py`` imports it cheaply)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AgentSettings"]


class AgentSettings(BaseModel):
    """Without ``model_id`` the agent is the offline planner (no cloud access needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str | None = None
    """A Bedrock model (or inference profile) id that supports tool use, e.g.
    ``anthropic.claude-3-5-sonnet-20240620-v1:0``."""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    """Another ``bedrock-runtime`` endpoint (a VPC endpoint, a proxy)."""
    max_turns: int = Field(default=8, ge=1, le=50)
    """Model calls per user message before the agent stops and says so."""
    max_tokens: int = Field(default=1024, ge=64, le=8192)
    """Largest reply the model may write per call."""
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    history_messages: int = Field(default=40, ge=4, le=400)
    """Messages of a conversation sent back to the model; older turns are dropped."""
    persist_conversations: bool = False
    """Keep conversations in the state store (never credentials) instead of memory only,
    so a restarted server continues them."""
    conversation_ttl: int = Field(default=24 * 3600, ge=60)
    """Seconds after its last message that a conversation is forgotten."""
    plan_files_shown: int = Field(default=20, ge=1, le=500)
    """Files listed in a plan (the count and total size always cover all of them)."""

    @field_validator("model_id", "endpoint_url")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave the key out instead")
        return value

    @property
    def bedrock(self) -> bool:
        """Whether a model is configured (else the offline planner answers)."""
        return self.model_id is not None
