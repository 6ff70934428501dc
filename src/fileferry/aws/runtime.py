"""What every FileFerry Lambda handler shares: Powertools around one registered step.

``lambda_handler(spec)`` returns ``handler(event, context)``. Per invocation:

* the event is validated into the step's input model first: a malformed event
  raises ``UsageError`` naming the function and the fields (never a 500-like
  crash, and before idempotency, so nothing is recorded for it);
* Logger (JSON, with ``transfer_id``, ``execution_id`` and ``step``; it is the
  ``fileferry`` logger, so the engine's module loggers come out through it; set up
  by the first invocation, not by importing this module),
  Metrics as EMF (``StepDuration``, ``BytesTransferred``, ``FilesTransferred``;
  ``Failures`` by ``Error`` name),
  Tracer (X-Ray; off with ``POWERTOOLS_TRACE_DISABLED``);
* Idempotency on DynamoDB (``FILEFERRY_IDEMPOTENCY_TABLE``; unset: off), keyed by
  the function and ``spec.key`` (a JMESPath over the event: transfer, step input,
  chunk offset; empty: none). A completed call is replayed, a failed one is
  forgotten so the state machine's ``Retry`` runs it again. A call whose key is
  still being processed (a retry racing a slow first attempt) raises Powertools'
  ``IdempotencyAlreadyInProgressError``, which every Task's ``Retry`` in the ASL
  retries with backoff until the first attempt ends (at most the function's
  timeout: the record's in-progress expiry is the invocation's deadline);
* the step (``workflow.registry.STEPS``, or ``aws.events.EVENT_STEPS`` for the
  functions that answer events) runs on a fresh event loop with the ports of
  ``services.make_deps``;
  connections, the store and integration clients are closed before returning;
* a ``cancellable`` step (TransferFTP, ChunkedTransfer) runs next to a watcher of the
  transfer's ``cancel_requested`` flag and ends with ``Cancelled`` once it is set
  (``aws.cancel``: Step Functions does not stop a running invocation itself).

A step's ``FileFerryError`` propagates unchanged: the Lambda runtime reports an
unhandled exception's class name as ``errorType``, which is the name the ASL's
``ErrorEquals`` matches (``lambda_error`` shows what the runtime sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, NamedTuple, cast

import pydantic
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.logging.filters import SuppressFilter
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

from fileferry.aws.cancel import run_cancellable
from fileferry.aws.events import EVENT_STEPS
from fileferry.aws.settings import load_lambda_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.errors import UsageError
from fileferry.store import open_store
from fileferry.workflow.registry import STEPS, invoke_step

# ``logger``, ``metrics`` and ``tracer`` are still attributes (``__getattr__``), not in
# ``__all__``: a star import would set Powertools up.
__all__ = ["NAMESPACE", "SERVICE", "Handler", "HandlerSpec", "Powertools", "lambda_error",
           "lambda_handler", "powertools", "release_powertools"]

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "fileferry")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FileFerry")
DEFAULT_MARGIN_MS = 60_000
"""Time left for committing the last chunk, closing and returning (ChunkedTransfer)."""
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600



class _Stdout(io.TextIOBase):
    """Whatever ``sys.stdout`` is at the time of writing (Lambda's, or a test's capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class Powertools(NamedTuple):
    logger: Logger
    metrics: Metrics
    tracer: Tracer


@functools.cache
def powertools() -> Powertools:
    """Logger, Metrics and Tracer, made on the first invocation, never at import.

    The service's logger is "fileferry", the parent of every module's logger, so the
    engine's own warnings come out as JSON with the transfer and execution ids too.
    Making it turns that logger into Powertools' JSON logger for the whole process
    (and filters it out of the root logger's handlers), and the Tracer may patch
    boto3 for X-Ray: right for a Lambda, wrong for a process that merely imports this.
    """
    return Powertools(Logger(service=SERVICE, stream=cast(IO[str], _Stdout())),
                      Metrics(namespace=NAMESPACE, service=SERVICE),
                      Tracer(service=SERVICE))


def release_powertools() -> None:
    """Give the ``fileferry`` logger and the root handlers back as they were before the
    first invocation (for a process that runs handlers in-process and goes on: tests).

    The next invocation sets Powertools up again; a no-op if nothing was set up.
    """
    if powertools.cache_info().currsize == 0:
        return
    tools = powertools()
    powertools.cache_clear()
    log = logging.getLogger(tools.logger.service)
    log.removeHandler(tools.logger.logger_handler)
    for attribute in ("init", "powertools_handler", "powertools_buffer_config",
                      "powertools_buffer_cache"):
        with contextlib.suppress(AttributeError):
            delattr(log, attribute)
    log.setLevel(logging.NOTSET)
    for handler in logging.getLogger().handlers:
        for kept in list(handler.filters):
            if isinstance(kept, SuppressFilter) and kept.logger == tools.logger.service:
                handler.removeFilter(kept)


def __getattr__(name: str) -> Any:
    """``logger``, ``metrics`` and ``tracer`` as module attributes, made when first asked."""
    if name in Powertools._fields:
        return getattr(powertools(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class HandlerSpec:
    """One Lambda function: the step it runs and what it may touch."""

    step: str
    """The ``STEPS`` key, i.e. the ASL placeholder (``ValidateInputFunction``), or the
    ``EVENT_STEPS`` key (``AbortCleanupFunction``)."""
    function: str
    """The seed's function name without ``FileFerry-`` (``ValidateInput``)."""
    sections: tuple[str, ...]
    """The secret configuration sections it needs (see ``aws.settings``)."""
    key: str
    """Idempotency key: a JMESPath over the event; empty for none (the step is
    idempotent by itself and must run on every call, e.g. a scheduled drain)."""
    budget: bool = False
    """Give the step a time budget (ChunkedTransfer)."""
    cancellable: bool = False
    """Run the step next to the cancel watcher (``aws.cancel``): a ``fileferry cancel``
    stops it within ``FILEFERRY_CANCEL_POLL`` seconds (TransferFTP, ChunkedTransfer)."""


def lambda_error(exc: BaseException) -> dict[str, str]:
    """What the Python Lambda runtime reports for an unhandled exception (and Step
    Functions matches in ``ErrorEquals``): the class name as ``errorType``."""
    return {"errorType": type(exc).__name__, "errorMessage": str(exc)}


def _out_of_time(context: Any) -> Callable[[], bool]:
    margin = int(os.environ.get("FILEFERRY_TIME_MARGIN_MS", DEFAULT_MARGIN_MS))
    return lambda: int(context.get_remaining_time_in_millis()) < margin


def _validate(spec: HandlerSpec, event: Any) -> None:
    model = (STEPS.get(spec.step) or EVENT_STEPS[spec.step])[0]
    try:
        model.model_validate(event)
    except pydantic.ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}"
                           for e in exc.errors())
        raise UsageError(f"FileFerry-{spec.function}: the event is not a valid "
                         f"{model.__name__} ({fields}); invoke it from the state machine or "
                         f"send an event like tests/events/") from None


async def _run(spec: HandlerSpec, event: dict[str, Any], context: Any) -> Any:
    from fileferry.services import make_deps  # services imports the CLI's integrations

    settings = load_lambda_settings(spec.sections)
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    if spec.budget:
        deps.out_of_time = _out_of_time(context)
    try:
        work = invoke_step(spec.step, event, deps, None if spec.step in STEPS else EVENT_STEPS)
        if spec.cancellable:
            return await run_cancellable(work, store, str(event["transfer_id"]))
        return await work
    finally:
        closer = getattr(deps.ticketing, "close", None)
        if closer is not None:
            await closer()
        await close_idle_destinations()
        await store.close()


def _record(metrics: Metrics, spec: HandlerSpec, event: dict[str, Any], result: Any,
            seconds: float) -> None:
    metrics.add_dimension(name="Step", value=spec.function)
    metrics.add_metric(name="StepDuration", unit=MetricUnit.Milliseconds,
                       value=round(seconds * 1000, 1))
    if spec.step not in ("TransferFunction", "ChunkedTransferFunction") \
            or not isinstance(result, dict):
        return
    moved = int(result.get("bytes", 0))
    if spec.budget:  # this invocation's share of the file
        before = ((event.get("chunk") or {}).get("checkpoint") or {}).get("offset", 0)
        after = (result.get("checkpoint") or {}).get("offset", moved)
        moved = max(0, int(after) - int(before))
    metrics.add_metric(name="BytesTransferred", unit=MetricUnit.Bytes, value=moved)
    if result.get("done", True):
        metrics.add_metric(name="FilesTransferred", unit=MetricUnit.Count,
                           value=int(result.get("files", 0)))


def _failure(spec: HandlerSpec, exc: BaseException) -> None:
    with single_metric(name="Failures", unit=MetricUnit.Count, value=1, namespace=NAMESPACE,
                       default_dimensions={"Step": spec.function,
                                           "Error": type(exc).__name__}):
        pass


def _idempotent_step(spec: HandlerSpec) -> Handler:
    """The step on a fresh event loop, made idempotent when a table is configured."""

    def step(event: dict[str, Any], context: Any) -> Any:
        return asyncio.run(_run(spec, event, context))

    step.__name__ = step.__qualname__ = spec.function
    table = os.environ.get("FILEFERRY_IDEMPOTENCY_TABLE")
    if not table or not spec.key:  # an empty key: every call must run (DeliverPending)
        return step
    ttl = int(os.environ.get("FILEFERRY_IDEMPOTENCY_TTL", DEFAULT_IDEMPOTENCY_TTL))
    prefix = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or f"FileFerry-{spec.function}"
    wrapped: Handler = idempotent(
        persistence_store=DynamoDBPersistenceLayer(table_name=table),
        config=IdempotencyConfig(event_key_jmespath=spec.key, expires_after_seconds=ttl),
        key_prefix=prefix)(step)
    return wrapped


def _build(spec: HandlerSpec, tools: Powertools) -> Handler:
    logger, metrics, tracer = tools
    idempotent_step = _idempotent_step(spec)

    def keyed(event: dict[str, Any], context: Any) -> Any:
        logger.append_keys(transfer_id=event.get("transfer_id"),
                           execution_id=event.get("execution_id"), step=spec.function)
        started, result = time.monotonic(), None
        try:
            _validate(spec, event)
            result = idempotent_step(event, context)
        except Exception as exc:
            _failure(spec, exc)
            logger.warning("step failed", extra={"error": type(exc).__name__})
            raise
        finally:
            _record(metrics, spec, event, result, time.monotonic() - started)
        return result

    handler: Handler = logger.inject_lambda_context(clear_state=True)(keyed)
    handler = metrics.log_metrics(capture_cold_start_metric=True)(handler)
    traced: Handler = tracer.capture_lambda_handler(capture_response=False)(handler)
    return traced


def lambda_handler(spec: HandlerSpec) -> Handler:
    """The handler for ``spec``; Powertools is wired on the first call (cold start), when the
    function's environment (table names, service name) is known, and again after
    ``release_powertools``."""
    built: list[tuple[Powertools, Handler]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        if not isinstance(event, dict):
            raise UsageError(f"FileFerry-{spec.function}: the event must be a JSON object, "
                             f"not {type(event).__name__}")
        tools = powertools()
        if not built or built[0][0] is not tools:
            built[:] = [(tools, _build(spec, tools))]
        return built[0][1](event, context)

    handler.__name__ = handler.__qualname__ = spec.function
    handler.__doc__ = f"FileFerry-{spec.function}: the {spec.step} step on Lambda."
    return handler
