"""ServiceNow tickets for FileFerry: settings, a Table API client and the Ticketing port.

See ``shared/servicenow-table-api.md`` for the contract this follows.
"""

from fileferry.integrations.servicenow.client import CircuitBreaker, ServiceNowClient
from fileferry.integrations.servicenow.settings import ServiceNowSettings
from fileferry.integrations.servicenow.ticketing import (
    DEFAULT_POLICY,
    ServiceNowTicketing,
    correlation_id,
)

__all__ = ["DEFAULT_POLICY", "CircuitBreaker", "ServiceNowClient", "ServiceNowSettings",
           "ServiceNowTicketing", "correlation_id"]
