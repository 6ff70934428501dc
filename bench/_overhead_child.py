"""Case 7 in-process: one small object through the workflow and through the bare engine.

Run by ``bench/overhead.py`` as ``python bench/_overhead_child.py CONFIG SOURCE DEST_DIR
WARMUP RUNS``, with the measured fileferry package first on ``PYTHONPATH``.
In one process and one event loop, as a long-running service (the API, the
agent) would run them, it alternates, run after run:

* ``workflow``: ``fileferry.services.submit_transfer``, what ``fileferry
  transfer`` does: the ASL workflow on the embedded runner, the SQLite
  store, ServiceNow tickets and a webhook notification (the emulators run in
  their own process);
* ``engine``: ``fileferry.transfer.engine.run_transfer``, the copy alone
  (plan, refuse existing, stream, verify, rename), no store, no tickets.

Each transfer gets a directory of its own. The wall time of each call
(``time.perf_counter``) is printed as one JSON line per run; the first
``WARMUP`` runs of each are marked (imports, connections, the first
statement compiled by SQLite) and not counted by the harness.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fileferry.config import load_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.models import TransferResult
from fileferry.services import submit_transfer
from fileferry.transfer.engine import TransferRequest, run_transfer


def _check(result: TransferResult, mode: str) -> dict[str, Any]:
    if result.status != "SUCCEEDED" or not result.files \
            or any(f.status != "DELIVERED" for f in result.files):
        raise SystemExit(f"{mode}: transfer {result.status}: {result.error}")
    tickets = result.tickets or {}
    if mode == "workflow" and not (tickets.get("user") and tickets.get("audit")):
        raise SystemExit(f"workflow: no ServiceNow tickets in the result ({tickets})")
    return {"verified_by": result.files[0].verified_by, "md5": result.files[0].md5}


async def _measure(config: str, source: str, dest_dir: str, warmup: int, runs: int) -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=48))
    settings = load_settings(Path(config))
    try:
        for i in range(warmup + runs):
            # Alternate which goes first, so neither always follows the other's clean-up.
            for mode in (("workflow", "engine") if i % 2 == 0 else ("engine", "workflow")):
                request = TransferRequest(sources=[source],
                                          destination=f"bench:{dest_dir}/{mode}-{i:03d}/",
                                          requester="bench")
                start = time.perf_counter()
                if mode == "workflow":
                    result = await submit_transfer(settings, request)
                else:
                    result = await run_transfer(settings, request)
                wall = time.perf_counter() - start
                line = {"mode": mode, "i": i, "warmup": i < warmup, "wall_s": wall,
                        **_check(result, mode)}
                print(json.dumps(line), flush=True)
    finally:
        await close_idle_destinations()


def main() -> int:
    config, source, dest_dir, warmup, runs = sys.argv[1:6]
    asyncio.run(_measure(config, source, dest_dir, int(warmup), int(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
