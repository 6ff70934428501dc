"""Stopping a Lambda call whose execution was cancelled.

``StopExecution`` ends an execution ABORTED at once, but Step Functions does not
stop a Lambda invocation in flight: a TransferFTP or ChunkedTransfer call would
go on copying and could rename files into place after AbortCleanup ran. So
``fileferry cancel`` on AWS (``aws.stepfunctions.cancel_on_aws``) first sets the
transfer's ``cancel_requested`` flag in the store, the one the embedded runner's
cancel uses, and only then stops the execution. The long functions run their
step next to ``watch``, which reads that flag every ``FILEFERRY_CANCEL_POLL``
seconds (default 2). When it is set the step's task is cancelled: ``copy_file``
removes the file's temporary name on cancellation, nothing is renamed into
place afterwards, and the call raises ``Cancelled`` (the execution is already
ABORTED, so Step Functions ignores the result; the error names what happened
in the function's log and ``Failures`` metric).

Edge cases:

* A flag already set when the call starts (Step Functions invoked the task just
  before the stop): the step does not start at all.
* A file whose rename completed before the watcher's next read stays delivered
  and is recorded DELIVERED, so the store says exactly what reached the partner.
* A store read that fails is logged and retried at the next poll; the step is
  never cancelled because the flag could not be read.
* The step ending first (done, failed, or out of time) stops the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from typing import TypeVar

from fileferry.errors import Cancelled
from fileferry.store import Store

__all__ = ["DEFAULT_POLL", "cancel_requested", "poll_interval", "run_cancellable", "watch"]

log = logging.getLogger(__name__)

DEFAULT_POLL = 2.0
T = TypeVar("T")


def poll_interval() -> float:
    """``FILEFERRY_CANCEL_POLL`` seconds (default 2); a value that is not a positive
    number falls back to the default rather than failing the step."""
    try:
        value = float(os.environ.get("FILEFERRY_CANCEL_POLL", DEFAULT_POLL))
    except ValueError:
        return DEFAULT_POLL
    return value if value > 0 else DEFAULT_POLL


async def cancel_requested(store: Store, transfer_id: str) -> bool:
    """Whether ``fileferry cancel`` asked to stop the transfer (False when unknown)."""
    record = await store.get_transfer(transfer_id)
    return record is not None and bool(record.options.get("cancel_requested"))


async def watch(store: Store, transfer_id: str, interval: float) -> None:
    """Return once the transfer's cancel flag is set; poll every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await cancel_requested(store, transfer_id):
                return
        except Exception as exc:  # a store hiccup must not stop (or kill) the copy
            log.warning("could not read the cancel flag of %s: %s", transfer_id, exc)


async def run_cancellable(work: Awaitable[T], store: Store, transfer_id: str,
                          interval: float | None = None) -> T:
    """Await ``work`` unless the transfer's cancel flag is set first; then cancel it,
    wait for its cleanup (temporary files removed) and raise ``Cancelled``."""
    if await cancel_requested(store, transfer_id):
        if asyncio.iscoroutine(work):
            work.close()  # never started: nothing to clean up
        raise Cancelled(f"{transfer_id} was cancelled before this step started")
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(watch(store, transfer_id, interval or poll_interval()))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the call itself is being cancelled: take the step along
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task  # let copy_file remove its temporary file before the call returns
    log.warning("%s was cancelled: the step stopped and its temporary files were removed",
                transfer_id)
    raise Cancelled(f"{transfer_id} was cancelled (fileferry cancel) while this step ran; "
                    "nothing was renamed into place after the cancel")
