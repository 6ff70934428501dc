"""A ServiceNow Table API emulator on 127.0.0.1 for tests and demos.

Built from ``shared/servicenow-table-api.md``; it imports nothing from a FileFerry client.
"""

from fileferry.sandbox.servicenow.server import LoggedRequest, ServiceNowEmulator
from fileferry.sandbox.servicenow.store import ApiError

__all__ = ["ApiError", "LoggedRequest", "ServiceNowEmulator"]
