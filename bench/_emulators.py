"""Case 7's local emulators in their own process: ServiceNow's Table API and a webhook receiver.

Run by ``bench/overhead.py`` (``python bench/_emulators.py``, the measured
fileferry package first on ``PYTHONPATH``). Prints one JSON line with the
URLs and the ServiceNow password, serves until stdin closes, then prints one
more JSON line: how many incidents and webhook posts arrived. In their own
process, their work is not counted as FileFerry's CPU, and they do not
compete for FileFerry's interpreter lock, as a real ServiceNow would not.
"""

from __future__ import annotations

import json
import secrets
import sys

from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.sandbox.webhooks import WebhookReceiver


def main() -> int:
    password = secrets.token_urlsafe(16)
    with ServiceNowEmulator(username="fileferry", password=password) as snow, \
            WebhookReceiver() as hooks:
        snow.add_group("DataOps")
        print(json.dumps({"servicenow": snow.url, "password": password,
                          "webhook": hooks.url("/bench")}), flush=True)
        sys.stdin.read()
        incidents = len(snow.records("incident"))
        print(json.dumps({"incidents": incidents, "webhooks": len(hooks.received)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
