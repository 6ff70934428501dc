"""Teams/Slack/webhook notifications against the local receiver, over real HTTP."""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from fileferry.integrations.notify import (
    MAX_RETRY_AFTER,
    SLACK_MAX_FILES,
    TEAMS_MAX_BYTES,
    Notice,
    NoticeError,
    NoticeFile,
    NotificationsSettings,
    WebhookNotifier,
    human_duration,
    human_size,
)
from fileferry.integrations.outbox import drain
from fileferry.sandbox.net import free_port
from fileferry.sandbox.webhooks import WebhookReceiver
from fileferry.store import FileRecord, Store, TransferRecord, open_store

SHA = "ab" * 32


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/s.db")
    yield s
    await s.close()


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def settings(*channels: dict[str, Any], **kw: Any) -> NotificationsSettings:
    return NotificationsSettings.model_validate({"channels": list(channels), **kw})


def notice(**kw: Any) -> Notice:
    data: dict[str, Any] = {
        "transfer_id": "tr-20261101-0001abcd", "outcome": "SUCCEEDED", "requester": "alice",
        "destination": "acme:daily/", "duration": 75.5,
        "files": [NoticeFile(destination="daily/a.csv", size=2048, sha256=SHA,
                             verified_by="server-sha256"),
                  NoticeFile(destination="daily/b.csv", size=10, sha256=SHA,
                             verified_by="readback-sha256")],
        "tickets": {"user": "RITM0001", "audit": "CHG0002"},
        "ticket_links": {"RITM0001": "https://sn.example/RITM0001"},
    }
    data.update(kw)
    return Notice.model_validate(data)


async def audit_events(store: Store, transfer_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.detail) for e in await store.audit(transfer_id)]


# --- payload shapes ---------------------------------------------------------------------


async def test_teams_adaptive_card(store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "teams", "name": "t",
                                                "url": hooks.url("/teams")}))
    [delivery] = await notifier.send(notice())
    assert delivery.delivered and delivery.attempts == 1 and delivery.status == 200

    [got] = hooks.received
    assert got.path == "/teams"
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.body["type"] == "message"
    [attachment] = got.body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["version"] == "1.4"
    title, text, facts = card["body"][:3]
    assert title == {"type": "TextBlock", "text": "Transfer delivered", "size": "Large",
                     "weight": "Bolder", "color": "Good", "wrap": True}
    assert text["type"] == "TextBlock" and "delivered 2 file(s)" in text["text"]
    assert facts["type"] == "FactSet"
    values = {f["title"]: f["value"] for f in facts["facts"]}
    assert values["Requester"] == "alice"
    assert values["Files"] == "2 (2.0 KiB)"
    assert values["Duration"] == "1 min 16 s"
    assert values["Ticket (user)"] == "[RITM0001](https://sn.example/RITM0001)"
    assert values["Ticket (audit)"] == "CHG0002"
    file_facts = card["body"][-1]
    assert file_facts["type"] == "FactSet"
    assert file_facts["facts"][0]["title"] == "daily/a.csv"
    assert SHA in file_facts["facts"][0]["value"]
    assert "server-sha256" in file_facts["facts"][0]["value"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "RITM0001 (user)",
                                "url": "https://sn.example/RITM0001"}]
    assert await audit_events(store, "tr-20261101-0001abcd") == [
        ("notification_sent", {"channel": "t", "kind": "teams", "outcome": "SUCCEEDED",
                               "attempts": 1, "status": 200})]


async def test_slack_block_kit_failure(store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "slack", "name": "s",
                                                "url": hooks.url("/slack")}))
    failed = notice(outcome="FAILED", files=[], requester="bob <admin>",
                    error=NoticeError(type="DestinationError", message="550 Permission denied"))
    await notifier.send(failed)
    [got] = hooks.received
    body = got.body
    assert body["text"].startswith(":x: Transfer failed: ")
    assert "DestinationError" in body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "section", "context"]
    header, summary, fields, error = body["blocks"][:4]
    assert header["text"] == {"type": "plain_text", "text": "Transfer failed", "emoji": True}
    assert summary["text"]["type"] == "mrkdwn"
    field_texts = [f["text"] for f in fields["fields"]]
    assert all(f["type"] == "mrkdwn" for f in fields["fields"])
    assert len(field_texts) <= 10
    assert "*Requester*\nbob &lt;admin&gt;" in field_texts
    assert "*Tickets*\n<https://sn.example/RITM0001|RITM0001> (user), CHG0002 (audit)" \
        in field_texts
    assert "`DestinationError`" in error["text"]["text"]
    assert "550 Permission denied" in error["text"]["text"]


