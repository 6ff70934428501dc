"""One router per resource: ``transfers``; ``system`` holds health, metrics, the
OpenAPI document, the destinations the form offers and the dashboard page."""

from __future__ import annotations

__all__: list[str] = []
