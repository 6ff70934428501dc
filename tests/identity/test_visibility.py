"""The visibility rule (identity/visibility.py): pure answers, and the approval group read
from a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from fileferry.identity.principal import Principal
from fileferry.identity.settings import SsoSettings
from fileferry.identity.visibility import (
    Viewer,
    can_see,
    cancel_denial,
    is_operator,
    listing_denial,
    may_cancel,
    sees,
)
from fileferry.store import Store, open_store

SSO = SsoSettings(issuer="https://login.example.com", audience="fileferry",
                  operator_groups=["ops-audit"])
BARE = SsoSettings(issuer="https://login.example.com", audience="fileferry")
ALICE = Principal("alice", frozenset({"finance"}))
BOB = Principal("bob", frozenset({"finance", "finance-approvers"}))
CAROL = Principal("carol", frozenset({"ops"}))
DAVE = Principal("dave", frozenset({"ops-audit"}))
TOKEN = Principal("api", source="token")


def test_operator_groups_default_to_none() -> None:
    assert BARE.operator_groups == []
    assert not is_operator(BARE, DAVE), "no operator groups: nobody is one by group"


@pytest.mark.parametrize(("who", "operator"), [(ALICE, False), (BOB, False), (CAROL, False),
                                               (DAVE, True), (TOKEN, True)])
def test_who_sees_everything(who: Principal, operator: bool) -> None:
    assert is_operator(SSO, who) is operator
    assert is_operator(None, who), "local mode (no sso:): everyone sees everything"


def test_what_a_user_sees() -> None:
    assert sees(SSO, ALICE, "alice") and not sees(SSO, BOB, "alice")
    assert sees(SSO, BOB, "alice", "finance-approvers"), "an approver reads what they decide"
    assert not sees(SSO, CAROL, "alice", "finance-approvers")
    assert sees(SSO, DAVE, "alice") and sees(SSO, TOKEN, "alice")
    assert sees(None, CAROL, "alice")


def test_who_may_cancel() -> None:
    assert may_cancel(SSO, ALICE, "alice") and may_cancel(SSO, DAVE, "alice")
    assert not may_cancel(SSO, BOB, "alice"), "approving is not cancelling"
    why = cancel_denial(SSO, BOB, "tr-1", "alice")
    assert why is not None and "only its requester (alice)" in why and "ops-audit" in why
    assert cancel_denial(SSO, ALICE, "tr-1", "alice") is None
    unset = cancel_denial(BARE, BOB, "tr-1", "alice")
    assert unset is not None and "set sso.operator_groups" in unset


def test_who_may_list_whom() -> None:
    assert listing_denial(SSO, BOB, None) is None and listing_denial(SSO, BOB, "bob") is None
    why = listing_denial(SSO, BOB, "alice")
    assert why is not None and "requester=alice" in why and "ops-audit" in why
    assert listing_denial(SSO, DAVE, "alice") is None
    assert listing_denial(None, BOB, "alice") is None


async def test_the_approval_group_comes_from_the_store(tmp_path: Path) -> None:
    store: Store = open_store(f"sqlite:///{tmp_path}/ff.db")
    try:
        await store.create_schema()
        assert not await can_see(SSO, store, BOB, "tr-1", "alice")
        viewer = Viewer(SSO, store, BOB)
        assert not await viewer.sees("tr-1", "alice")
        await store.record_once("approval_request", "tr-1", {
            "requester": "alice", "group": "finance-approvers", "requested_at": 1.0,
            "timeout": 60, "callback_id": "cb"})
        assert await can_see(SSO, store, BOB, "tr-1", "alice")
        assert not await can_see(SSO, store, CAROL, "tr-1", "alice")
        assert not await viewer.sees("tr-1", "alice"), "a no is kept until a recheck"
        assert await viewer.sees("tr-1", "alice", recheck=True)
        assert await viewer.sees("tr-1", "alice"), "a yes is kept"
        assert not Viewer(SSO, store, BOB).sees_all and Viewer(SSO, store, DAVE).sees_all
    finally:
        await store.close()