async def test_slack_success_lists_files(store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "slack", "name": "s",
                                                "url": hooks.url("/slack")}))
    await notifier.send(notice())
    blocks = hooks.received[0].body["blocks"]
    files = blocks[-2]["text"]["text"]
    assert files.startswith("*Files*\n• `daily/a.csv` 2.0 KiB sha256 `" + SHA)
    assert "(readback-sha256)" in files


async def test_generic_webhook_is_the_notice(store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}))
    n = notice()
    await notifier.send(n)
    body = hooks.received[0].body
    assert body["event"] == "transfer.succeeded"
    assert body["files_total"] == 2 and body["files_omitted"] == 0
    assert body["bytes_total"] == 2058
    expected = n.model_dump(mode="json")
    expected["text"] = body["text"]
    assert {k: body[k] for k in expected} == expected
    assert body["text"].startswith("tr-20261101-0001abcd: delivered 2 file(s)")


async def test_long_file_lists_are_cut(store: Store, hooks: WebhookReceiver) -> None:
    many = [NoticeFile(destination=f"daily/{'x' * 80}-{i:04}.csv", size=i, sha256=SHA,
                       verified_by="server-sha256") for i in range(500)]
    notifier = WebhookNotifier(store, settings(
        {"kind": "slack", "name": "s", "url": hooks.url("/slack")},
        {"kind": "teams", "name": "t", "url": hooks.url("/teams")},
        {"kind": "webhook", "name": "w", "url": hooks.url("/hook")}))
    await notifier.send(notice(files=many, error=NoticeError(type="E", message="m" * 10_000)))
    by_path = {r.path: r for r in hooks.received}

    slack = by_path["/slack"].body
    assert len(slack["blocks"]) <= 50
    for block in slack["blocks"]:
        if "text" in block and block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    files = slack["blocks"][-2]["text"]["text"]
    shown = files.count("\n• ")
    assert 0 < shown <= SLACK_MAX_FILES
    assert files.endswith(f"… and {500 - shown} more file(s)")

    teams = by_path["/teams"]
    assert len(teams.raw) <= TEAMS_MAX_BYTES
    body = teams.body["attachments"][0]["content"]["body"]
    assert "more file(s)" in body[-1]["text"]

    hook = by_path["/hook"].body
    assert hook["files_total"] == 500 and hook["files_omitted"] == 0


# --- templates --------------------------------------------------------------------------


async def test_template_renders_the_text(store: Store, hooks: WebhookReceiver) -> None:
    template = ("{{ transfer_id }} {{ outcome | lower }}: {{ files | length }} files, "
                "{{ bytes_total | filesize }} in {{ duration | duration }} for {{ requester }}")
    notifier = WebhookNotifier(store, settings(
        {"kind": "slack", "name": "s", "url": hooks.url("/slack"), "template": template},
        {"kind": "webhook", "name": "w", "url": hooks.url("/hook"), "template": template}))
    await notifier.send(notice())
    by_path = {r.path: r.body for r in hooks.received}
    expected = "tr-20261101-0001abcd succeeded: 2 files, 2.0 KiB in 1 min 16 s for alice"
    assert by_path["/slack"]["blocks"][1]["text"]["text"] == expected
    assert by_path["/hook"]["text"] == expected


async def test_broken_template_falls_back(store: Store, hooks: WebhookReceiver,
                                          caplog: pytest.LogCaptureFixture) -> None:
    notifier = WebhookNotifier(store, settings(
        {"kind": "webhook", "name": "w", "url": hooks.url("/hook"),
         "template": "{{ no_such_field }}"}))
    [delivery] = await notifier.send(notice())
    assert delivery.delivered
    assert hooks.received[0].body["text"].startswith("tr-20261101-0001abcd: delivered")
    assert "template of channel w failed" in caplog.text


