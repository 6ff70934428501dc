"""Create the state store's schema (``fileferry store init``)."""

from __future__ import annotations

from fileferry.config import Settings
from fileferry.store.base import SchemaEntry

__all__ = ["init_state_store"]


async def init_state_store(settings: Settings) -> list[SchemaEntry]:
    """Create the store's SQLite schema or DynamoDB tables (``fileferry store init``);
    running it again only reports what exists."""
    from fileferry.store import init_store

    return await init_store(settings.store.url)
