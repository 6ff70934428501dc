"""The REST API and the live dashboard of ``fileferry serve`` (FastAPI)."""

from __future__ import annotations

__all__: list[str] = []