def test_template_syntax_is_checked_at_load() -> None:
    with pytest.raises(pydantic.ValidationError, match="template"):
        settings({"kind": "slack", "name": "s", "url": "https://x.example/h",
                  "template": "{% if %}"})


def test_settings_validation_hides_the_url() -> None:
    secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX"
    ok = settings({"kind": "slack", "name": "s", "url": secret})
    assert secret not in repr(ok) and secret not in str(ok.model_dump())
    with pytest.raises(pydantic.ValidationError) as err:
        settings({"kind": "slack", "name": "s", "url": "ftp://XXXXSECRETXXXX/x"})
    assert "XXXXSECRETXXXX" not in str(err.value)
    with pytest.raises(pydantic.ValidationError, match="unique"):
        settings({"kind": "slack", "name": "s", "url": secret},
                 {"kind": "teams", "name": "s", "url": secret})
    with pytest.raises(pydantic.ValidationError, match="number"):
        settings(ticket_link="https://sn.example/")
    with pytest.raises(pydantic.ValidationError):
        settings({"kind": "email", "name": "s", "url": secret})
    assert settings().channels == [] and settings().attempts == 3


# --- idempotency, retries, failures -----------------------------------------------------


async def test_sending_twice_posts_once_per_channel(store: Store,
                                                    hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings(
        {"kind": "slack", "name": "s", "url": hooks.url("/slack")},
        {"kind": "teams", "name": "t", "url": hooks.url("/teams")}))
    first = await notifier.send(notice())
    again = await WebhookNotifier(store, notifier._settings).send(notice())
    assert [d.delivered for d in first] == [True, True]
    assert [(d.delivered, d.duplicate) for d in again] == [(False, True), (False, True)]
    assert sorted(r.path for r in hooks.received) == ["/slack", "/teams"]
    # another event of the same transfer is a new message
    await notifier.send(notice(outcome="FAILED"))
    assert len(hooks.received) == 4
    events = [e for e, _ in await audit_events(store, "tr-20261101-0001abcd")]
    assert events == ["notification_sent"] * 4


async def test_retries_after_503_and_429_honouring_retry_after(
        store: Store, hooks: WebhookReceiver) -> None:
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings({"kind": "teams", "name": "t",
                                                "url": hooks.url("/teams")}, attempts=3),
                               sleep=sleep)
    hooks.fail_next(1, status=503)
    hooks.fail_next(1, status=429, retry_after=7)
    [delivery] = await notifier.send(notice())
    assert delivery.delivered and delivery.attempts == 3
    assert [r.status for r in hooks.received] == [503, 429, 200]
    assert len(sleep.delays) == 2
    assert 0.25 <= sleep.delays[0] <= 0.5  # first backoff: 0.5 s with jitter
    assert sleep.delays[1] == 7.0  # Retry-After
    assert (await audit_events(store, "tr-20261101-0001abcd"))[-1] == (
        "notification_sent", {"channel": "t", "kind": "teams", "outcome": "SUCCEEDED",
                              "attempts": 3, "status": 200})


async def test_backoff_grows_and_gives_up(store: Store, hooks: WebhookReceiver) -> None:
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}, attempts=4),
                               sleep=sleep)
    hooks.fail_next(10, status=502)
    [delivery] = await notifier.send(notice())  # does not raise
    assert not delivery.delivered and delivery.attempts == 4 and delivery.status == 502
    assert len(hooks.received) == 4
    assert [round(d / c, 3) <= 1 and d >= c / 2
            for d, c in zip(sleep.delays, [0.5, 1.0, 2.0], strict=True)] == [True] * 3
    [(event, detail)] = await audit_events(store, "tr-20261101-0001abcd")
    assert event == "notification_failed"
    assert detail == {"channel": "w", "kind": "webhook", "outcome": "SUCCEEDED", "attempts": 4,
                      "status": 502, "error": "HTTP 502: error 502", "queued": True}


