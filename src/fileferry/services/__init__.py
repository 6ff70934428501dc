"""Service functions shared by the CLI, the API, the agent and the Lambda runtime.

One module per concern; every name is re-exported here, so callers import from
``fileferry.services``:

* ``transfers`` – submit, record and run later, resume, continue, history, the
  request checks;
* ``views`` – read-only views from the store (``transfer_result``,
  ``transfer_public``, ``transfers_public``, ``ticket_links``, ``pending_approvals``);
* ``approvals`` – approve, reject;
* ``cancel`` – request a cancel, and carry out one of a parked transfer;
* ``outbox`` – deliver ticket and notification work queued during an outage;
* ``store_admin`` – create the store's schema;
* ``_common`` – ``make_deps`` (the ports) and what the modules share.

Patch a function where it is looked up (its module here), not on this package.
"""

from fileferry.services._common import execution_id_for as execution_id_for
from fileferry.services._common import make_deps
from fileferry.services.approvals import approve_transfer, reject_transfer
from fileferry.services.cancel import mark_cancel_requested, request_cancel, stop_if_parked
from fileferry.services.outbox import deliver_pending, drain_outbox
from fileferry.services.store_admin import init_state_store
from fileferry.services.transfers import _default_principal as _default_principal
from fileferry.services.transfers import (
    check_destination,
    check_request,
    check_sources,
    continue_transfer,
    history,
    record_transfer,
    resume_transfers,
    run_recorded,
    submit_transfer,
)
from fileferry.services.views import (
    pending_approvals,
    ticket_links,
    transfer_public,
    transfer_result,
    transfers_public,
)

__all__ = ["approve_transfer", "check_destination", "check_request", "check_sources",
           "continue_transfer", "deliver_pending", "drain_outbox", "history",
           "init_state_store", "make_deps", "mark_cancel_requested", "pending_approvals",
           "record_transfer", "reject_transfer", "request_cancel", "resume_transfers",
           "run_recorded", "stop_if_parked", "submit_transfer", "ticket_links",
           "transfer_public", "transfer_result", "transfers_public"]
