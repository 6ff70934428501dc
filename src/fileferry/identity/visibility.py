"""Who may see, follow and cancel which transfer: the one rule the API, its event
streams, the dashboard and the agent ask.

* No ``sso:`` (the local single-user mode), the shared ``api.token`` (source
  ``token``, a service credential) or a member of one of ``sso.operator_groups``:
  every transfer (operations, audit).
* Anyone else: the transfers they requested, and the transfers waiting for (or
  decided by) an approval group they belong to — an approver must be able to
  read what they approve. The approval group is read from the store's
  ``approval_request`` record, which stays after the decision.

Cancelling is narrower: the requester or an operator; an approver reads but
does not cancel someone else's transfer.

:func:`sees` and :func:`may_cancel` are pure; :func:`can_see` reads the approval
request only when the pure answer depends on it; :class:`Viewer` remembers the
answers for one event stream (a progress event must not cost a store read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fileferry.identity.principal import Principal
from fileferry.identity.settings import SsoSettings
from fileferry.store import Store

__all__ = ["Viewer", "approval_group", "can_see", "cancel_denial", "is_operator",
           "listing_denial", "may_cancel", "sees"]


def is_operator(sso: SsoSettings | None, principal: Principal) -> bool:
    """Whether ``principal`` sees (and may cancel) every transfer: always without
    ``sso:``, for the shared api.token, and for members of ``sso.operator_groups``."""
    if sso is None or principal.source == "token":
        return True
    return bool(principal.groups & set(sso.operator_groups))


def sees(sso: SsoSettings | None, principal: Principal, requester: str,
         group: str | None = None) -> bool:
    """Whether ``principal`` may see a transfer ``requester`` asked for whose approval
    request (if any) names ``group``. A transfer without approval passes None."""
    if is_operator(sso, principal) or principal.user == requester:
        return True
    return group is not None and group in principal.groups


def may_cancel(sso: SsoSettings | None, principal: Principal, requester: str) -> bool:
    """Whether ``principal`` may cancel a transfer ``requester`` asked for: the requester
    or an operator (an approver only reads it)."""
    return is_operator(sso, principal) or principal.user == requester


def cancel_denial(sso: SsoSettings | None, principal: Principal, transfer_id: str,
                  requester: str) -> str | None:
    """Why ``principal`` may not cancel the transfer (None: they may); says what grants it."""
    if may_cancel(sso, principal, requester):
        return None
    return (f"{principal.user} may not cancel {transfer_id}: only its requester "
            f"({requester}) or a member of {_operators(sso)} can")


def listing_denial(sso: SsoSettings | None, principal: Principal,
                   requester: str | None) -> str | None:
    """Why ``principal`` may not list the transfers of ``requester`` (None: they may).
    A non-operator lists only their own; asking for someone else's is refused."""
    if requester is None or requester == principal.user or is_operator(sso, principal):
        return None
    return (f"{principal.user} may list only their own transfers, not requester={requester}; "
            f"listing everyone's needs membership of {_operators(sso)}")


def _operators(sso: SsoSettings | None) -> str:
    groups = sorted(sso.operator_groups) if sso is not None else []
    if not groups:
        return "an operator group (none is configured: set sso.operator_groups)"
    return "an operator group (sso.operator_groups: " + ", ".join(groups) + ")"


async def approval_group(store: Store, transfer_id: str) -> str | None:
    """The group that decides (or decided) the transfer's approval; None when it never
    waited for one."""
    request = await store.recorded("approval_request", transfer_id)
    return None if request is None else str(request.get("group") or "") or None


async def can_see(sso: SsoSettings | None, store: Store, principal: Principal,
                  transfer_id: str, requester: str) -> bool:
    """:func:`sees`, reading the approval request only when the answer depends on it."""
    if sees(sso, principal, requester):
        return True
    return sees(sso, principal, requester, await approval_group(store, transfer_id))


@dataclass
class Viewer:
    """:func:`can_see` for one stream of events, remembering its answers.

    A yes is kept (a transfer never stops being visible: the requester and the
    approval group do not change). A no is kept until ``recheck`` — the stream
    asks again on a status event, which is when a transfer starts waiting for an
    approval group.
    """

    sso: SsoSettings | None
    store: Store
    principal: Principal
    _known: dict[str, bool] = field(default_factory=dict)

    @property
    def sees_all(self) -> bool:
        return is_operator(self.sso, self.principal)

    async def sees(self, transfer_id: str, requester: str, *, recheck: bool = False) -> bool:
        known = self._known.get(transfer_id)
        if known is not None and (known or not recheck):
            return known
        answer = await can_see(self.sso, self.store, self.principal, transfer_id, requester)
        self._known[transfer_id] = answer
        return answer