async def test_a_notice_the_channel_could_not_take_is_delivered_later(
        store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}, attempts=2),
                               sleep=FakeSleep())
    hooks.fail_next(2, status=503)
    [delivery] = await notifier.send(notice())
    assert not delivery.delivered and delivery.retryable
    [queued] = await store.work("tr-20261101-0001abcd")
    assert (queued.key, queued.state) == ("notify:SUCCEEDED:w", "pending")
    assert "url" not in json.dumps(queued.payload) and hooks.url("/hook") not in str(queued)

    report = await drain({"notify": notifier}, store)  # the channel is back

    assert (report.delivered, report.pending) == (1, 0)
    assert len(hooks.received) == 3
    assert hooks.received[-1].body["transfer_id"] == "tr-20261101-0001abcd"
    events = [e for e, _ in await audit_events(store, "tr-20261101-0001abcd")]
    assert events == ["notification_failed", "notification_sent", "work_delivered"]
    assert (await drain({"notify": notifier}, store)).delivered == 0, "delivered once"
    assert len(hooks.received) == 3


async def test_a_notice_the_channel_refuses_is_not_queued(store: Store,
                                                          hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}), sleep=FakeSleep())
    hooks.fail_next(1, status=404)
    [delivery] = await notifier.send(notice())
    assert not delivery.delivered and not delivery.retryable and delivery.attempts == 1
    assert await store.work("tr-20261101-0001abcd") == []


async def test_retry_after_dates_and_cap(store: Store, hooks: WebhookReceiver) -> None:
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}), sleep=sleep)
    hooks.fail_next(1, status=429, retry_after=email.utils.formatdate(time.time() + 30,
                                                                      usegmt=True))
    hooks.fail_next(1, status=503, retry_after=3600)
    [delivery] = await notifier.send(notice())
    assert delivery.delivered and delivery.attempts == 3
    assert 25 <= sleep.delays[0] <= 31
    assert sleep.delays[1] == MAX_RETRY_AFTER


async def test_client_errors_are_not_retried(store: Store, hooks: WebhookReceiver) -> None:
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings({"kind": "slack", "name": "s",
                                                "url": hooks.url("/slack")}), sleep=sleep)
    hooks.fail_next(1, status=404)
    [delivery] = await notifier.send(notice())
    assert not delivery.delivered and delivery.attempts == 1 and delivery.status == 404
    assert sleep.delays == [] and len(hooks.received) == 1


async def test_timeout_is_retried(store: Store, hooks: WebhookReceiver) -> None:
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}, timeout=0.2),
                               sleep=sleep)
    hooks.delay_next(1, 2.0)
    [delivery] = await notifier.send(notice())
    assert delivery.delivered and delivery.attempts == 2 and len(sleep.delays) == 1


