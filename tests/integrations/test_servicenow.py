"""ServiceNowTicketing and ServiceNowClient over real HTTP against the ServiceNow emulator."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError

from fileferry.errors import (
    AuthenticationFailed,
    DestinationError,
    EndpointUnavailable,
    PermissionDenied,
)
from fileferry.integrations.servicenow import (
    ServiceNowClient,
    ServiceNowSettings,
    ServiceNowTicketing,
    correlation_id,
)
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.store import Store, open_store
from fileferry.workflow.models import Tickets

GROUP = "File Transfer Ops"
FACTS: dict[str, Any] = {"transfer_id": "tr-0001", "requester": "alice",
                         "destination": "acme", "sources": ["s3://reports/a.csv",
                                                            "s3://reports/b.csv"],
                         "bytes_total": 3072, "files_total": 2}
FILES = [{"destination": "/in/a.csv", "size": 1024, "sha256": "a" * 64,
          "verified_by": "sha256-readback"},
         {"destination": "/in/b.csv", "size": 2048, "sha256": "b" * 64,
          "verified_by": "size+sha256"}]
TABLE = "/api/now/v2/table"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sn() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        emulator.add_user("alice", "Alice Example")
        emulator.add_group(GROUP)
        yield emulator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/s.db")
    yield s
    await s.close()


@pytest.fixture
def slept(sn: ServiceNowEmulator) -> list[float]:
    return []


def settings(sn: ServiceNowEmulator, **over: Any) -> ServiceNowSettings:
    values: dict[str, Any] = {"instance_url": sn.url, "username": sn.username,
                              "password": sn.password, "default_assignment_group": GROUP,
                              "timeout": 2}
    if str(over.get("auth", "basic")).startswith("oauth"):
        values.update(client_id=sn.client_id, client_secret=sn.client_secret)
    values.update(over)
    return ServiceNowSettings.model_validate(values)


def make(sn: ServiceNowEmulator, store: Store, slept: list[float], *,
         clock: FakeClock | None = None, **over: Any) -> ServiceNowTicketing:
    async def sleep(seconds: float) -> None:  # time passes for the emulator too
        slept.append(seconds)
        sn.advance_clock(seconds)
        if clock is not None:
            clock.now += seconds

    return ServiceNowTicketing(store, settings(sn, **over), sleep=sleep,
                               clock=clock or FakeClock())


def incidents(sn: ServiceNowEmulator) -> dict[str, dict[str, str]]:
    return {r["correlation_id"]: r for r in sn.records("incident")}


def notes_of(sn: ServiceNowEmulator, sys_id: str) -> list[str]:
    return [j["value"] for j in sn.records("sys_journal_field")
            if j["element_id"] == sys_id and j["element"] == "work_notes"]


def posts(sn: ServiceNowEmulator) -> int:
    return sum(1 for r in sn.request_log if r.method == "POST" and r.path.endswith("/incident"))


# -- the dual-ticket lifecycle -------------------------------------------------------------

async def test_success_lifecycle(sn: ServiceNowEmulator, store: Store,
                                 slept: list[float]) -> None:
    async with make(sn, store, slept) as ticketing:
        tickets = await ticketing.create("tr-0001", dict(FACTS))
        by_cid = incidents(sn)
        user, audit = by_cid["fileferry:tr-0001:user"], by_cid["fileferry:tr-0001:audit"]
        assert tickets == Tickets(user=user["number"], audit=audit["number"])
        assert user["number"].startswith("INC") and user["number"] != audit["number"]
        [alice] = [u for u in sn.records("sys_user") if u["user_name"] == "alice"]
        [group] = sn.records("sys_user_group")
        # urgency/impact as configured, priority computed by the instance (P4 / P5)
        assert (user["urgency"], user["impact"], user["priority"]) == ("2", "3", "4")
        assert (audit["urgency"], audit["impact"], audit["priority"]) == ("3", "3", "5")
        for ticket in (user, audit):
            assert ticket["caller_id"] == alice["sys_id"]
            assert ticket["assignment_group"] == group["sys_id"]
            assert ticket["state"] == "1" and ticket["correlation_display"] == "FileFerry"
            assert "acme" in ticket["short_description"]
            assert "alice" in ticket["short_description"]
            for text in ("s3://reports/a.csv", "s3://reports/b.csv", "Destination: acme",
                         "3.0 KiB", "Requester: alice", "tr-0001"):
                assert text in ticket["description"]
        assert "Policy: local: no policy engine yet" in audit["description"]
        assert "Policy" not in user["description"]

        await ticketing.update("tr-0001", tickets, "SUCCEEDED",
                               {"files": FILES, "duration": 12.5, "execution_id": "ex-42"})
        by_cid = incidents(sn)
        user, audit = by_cid["fileferry:tr-0001:user"], by_cid["fileferry:tr-0001:audit"]
        for ticket in (user, audit):
            assert ticket["state"] == "6" and ticket["close_code"] == "Solution provided"
            assert "delivered 2 file(s)" in ticket["close_notes"]
            assert ticket["resolved_at"] and ticket["active"] == "true"
            [note] = notes_of(sn, ticket["sys_id"])
            assert note.startswith("[ff:tr-0001:SUCCEEDED]")
            for text in ("/in/a.csv", "1.0 KiB (1024 bytes)", "a" * 64, "sha256-readback",
                         "/in/b.csv", "b" * 64, "size+sha256", "Duration: 12.5 s",
                         "Execution: ex-42"):
                assert text in note

        # idempotent: a re-run changes nothing and writes nothing
        before = len(sn.request_log)
        await ticketing.update("tr-0001", tickets, "SUCCEEDED", {"files": FILES})
        assert await ticketing.create("tr-0001", dict(FACTS)) == tickets
        assert len(sn.request_log) == before
    events = [(e.event, e.detail) for e in await store.audit("tr-0001")]
    assert [e for e, _ in events] == ["tickets_created", "tickets_updated"]
    assert events[0][1]["user"] == tickets.user and events[0][1]["sys_ids"]["user"]
    assert events[1][1]["outcome"] == "SUCCEEDED"


async def test_failure_lifecycle_and_closed_audit(sn: ServiceNowEmulator, store: Store,
                                                  slept: list[float]) -> None:
    async with make(sn, store, slept, audit_close_state="closed") as ticketing:
        tickets = await ticketing.create("tr-0002", {**FACTS, "policy": "opa: allow acme"})
        await ticketing.update("tr-0002", tickets, "FAILED",
                               {"error": "EndpointUnavailable", "cause": "sftp reset"})
        by_cid = incidents(sn)
        user, audit = by_cid["fileferry:tr-0002:user"], by_cid["fileferry:tr-0002:audit"]
        assert "Policy: opa: allow acme" in audit["description"]
        assert user["state"] == "1" and user["active"] == "true"  # open for the group
        assert user["assignment_group"] == sn.records("sys_user_group")[0]["sys_id"]
        assert audit["state"] == "7" and audit["active"] == "false" and audit["closed_at"]
        assert audit["close_code"] == "No resolution provided"
        assert "EndpointUnavailable: sftp reset" in audit["close_notes"]
        for ticket in (user, audit):
            assert notes_of(sn, ticket["sys_id"]) == [
                "[ff:tr-0002:FAILED] FileFerry transfer tr-0002 failed: "
                "EndpointUnavailable: sftp reset"]
        # a crashed run that did the HTTP work but never recorded it: no duplicate note
        await store.backend.delete("idempotency", "ticket_update", "tr-0002:FAILED")
        await ticketing.update("tr-0002", tickets, "FAILED",
                               {"error": "EndpointUnavailable", "cause": "sftp reset"})
        assert len(notes_of(sn, user["sys_id"])) == 1
        assert incidents(sn)["fileferry:tr-0002:audit"]["state"] == "7"


async def test_cancelled_and_update_without_tickets(sn: ServiceNowEmulator, store: Store,
                                                    slept: list[float]) -> None:
    async with make(sn, store, slept) as ticketing:
        await ticketing.update("tr-none", None, "FAILED", {"error": "ValidationError"})
        assert sn.records("incident") == []
        tickets = await ticketing.create("tr-0003", dict(FACTS))
        await ticketing.update("tr-0003", tickets, "CANCELLED", {"by": "request"})
        audit = incidents(sn)["fileferry:tr-0003:audit"]
        assert audit["state"] == "6" and audit["close_code"] == "No resolution provided"
        assert "cancelled by request" in notes_of(sn, audit["sys_id"])[0]
    assert [e.event for e in await store.audit("tr-none")] == ["tickets_updated"]


async def test_missing_caller_and_group_still_create(sn: ServiceNowEmulator, store: Store,
                                                     slept: list[float]) -> None:
    async with make(sn, store, slept, default_assignment_group="No Such Group") as ticketing:
        await ticketing.create("tr-0004", {**FACTS, "requester": "nobody"})
    for ticket in sn.records("incident"):
        assert ticket["caller_id"] == "" and ticket["assignment_group"] == ""
        assert "nobody" in ticket["description"]
    assert len(sn.records("incident")) == 2


async def test_templates_overridden(sn: ServiceNowEmulator, store: Store,
                                    slept: list[float]) -> None:
    async with make(sn, store, slept,
                    short_description_template="[{{ role | upper }}] {{ transfer_id }}",
                    description_template="{{ sources | join(';') }} by {{ requester }}",
                    close_notes_template="done {{ files | length }} {{ outcome }}",
                    close_code="Workaround provided") as ticketing:
        tickets = await ticketing.create("tr-0005", dict(FACTS))
        await ticketing.update("tr-0005", tickets, "SUCCEEDED", {"files": FILES})
    by_cid = incidents(sn)
    user, audit = by_cid["fileferry:tr-0005:user"], by_cid["fileferry:tr-0005:audit"]
    assert user["short_description"] == "[USER] tr-0005"
    assert audit["short_description"] == "[AUDIT] tr-0005"
    assert user["description"] == "s3://reports/a.csv;s3://reports/b.csv by alice"
    assert user["close_notes"] == "done 2 SUCCEEDED"
    assert user["close_code"] == audit["close_code"] == "Workaround provided"


def test_settings_validation(sn: ServiceNowEmulator) -> None:
    with pytest.raises(PydanticValidationError, match="template"):
        settings(sn, description_template="{% for %}")
    with pytest.raises(PydanticValidationError, match="client_id"):
        ServiceNowSettings(instance_url=sn.url, auth="oauth_client_credentials")
    with pytest.raises(PydanticValidationError) as info:
        ServiceNowSettings(instance_url="ftp://x", username="u", password="hunter2-secret")
    assert "hunter2-secret" not in str(info.value)
    s = settings(sn, table="change_request")
    assert (s.success_close_code, s.failed_close_code) == ("successful", "unsuccessful")
    assert "hunter2" not in repr(settings(sn, password="hunter2"))


async def test_change_request_table(sn: ServiceNowEmulator, store: Store,
                                    slept: list[float]) -> None:
    async with make(sn, store, slept, table="change_request") as ticketing:
        tickets = await ticketing.create("tr-0006", dict(FACTS))
        await ticketing.update("tr-0006", tickets, "SUCCEEDED", {"files": FILES})
    changes = sn.records("change_request")
    assert {c["number"] for c in changes} == {tickets.user, tickets.audit}
    assert all(c["state"] == "3" and c["close_code"] == "successful" for c in changes)
    assert all(c["requested_by"] for c in changes)


# -- idempotent creation under faults ------------------------------------------------------

async def test_create_twice_makes_two_tickets(sn: ServiceNowEmulator, store: Store,
                                              tmp_path: Path, slept: list[float]) -> None:
    async with make(sn, store, slept) as ticketing:
        first = await ticketing.create("tr-0007", dict(FACTS))
        assert await ticketing.create("tr-0007", dict(FACTS)) == first
    # another process with an empty store: it finds the tickets instead of making more
    other = open_store(f"sqlite:///{tmp_path}/other.db")
    try:
        async with make(sn, other, slept) as ticketing:
            assert await ticketing.create("tr-0007", dict(FACTS)) == first
    finally:
        await other.close()
    assert len(sn.records("incident")) == 2 and posts(sn) == 2


async def test_rate_limit_storm(sn: ServiceNowEmulator, store: Store,
                                slept: list[float]) -> None:
    sn.rate_limit(2, per_seconds=20)
    async with make(sn, store, slept) as ticketing:
        tickets = await ticketing.create("tr-0008", dict(FACTS))
        await ticketing.update("tr-0008", tickets, "SUCCEEDED", {"files": FILES})
    assert any(r.status == 429 for r in sn.request_log)
    assert slept and all(0 < s <= 20 for s in slept)  # Retry-After honoured
    assert len(sn.records("incident")) == 2
    assert all(r["state"] == "6" for r in sn.records("incident"))


async def test_rate_limit_exhausted_is_endpoint_unavailable(
        sn: ServiceNowEmulator, store: Store, slept: list[float]) -> None:
    sn.rate_limit(0, per_seconds=3600)
    async with make(sn, store, slept, attempts=3, max_retry_after=5) as ticketing:
        with pytest.raises(EndpointUnavailable, match="429"):
            await ticketing.create("tr-0009", dict(FACTS))
    assert slept == [5, 5]  # capped Retry-After
    assert sn.records("incident") == []


async def test_outage_503(sn: ServiceNowEmulator, store: Store, slept: list[float]) -> None:
    async with make(sn, store, slept, breaker_threshold=50) as ticketing:
        sn.fail_next(3)
        tickets = await ticketing.create("tr-0010", dict(FACTS))
        # POSTs failing with 503 are looked up again, then inserted once
        sn.fail_next(1, path_prefix=f"{TABLE}/incident")
        await ticketing.create("tr-0011", dict(FACTS))
        sn.fail_next(2)
        await ticketing.update("tr-0010", tickets, "SUCCEEDED", {"files": FILES})
    assert len(slept) == 6
    assert sum(1 for r in sn.request_log if r.status == 503) == 6
    assert len(sn.records("incident")) == 4
    assert {r["correlation_id"] for r in sn.records("incident")} == {
        correlation_id(t, role) for t in ("tr-0010", "tr-0011") for role in ("user", "audit")}


async def test_post_outcome_unknown_is_looked_up(sn: ServiceNowEmulator, store: Store,
                                                 slept: list[float],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    sn.drop_after_commit(2)
    with caplog.at_level(logging.WARNING):
        async with make(sn, store, slept) as ticketing:
            tickets = await ticketing.create("tr-0012", dict(FACTS))
    assert len(sn.records("incident")) == 2 and posts(sn) == 2  # no blind re-POST
    assert {tickets.user, tickets.audit} == {r["number"] for r in sn.records("incident")}
    assert "outcome unknown" in caplog.text
    assert sn.password not in caplog.text


async def test_timeout_on_post_is_looked_up(sn: ServiceNowEmulator, store: Store,
                                            slept: list[float]) -> None:
    async with make(sn, store, slept, timeout=0.3) as ticketing:
        sn.delay(0.6, 1, path_prefix=f"{TABLE}/incident")  # the first lookup times out
        await ticketing.create("tr-0013", dict(FACTS))
    assert len(sn.records("incident")) == 2


async def test_query_ignoring_the_field_is_rechecked(sn: ServiceNowEmulator,
                                                     slept: list[float]) -> None:
    for n in range(3):
        sn.add_record("incident", short_description=f"other {n}", correlation_id=f"x{n}")
    async with ServiceNowClient(settings(sn)) as client:
        # an unknown field: the instance ignores the term and returns every row
        assert await client.find_exact("incident", "u_fileferry_key", "k1", ["sys_id"]) == []
        _sys_id, number = await client.ensure_ticket("incident", "k1", {"short_description": "t"},
                                                    field="u_fileferry_key")
        assert len(sn.records("incident")) == 4 and number.startswith("INC")
        # duplicates made by someone else: the oldest wins
        sn.add_record("incident", correlation_id="dup")
        sn.add_record("incident", correlation_id="dup")
        oldest = next(r for r in sn.records("incident") if r["correlation_id"] == "dup")
        assert (await client.ensure_ticket("incident", "dup", {}))[0] == oldest["sys_id"]
        assert (await client.ensure_ticket("incident", "x1", {}))[1] == \
            next(r for r in sn.records("incident") if r["correlation_id"] == "x1")["number"]
    assert len(sn.records("incident")) == 6


# -- errors and authentication -------------------------------------------------------------

async def test_error_mapping(sn: ServiceNowEmulator) -> None:
    async with ServiceNowClient(settings(sn, password="wrong")) as client:
        with pytest.raises(AuthenticationFailed, match="401"):
            await client.query("incident", "", ["sys_id"])
    async with ServiceNowClient(settings(sn)) as client:
        with pytest.raises(DestinationError, match="Invalid table"):
            await client.query("nope", "", ["sys_id"])
        sys_id, _ = await client.ensure_ticket("incident", "e1", {})
        with pytest.raises(PermissionDenied, match="Data Policy"):
            await client.patch("incident", sys_id, {"state": "6"})
        with pytest.raises(DestinationError, match="404"):
            await client.get("incident", "0" * 32, ["sys_id"])


async def test_oauth_password_expiry_and_refresh(sn: ServiceNowEmulator, store: Store,
                                                 slept: list[float]) -> None:
    clock = FakeClock()
    async with make(sn, store, slept, clock=clock, auth="oauth_password") as ticketing:
        client = ticketing.client
        tickets = await ticketing.create("tr-0020", dict(FACTS))
        assert client.token_requests == 1
        sn.advance_clock(1801)  # the instance expires the token; our clock did not move
        await ticketing.update("tr-0020", tickets, "SUCCEEDED", {"files": FILES})
        assert client.token_requests == 2  # refreshed once after a 401
        assert any(r.status == 401 for r in sn.request_log)
        clock.now += 1800  # now our clock says it is due: refreshed before use
        before = sum(1 for r in sn.request_log if r.status == 401)
        await client.query("incident", "", ["sys_id"])
        assert client.token_requests == 3
        assert sum(1 for r in sn.request_log if r.status == 401) == before
        sn.advance_clock(8_640_001)  # the refresh token expired too: a new password grant
        clock.now += 1800
        await client.query("incident", "", ["sys_id"])
        assert client.token_requests == 5
    grants = [r for r in sn.request_log if r.path == "/oauth_token.do"]
    assert [g.status for g in grants] == [200, 200, 200, 401, 200]
    assert len(sn.records("incident")) == 2


async def test_oauth_client_credentials(sn: ServiceNowEmulator, store: Store,
                                        slept: list[float]) -> None:
    async with make(sn, store, slept, auth="oauth_client_credentials", username=None,
                    password=None) as ticketing:
        await ticketing.create("tr-0021", dict(FACTS))
        assert ticketing.client.token_requests == 1
    assert len(sn.records("incident")) == 2


async def test_oauth_refused(sn: ServiceNowEmulator) -> None:
    async with ServiceNowClient(settings(sn, auth="oauth_password",
                                         client_secret="wrong")) as client:
        with pytest.raises(AuthenticationFailed, match="access_denied"):
            await client.query("incident", "", ["sys_id"])


async def test_circuit_breaker_opens_and_closes(sn: ServiceNowEmulator) -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with ServiceNowClient(settings(sn, attempts=3, breaker_threshold=3,
                                         breaker_cooldown=30), sleep=sleep,
                                clock=clock) as client:
        sn.fail_next(100)
        with pytest.raises(EndpointUnavailable, match="503"):
            await client.query("incident", "", ["sys_id"])
        assert client.breaker.state == "open"
        sent = len(sn.request_log)
        with pytest.raises(EndpointUnavailable, match="circuit breaker open"):
            await client.query("incident", "", ["sys_id"])
        assert len(sn.request_log) == sent  # failed fast, nothing sent
        clock.now += 31
        assert client.breaker.state == "half-open"
        with pytest.raises(EndpointUnavailable, match="circuit breaker open"):
            await client.query("incident", "", ["sys_id"])  # the trial failed: open again
        assert len(sn.request_log) == sent + 1
        sn.clear_faults()
        clock.now += 31
        assert await client.query("incident", "", ["sys_id"]) == []
        assert client.breaker.state == "closed" and client.breaker.failures == 0
