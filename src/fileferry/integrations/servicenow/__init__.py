"""ServiceNow tickets for FileFerry: settings, a Table API client and the Ticketing port.

See ``shared/servicenow-table-api.md`` for the contract this follows. The
client and the port are imported on first use, so that loading the settings
(every command does) does not load an HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import Any

from fileferry.integrations.servicenow.settings import ServiceNowSettings

__all__ = ["DEFAULT_POLICY", "CircuitBreaker", "ServiceNowClient", "ServiceNowSettings",
           "ServiceNowTicketing", "correlation_id"]

_LAZY = {"CircuitBreaker": "client", "ServiceNowClient": "client",
         "DEFAULT_POLICY": "ticketing", "ServiceNowTicketing": "ticketing",
         "correlation_id": "ticketing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"fileferry.integrations.servicenow.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(name)