async def test_dead_channel_is_recorded_without_its_url(
        store: Store, hooks: WebhookReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_path = "/services/T0001/B0002/SeCrEtWeBhOoKkEy"
    dead = f"http://127.0.0.1:{free_port()}{secret_path}?sig=SiGnAtUrE"
    sleep = FakeSleep()
    notifier = WebhookNotifier(store, settings(
        {"kind": "slack", "name": "dead", "url": dead},
        {"kind": "teams", "name": "alive", "url": hooks.url("/teams?sig=AlIvEsIg")}),
        sleep=sleep)
    deliveries = await notifier.send(notice(outcome="FAILED"))
    by_name = {d.channel: d for d in deliveries}
    assert by_name["alive"].delivered
    assert not by_name["dead"].delivered and by_name["dead"].attempts == 3
    assert by_name["dead"].error is not None
    assert "ConnectionRefusedError" in by_name["dead"].error
    assert len(sleep.delays) == 2

    events = await audit_events(store, "tr-20261101-0001abcd")
    failed = [d for e, d in events if e == "notification_failed"]
    assert [d["channel"] for d in failed] == ["dead"]
    assert failed[0]["status"] is None
    everything = json.dumps(events) + caplog.text + repr(deliveries)
    for secret in ("SeCrEtWeBhOoKkEy", "SiGnAtUrE", "AlIvEsIg", "127.0.0.1:"):
        assert secret not in everything
    assert "dead" in caplog.text


async def test_started_only_when_asked(store: Store, hooks: WebhookReceiver) -> None:
    channel = {"kind": "webhook", "name": "w", "url": hooks.url("/hook")}
    assert await WebhookNotifier(store, settings(channel)).send(notice(outcome="STARTED")) == []
    assert hooks.received == []
    [delivery] = await WebhookNotifier(store, settings(channel, on_start=True)).send(
        notice(outcome="STARTED"))
    assert delivery.delivered
    assert hooks.received[0].body["event"] == "transfer.started"


# --- the workflow's port ----------------------------------------------------------------


async def test_notify_port_builds_the_notice_from_the_store(
        store: Store, hooks: WebhookReceiver) -> None:
    tid = "tr-20261101-00ff00ff"
    now = time.time()
    await store.create_transfer(TransferRecord(
        transfer_id=tid, requester="carol", sources=["s3://b/k/"], destination="acme:in/",
        created_at=now - 30, status="RUNNING", tickets={"user": "RITM9", "audit": "CHG9"},
        error={"type": "VerificationError", "message": "checksum mismatch"}))
    await store.upsert_file(tid, FileRecord(source="s3://b/k/1", destination="in/1", size=5,
                                            status="DELIVERED", sha256=SHA,
                                            verified_by="server-sha256"))
    await store.upsert_file(tid, FileRecord(source="s3://b/k/2", destination="in/2", size=7,
                                            status="FAILED"))
    notifier = WebhookNotifier(store, settings(
        {"kind": "webhook", "name": "w", "url": hooks.url("/hook")},
        ticket_link="https://sn.example/nav?n={number}"), clock=lambda: now)
    await notifier.notify(tid, "carol", "FAILED", f"{tid} failed: VerificationError")
    await notifier.notify(tid, "carol", "FAILED", f"{tid} failed: VerificationError")
    [got] = hooks.received
    body = got.body
    assert body["transfer_id"] == tid and body["outcome"] == "FAILED"
    assert body["requester"] == "carol" and body["destination"] == "acme:in/"
    assert body["text"] == f"{tid} failed: VerificationError"
    assert body["files"] == [{"destination": "in/1", "size": 5, "sha256": SHA,
                              "verified_by": "server-sha256"}]
    assert body["tickets"] == {"user": "RITM9", "audit": "CHG9"}
    assert body["ticket_links"] == {"RITM9": "https://sn.example/nav?n=RITM9",
                                    "CHG9": "https://sn.example/nav?n=CHG9"}
    assert body["duration"] == pytest.approx(30)
    assert body["error"] == {"type": "VerificationError", "message": "checksum mismatch"}


async def test_notify_port_never_raises(store: Store, hooks: WebhookReceiver) -> None:
    notifier = WebhookNotifier(store, settings({"kind": "webhook", "name": "w",
                                                "url": hooks.url("/hook")}))
    await notifier.notify("tr-unknown", "dave", "EXPLODED", "?")  # not an outcome
    assert hooks.received == []
    [(event, detail)] = await audit_events(store, "tr-unknown")
    assert event == "notification_failed" and detail["outcome"] == "EXPLODED"
    # a transfer the store does not know yet still gets its message
    await notifier.notify("tr-unknown", "dave", "CANCELLED", "tr-unknown was cancelled")
    assert hooks.received[0].body["text"] == "tr-unknown was cancelled"


# --- the receiver and helpers -----------------------------------------------------------


def test_receiver_lifecycle_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    receiver = WebhookReceiver().start()
    url = receiver.url("x")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/x")
    receiver.fail_next(1, status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    receiver.stop()
    receiver.stop()  # idempotent
    assert set(threading.enumerate()) <= before
    with pytest.raises(RuntimeError):
        receiver.url("/")


def test_human_formats() -> None:
    assert human_size(0) == "0 B" and human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024**4) == "5.0 TiB"
    assert human_duration(None) == "–" and human_duration(2.25) == "2.2 s"
    assert human_duration(3725) == "1 h 2 min 5 s"
