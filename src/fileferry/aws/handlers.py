"""The Lambda handlers: one per Task state, each the registered step inside Powertools.

The SAM template points each function here (``fileferry.aws.handlers.NAME``).
The seed's names are kept where the step exists; CreateTickets, VerifyDelivery
and HandleError are the design's additions. ``FileFerry-DownloadS3`` is gone:
bytes stream from S3 to the partner inside the transfer functions, with no
copy in ``/tmp``.

| function                     | ASL placeholder            | secret sections   |
|------------------------------|----------------------------|-------------------|
| FileFerry-ValidateInput      | ValidateInputFunction      | destinations      |
| FileFerry-RequestApproval    | RequestApprovalFunction    | –                 |
| FileFerry-AuthSSO            | AuthenticateSSOFunction    | destinations      |
| FileFerry-CreateTickets      | CreateTicketsFunction      | servicenow        |
| FileFerry-TransferFTP        | TransferFunction           | destinations      |
| FileFerry-ChunkedTransfer    | ChunkedTransferFunction    | destinations      |
| FileFerry-VerifyDelivery     | VerifyDeliveryFunction     | destinations      |
| FileFerry-PostDelivery       | PostDeliveryFunction       | destinations      |
| FileFerry-UpdateServiceNow   | UpdateServiceNowFunction   | servicenow        |
| FileFerry-NotifyUser         | NotifyUserFunction         | notifications     |
| FileFerry-Cleanup            | CleanupAndLogoutFunction   | destinations      |
| FileFerry-HandleError        | HandleErrorFunction        | servicenow, notifications |

Two functions answer events instead of Task states (``aws.events``; logical ids in
the template, not ASL placeholders): ``FileFerry-AbortCleanup`` runs the error path
for an execution that ended ABORTED, TIMED_OUT or FAILED without it (an EventBridge
rule on the state machine's status changes), ``FileFerry-DeliverPending`` drains the
ticket/notification outbox (an EventBridge Scheduler schedule). ``FileFerry-RunRoute``
starts the routes' executions (their one-minute schedule tick and S3 Object Created
events; ``aws.routes``).
"""

from __future__ import annotations

from typing import Any

from fileferry.aws.runtime import Handler, HandlerSpec, lambda_handler

__all__ = ["EVENT_HANDLERS", "EVENT_SPECS", "HANDLERS", "SPECS", "TRIGGERS", "abort_cleanup",
           "authenticate_sso", "chunked_transfer", "cleanup", "create_tickets",
           "deliver_pending", "handle_error", "notify_user", "post_delivery",
           "request_approval", "run_route", "transfer", "update_servicenow", "validate_input",
           "verify_delivery"]

SPECS: dict[str, HandlerSpec] = {spec.step: spec for spec in (
    HandlerSpec("ValidateInputFunction", "ValidateInput", ("destinations",), "[transfer_id]"),
    # the task token too: a retried or redriven AwaitApproval has a new one to record
    HandlerSpec("RequestApprovalFunction", "RequestApproval", (), "[transfer_id, callback_id]"),
    HandlerSpec("AuthenticateSSOFunction", "AuthSSO", ("destinations",), "[transfer_id]"),
    HandlerSpec("CreateTicketsFunction", "CreateTickets", ("servicenow",), "[transfer_id]"),
    HandlerSpec("TransferFunction", "TransferFTP", ("destinations",), "[transfer_id, index]",
                cancellable=True),
    HandlerSpec("ChunkedTransferFunction", "ChunkedTransfer", ("destinations",),
                "[transfer_id, index, chunk.checkpoint.offset]", budget=True,
                cancellable=True),
    HandlerSpec("VerifyDeliveryFunction", "VerifyDelivery", ("destinations",),
                "[transfer_id]"),
    HandlerSpec("PostDeliveryFunction", "PostDelivery", ("destinations",),
                "[transfer_id, after_failure]"),  # SettleDelivered calls it too
    HandlerSpec("UpdateServiceNowFunction", "UpdateServiceNow", ("servicenow",),
                "[transfer_id, outcome]"),
    HandlerSpec("NotifyUserFunction", "NotifyUser", ("notifications",),
                "[transfer_id, outcome]"),
    HandlerSpec("CleanupAndLogoutFunction", "Cleanup", ("destinations",),
                "[transfer_id, outcome]"),
    HandlerSpec("HandleErrorFunction", "HandleError", ("servicenow", "notifications"),
                "[transfer_id]"),
)}

validate_input = lambda_handler(SPECS["ValidateInputFunction"])
request_approval = lambda_handler(SPECS["RequestApprovalFunction"])
authenticate_sso = lambda_handler(SPECS["AuthenticateSSOFunction"])
create_tickets = lambda_handler(SPECS["CreateTicketsFunction"])
transfer = lambda_handler(SPECS["TransferFunction"])
chunked_transfer = lambda_handler(SPECS["ChunkedTransferFunction"])
verify_delivery = lambda_handler(SPECS["VerifyDeliveryFunction"])
post_delivery = lambda_handler(SPECS["PostDeliveryFunction"])
update_servicenow = lambda_handler(SPECS["UpdateServiceNowFunction"])
notify_user = lambda_handler(SPECS["NotifyUserFunction"])
cleanup = lambda_handler(SPECS["CleanupAndLogoutFunction"])
handle_error = lambda_handler(SPECS["HandleErrorFunction"])

HANDLERS: dict[str, Handler] = {
    "ValidateInputFunction": validate_input,
    "RequestApprovalFunction": request_approval,
    "AuthenticateSSOFunction": authenticate_sso,
    "CreateTicketsFunction": create_tickets,
    "TransferFunction": transfer,
    "ChunkedTransferFunction": chunked_transfer,
    "VerifyDeliveryFunction": verify_delivery,
    "PostDeliveryFunction": post_delivery,
    "UpdateServiceNowFunction": update_servicenow,
    "NotifyUserFunction": notify_user,
    "CleanupAndLogoutFunction": cleanup,
    "HandleErrorFunction": handle_error,
}
"""ASL placeholder -> handler (what SAM's DefinitionSubstitutions wire on AWS)."""

EVENT_SPECS: dict[str, HandlerSpec] = {spec.step: spec for spec in (
    # keyed by execution and status: a redelivered event is replayed, not re-run
    HandlerSpec("AbortCleanupFunction", "AbortCleanup",
                ("destinations", "servicenow", "notifications"),
                "[detail.executionArn, detail.status]"),
    # no key: every scheduled run must drain (the outbox delivers each piece once)
    HandlerSpec("DeliverPendingFunction", "DeliverPending", ("servicenow", "notifications"), ""),
)}

abort_cleanup = lambda_handler(EVENT_SPECS["AbortCleanupFunction"])
deliver_pending = lambda_handler(EVENT_SPECS["DeliverPendingFunction"])

EVENT_HANDLERS: dict[str, Handler] = {
    "AbortCleanupFunction": abort_cleanup,
    "DeliverPendingFunction": deliver_pending,
}
"""Template logical id -> handler, for the functions outside the state machine."""

def run_route(event: dict[str, Any], context: Any) -> Any:
    """FileFerry-RunRoute: the routes' schedule ticks and S3 events (``aws.routes``),
    imported on first use so the other functions' cold starts skip the automation code."""
    from fileferry.aws.routes import run_routes

    return run_routes(event, context)


TRIGGERS: dict[str, Handler] = {
    "RunRouteFunction": run_route,
}
"""Logical id -> handler of the functions that start executions."""
