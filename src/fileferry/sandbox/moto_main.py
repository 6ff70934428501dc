"""``python -m fileferry.sandbox.moto_main``: moto's server, with atomic DynamoDB requests.

moto's threaded server evaluates a DynamoDB ``ConditionExpression`` and then
writes, with nothing in between to stop a second request doing the same: two
conditional puts racing from two processes can both succeed, which DynamoDB
never allows. One lock around each DynamoDB request restores DynamoDB's
guarantee that a conditional write is atomic; every other service (S3
included) stays concurrent. The arguments are moto.server's.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

__all__ = ["main"]

_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self: DynamoHandler) -> Any:
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
