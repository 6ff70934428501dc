"""Teams, Slack and generic JSON webhook notifications.

Configured under ``notifications:`` (``${ENV}`` is expanded by ``config.py``
before validation, so webhook URLs stay out of the file)::

    notifications:
      on_start: false          # also announce a transfer when it starts
      timeout: 10              # seconds per HTTP attempt
      attempts: 3              # HTTP attempts per channel and event
      ticket_link: "https://acme.service-now.com/nav_to.do?uri=task.do?sysparm_query=number={number}"
      channels:
        - {name: ops-teams, kind: teams, url: "${TEAMS_WEBHOOK_URL}"}
        - {name: ops-slack, kind: slack, url: "${SLACK_WEBHOOK_URL}",
           template: "{{ transfer_id }}: {{ outcome | lower }} ({{ files | length }} files)"}
        - {name: siem, kind: webhook, url: "https://siem.example/hooks/fileferry"}

Each channel gets one message per transfer and event (``record_once`` in the
store, key ``transfer:outcome:channel``: at most once, also across re-runs and
processes). Deliveries are retried with exponential backoff and jitter on
timeouts, connection errors, 408/425/429 and 5xx (a ``Retry-After`` is honoured,
up to :data:`MAX_RETRY_AFTER` seconds); other 4xx are final. Redirects are not
followed. A failed delivery never raises: it is logged and written to the
transfer's audit trail as ``notification_failed`` (``notification_sent`` on
success), never with the webhook URL, which is a secret; when the failure may
pass (timeouts, 408/425/429, 5xx) the notice is also queued in the store's
outbox, which ``fileferry resume`` and the server deliver later
(:mod:`fileferry.integrations.outbox`).

Size limits, and what is cut to stay inside them:

* Slack (Block Kit): at most 50 blocks, 3000 characters per section text, 2000
  per field, 10 fields per section, 150 per header; the file list shows
  :data:`SLACK_MAX_FILES` files and at most 3000 characters, then "… and N more".
* Teams (Adaptive Card 1.4 in a ``message`` envelope): a message may be 28 KB;
  the card shows :data:`TEAMS_MAX_FILES` files and is kept under
  :data:`TEAMS_MAX_BYTES` bytes by showing fewer files.
* Generic webhook: the :class:`Notice` as JSON with at most
  :data:`WEBHOOK_MAX_FILES` files (``files_total`` / ``files_omitted`` tell the rest).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import random
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Literal
from urllib.parse import quote, urlsplit

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from fileferry.errors import ConfigError, DestinationError, EndpointUnavailable
from fileferry.integrations.http import retry_after_seconds
from fileferry.store import OutboxEntry, Store

__all__ = [
    "MAX_RETRY_AFTER",
    "SLACK_MAX_FILES",
    "TEAMS_MAX_BYTES",
    "TEAMS_MAX_FILES",
    "WEBHOOK_MAX_FILES",
    "ChannelKind",
    "ChannelSettings",
    "Delivery",
    "HttpResponse",
    "Notice",
    "NoticeError",
    "NoticeFile",
    "NotificationsSettings",
    "Outcome",
    "Transport",
    "WebhookNotifier",
    "build_payload",
    "default_text",
    "render_text",
    "slack_payload",
    "teams_payload",
    "urllib_transport",
    "webhook_payload",
]

log = logging.getLogger(__name__)

Outcome = Literal["SUCCEEDED", "FAILED", "STARTED", "CANCELLED"]
ChannelKind = Literal["teams", "slack", "webhook"]
Sleep = Callable[[float], Awaitable[None]]

SLACK_MAX_FILES = 20
SLACK_SECTION_CHARS = 3000
SLACK_FIELD_CHARS = 2000
SLACK_HEADER_CHARS = 150
TEAMS_MAX_FILES = 25
TEAMS_MAX_BYTES = 24_000  # Teams refuses messages over 28 KB; leave room for its envelope
TEXT_MAX_CHARS = 3000
WEBHOOK_MAX_FILES = 1000
MAX_RETRY_AFTER = 60.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TITLES: dict[str, str] = {"SUCCEEDED": "Transfer delivered", "FAILED": "Transfer failed",
                           "STARTED": "Transfer started", "CANCELLED": "Transfer cancelled"}
_TEAMS_COLORS = {"SUCCEEDED": "Good", "FAILED": "Attention", "STARTED": "Accent",
                 "CANCELLED": "Warning"}
_SLACK_EMOJI = {"SUCCEEDED": ":white_check_mark:", "FAILED": ":x:", "STARTED": ":arrow_forward:",
                "CANCELLED": ":no_entry_sign:"}


# --- settings -------------------------------------------------------------------------


class _Settings(BaseModel):
    # hide_input_in_errors: a rejected URL (a secret) must not appear in the error message
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ChannelSettings(_Settings):
    kind: ChannelKind
    url: SecretStr
    name: str
    template: str | None = None
    verify_tls: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"channel name {value!r} may hold only letters, digits, '_', '.' "
                             "and '-'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook URL must be an http:// or https:// URL with a host")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                _jinja().from_string(value)
            except TemplateError as exc:
                raise ValueError(f"template: {exc}") from None
        return value


class NotificationsSettings(_Settings):
    channels: list[ChannelSettings] = Field(default_factory=list)
    on_start: bool = False
    timeout: float = Field(10.0, gt=0, le=300)
    attempts: int = Field(3, ge=1, le=10)
    # A link to a ticket, "{number}" replaced by its number (e.g. a ServiceNow nav_to URL).
    ticket_link: str | None = None

    @field_validator("ticket_link")
    @classmethod
    def _ticket_link(cls, value: str | None) -> str | None:
        if value is not None and "{number}" not in value:
            raise ValueError("ticket_link must contain {number}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsSettings:
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique: {', '.join(dupes)}")
        return self


# --- the message -----------------------------------------------------------------------


class NoticeFile(BaseModel):
    destination: str
    size: int
    sha256: str | None = None
    verified_by: str | None = None


class NoticeError(BaseModel):
    type: str
    message: str = ""


class Notice(BaseModel):
    """What a notification says, whatever the channel."""

    model_config = ConfigDict(extra="forbid")

    transfer_id: str
    outcome: Outcome
    requester: str = ""
    destination: str = ""
    text: str = ""  # the workflow's one-line summary; default_text() when empty
    files: list[NoticeFile] = Field(default_factory=list)
    tickets: dict[str, str] = Field(default_factory=dict)  # role -> number
    ticket_links: dict[str, str] = Field(default_factory=dict)  # number -> URL
    duration: float | None = None  # seconds
    error: NoticeError | None = None

    @property
    def bytes_total(self) -> int:
        return sum(f.size for f in self.files)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_text(notice: Notice) -> str:
    if notice.text:
        return notice.text
    where = f" to {notice.destination}" if notice.destination else ""
    if notice.outcome == "SUCCEEDED":
        return (f"{notice.transfer_id}: delivered {len(notice.files)} file(s) "
                f"({human_size(notice.bytes_total)}){where}, verified")
    if notice.outcome == "FAILED":
        why = f": {notice.error.type}: {notice.error.message}" if notice.error else ""
        return f"{notice.transfer_id}{where} failed{why}"
    if notice.outcome == "STARTED":
        return f"{notice.transfer_id}{where} started"
    return f"{notice.transfer_id}{where} was cancelled"


def _jinja() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["filesize"] = human_size
    env.filters["duration"] = human_duration
    return env


_ENV = _jinja()


def render_text(notice: Notice, template: str | None) -> str:
    """The message's text: the template rendered over the notice, or :func:`default_text`.

    The template sees the notice's fields (``transfer_id``, ``outcome``, ``files``, ...),
    ``text`` (the default text), ``bytes_total``, ``notice`` itself, and the filters
    ``filesize`` and ``duration``. Raises jinja2.TemplateError when it fails.
    """
    text = default_text(notice)
    if template is None:
        return text
    context: dict[str, Any] = notice.model_dump(mode="json")
    context.update(text=text, bytes_total=notice.bytes_total, notice=notice)
    return _ENV.from_string(template).render(context).strip() or text


def _ticket_items(notice: Notice) -> list[tuple[str, str, str | None]]:
    return [(role, number, notice.ticket_links.get(number))
            for role, number in notice.tickets.items()]


# --- Teams ------------------------------------------------------------------------------


def _teams_md(text: str) -> str:
    # Adaptive Card markdown: keep names with * or _ literal
    return re.sub(r"([\\*_\[\]`])", r"\\\1", text)


def teams_payload(notice: Notice, text: str, *, max_files: int = TEAMS_MAX_FILES,
                  max_bytes: int = TEAMS_MAX_BYTES) -> dict[str, Any]:
    """An Adaptive Card (1.4) in the envelope Teams Workflows and incoming webhooks take."""
    shown = min(len(notice.files), max_files)
    while True:
        payload = _teams_card(notice, text, shown)
        if shown == 0 or len(json.dumps(payload).encode()) <= max_bytes:
            return payload
        shown //= 2


def _teams_card(notice: Notice, text: str, shown: int) -> dict[str, Any]:
    facts = [{"title": "Transfer", "value": _teams_md(notice.transfer_id)},
             {"title": "Outcome", "value": notice.outcome}]
    if notice.requester:
        facts.append({"title": "Requester", "value": _teams_md(notice.requester)})
    if notice.destination:
        facts.append({"title": "Destination", "value": _teams_md(notice.destination)})
    if notice.files or notice.outcome == "SUCCEEDED":
        facts.append({"title": "Files",
                      "value": f"{len(notice.files)} ({human_size(notice.bytes_total)})"})
    if notice.duration is not None:
        facts.append({"title": "Duration", "value": human_duration(notice.duration)})
    for role, number, link in _ticket_items(notice):
        value = f"[{_teams_md(number)}]({link})" if link else _teams_md(number)
        facts.append({"title": f"Ticket ({role})", "value": value})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _TITLES[notice.outcome], "size": "Large",
         "weight": "Bolder", "color": _TEAMS_COLORS[notice.outcome], "wrap": True},
        {"type": "TextBlock", "text": _cut(_teams_md(text), TEXT_MAX_CHARS), "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    if notice.error is not None:
        body.append({"type": "TextBlock", "color": "Attention", "wrap": True,
                     "text": _cut(f"**{_teams_md(notice.error.type)}**: "
                                  f"{_teams_md(notice.error.message)}", TEXT_MAX_CHARS)})
    if notice.files:
        body.append({"type": "TextBlock", "text": "Files", "weight": "Bolder",
                     "separator": True})
        file_facts = []
        for f in notice.files[:shown]:
            value = human_size(f.size)
            if f.sha256:
                value += f" · sha256 {f.sha256}"
            if f.verified_by:
                value += f" · {f.verified_by}"
            file_facts.append({"title": _cut(_teams_md(f.destination), 300), "value": value})
        if file_facts:
            body.append({"type": "FactSet", "facts": file_facts})
        if shown < len(notice.files):
            body.append({"type": "TextBlock", "isSubtle": True, "wrap": True,
                         "text": f"… and {len(notice.files) - shown} more file(s): "
                                 f"fileferry history {_teams_md(notice.transfer_id)}"})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    actions = [{"type": "Action.OpenUrl", "title": f"{number} ({role})", "url": link}
               for role, number, link in _ticket_items(notice) if link]
    if actions:
        card["actions"] = actions
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                             "contentUrl": None, "content": card}]}


# --- Slack ------------------------------------------------------------------------------


def _slack_esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notice: Notice, text: str, *,
                  max_files: int = SLACK_MAX_FILES) -> dict[str, Any]:
    """An incoming-webhook message: Block Kit ``blocks`` and a plain ``text`` fallback."""
    title = _TITLES[notice.outcome]
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _cut(title, SLACK_HEADER_CHARS), "emoji": True}},
        {"type": "section",
         "text": {"type": "mrkdwn", "text": _cut(_slack_esc(text), SLACK_SECTION_CHARS)}},
    ]
    fields = [("Transfer", f"`{_slack_esc(notice.transfer_id)}`"), ("Outcome", notice.outcome)]
    if notice.requester:
        fields.append(("Requester", _slack_esc(notice.requester)))
    if notice.destination:
        fields.append(("Destination", _slack_esc(notice.destination)))
    if notice.files or notice.outcome == "SUCCEEDED":
        fields.append(("Files", f"{len(notice.files)} ({human_size(notice.bytes_total)})"))
    if notice.duration is not None:
        fields.append(("Duration", human_duration(notice.duration)))
    tickets = [f"<{link}|{_slack_esc(number)}> ({role})" if link
               else f"{_slack_esc(number)} ({role})"
               for role, number, link in _ticket_items(notice)]
    if tickets:
        fields.append(("Tickets", ", ".join(tickets)))
    blocks.append({"type": "section",
                   "fields": [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}", SLACK_FIELD_CHARS)}
                              for k, v in fields[:10]]})
    if notice.error is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"*Error* `{_slack_esc(notice.error.type)}`\n"
            f"```{_slack_esc(notice.error.message)}```", SLACK_SECTION_CHARS)}})
    if notice.files:
        lines = ["*Files*"]
        budget = SLACK_SECTION_CHARS - 60  # room for the "… and N more" line
        shown = 0
        for f in notice.files[:max_files]:
            line = f"• `{_slack_esc(f.destination)}` {human_size(f.size)}"
            if f.sha256:
                line += f" sha256 `{f.sha256}`"
            if f.verified_by:
                line += f" ({f.verified_by})"
            if sum(len(x) + 1 for x in lines) + len(line) > budget:
                break
            lines.append(line)
            shown += 1
        if shown < len(notice.files):
            lines.append(f"… and {len(notice.files) - shown} more file(s)")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"FileFerry · `{_slack_esc(notice.transfer_id)}`"}]})
    fallback = _cut(f"{_SLACK_EMOJI[notice.outcome]} {title}: {text}", SLACK_SECTION_CHARS)
    return {"text": fallback, "blocks": blocks}


# --- generic JSON -----------------------------------------------------------------------


def webhook_payload(notice: Notice, text: str, *,
                    max_files: int = WEBHOOK_MAX_FILES) -> dict[str, Any]:
    """The notice as JSON, its text rendered, with ``event`` and totals added."""
    data = notice.model_dump(mode="json")
    data["files"] = data["files"][:max_files]
    data.update(event=f"transfer.{notice.outcome.lower()}", text=text,
                files_total=len(notice.files), files_omitted=len(notice.files) - len(data["files"]),
                bytes_total=notice.bytes_total)
    return data


def build_payload(kind: ChannelKind, notice: Notice, text: str) -> dict[str, Any]:
    if kind == "teams":
        return teams_payload(notice, text)
    if kind == "slack":
        return slack_payload(notice, text)
    return webhook_payload(notice, text)


# --- HTTP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    retry_after: float | None = None
    body: str = ""


# (url, body, timeout, verify_tls) -> response; runs in a worker thread. Raises OSError
# (connection refused, timeouts, TLS) or http.client.HTTPException for network failures.
Transport = Callable[[str, bytes, float, bool], HttpResponse]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: never resend the payload elsewhere."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None


def urllib_transport(url: str, body: bytes, timeout: float, verify_tls: bool) -> HttpResponse:
    """POST ``body`` as JSON with the standard library (honours HTTPS_PROXY / NO_PROXY)."""
    context = ssl.create_default_context()
    if not verify_tls:  # an explicit per-channel opt-out, said out loud every time
        log.warning("TLS certificate verification is OFF for a notification channel "
                    "(verify_tls: false); anyone on the path can read the message")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(_NoRedirect(),
                                         urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": "FileFerry"})
    try:
        with opener.open(request, timeout=timeout) as response:
            text = response.read(2048).decode("utf-8", "replace")
            return HttpResponse(int(response.status), None, text)
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(2048).decode("utf-8", "replace") if exc.fp is not None else ""
            return HttpResponse(exc.code, retry_after_seconds(exc.headers.get("Retry-After"),
                                                       time.time()), text)


def _scrub(message: str, url: str) -> str:
    """The message without the URL or the secret parts of it (path, query)."""
    parts = urlsplit(url)
    for secret in (url, parts.path + ("?" + parts.query if parts.query else ""),
                   parts.query, parts.path):
        if len(secret) > 1:
            message = message.replace(secret, "***")
    return message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) \
            else f"URLError: {reason}"
    return f"{type(exc).__name__}: {exc}"


# --- the notifier -----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What happened to one channel's message for one event."""

    channel: str
    kind: str
    outcome: str
    delivered: bool
    duplicate: bool = False  # sent (or tried) before: nothing done this time
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    retryable: bool = False  # failed in a way a later attempt may not (5xx, 429, timeout)


class WebhookNotifier:
    """The workflow's ``Notifier`` port over Teams, Slack and generic webhooks."""

    def __init__(self, store: Store, settings: NotificationsSettings, *,
                 transport: Transport = urllib_transport, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._store = store
        self._settings = settings
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    async def notify(self, transfer_id: str, requester: str, outcome: str, text: str) -> None:
        """The port: a notice built from the store (files, tickets, duration, error)."""
        try:
            notice = await self.notice_for(transfer_id, outcome, requester=requester, text=text)
        except Exception as exc:
            log.warning("notification for %s %s not sent: %s", transfer_id, outcome,
                        _describe(exc))
            await self._audit(transfer_id, "notification_failed",
                              {"outcome": outcome, "error": f"notice: {_describe(exc)}"})
            return
        await self.send(notice)

    async def notice_for(self, transfer_id: str, outcome: str, *, requester: str = "",
                         text: str = "") -> Notice:
        record = await self._store.get_transfer(transfer_id)
        files = [f for f in await self._store.get_files(transfer_id) if f.status == "DELIVERED"]
        data: dict[str, Any] = {"transfer_id": transfer_id, "outcome": outcome,
                                "requester": requester, "text": text,
                                "files": [NoticeFile(destination=f.destination, size=f.size,
                                                     sha256=f.sha256, verified_by=f.verified_by)
                                          for f in files]}
        if record is not None:
            data["requester"] = requester or record.requester
            data["destination"] = record.destination
            data["tickets"] = dict(record.tickets)
            data["duration"] = max(0.0, self._clock() - record.created_at)
            if record.error:
                data["error"] = NoticeError(type=str(record.error.get("type", "Error")),
                                            message=str(record.error.get("message", "")))
        link = self._settings.ticket_link
        if link:
            data["ticket_links"] = {n: link.replace("{number}", quote(n, safe=""))
                                    for n in data.get("tickets", {}).values()}
        return Notice.model_validate(data)

    async def send(self, notice: Notice) -> list[Delivery]:
        """Send ``notice`` to every channel (concurrently); never raises for a failed one."""
        if notice.outcome == "STARTED" and not self._settings.on_start:
            return []
        return list(await asyncio.gather(*(self._send_one(channel, notice)
                                           for channel in self._settings.channels)))

    async def _send_one(self, channel: ChannelSettings, notice: Notice) -> Delivery:
        base = {"channel": channel.name, "kind": channel.kind, "outcome": notice.outcome}
        url = channel.url.get_secret_value()
        try:
            first, _ = await self._store.record_once(
                "notification", f"{notice.transfer_id}:{notice.outcome}:{channel.name}", base)
            if not first:
                return Delivery(channel.name, channel.kind, notice.outcome, False, duplicate=True)
            try:
                text = render_text(notice, channel.template)
            except TemplateError as exc:
                log.warning("notification template of channel %s failed (%s): default text",
                            channel.name, exc)
                text = default_text(notice)
            body = json.dumps(build_payload(channel.kind, notice, text)).encode()
            delivery = await self._deliver(channel, url, body, notice.outcome)
        except Exception as exc:
            delivery = Delivery(channel.name, channel.kind, notice.outcome, False,
                                error=_scrub(_describe(exc), url))
        if delivery.delivered:
            log.info("notification %s for %s sent to %s", notice.outcome, notice.transfer_id,
                     channel.name)
            await self._audit(notice.transfer_id, "notification_sent",
                              {**base, "attempts": delivery.attempts, "status": delivery.status})
        else:
            log.warning("notification %s for %s to channel %s failed after %d attempt(s): %s",
                        notice.outcome, notice.transfer_id, channel.name, delivery.attempts,
                        delivery.error)
            await self._audit(notice.transfer_id, "notification_failed",
                              {**base, "attempts": delivery.attempts, "status": delivery.status,
                               "error": delivery.error, "queued": delivery.retryable})
            if delivery.retryable:  # the outbox tries again later (resume, the server)
                await self._queue(channel, notice)
        return delivery

    async def _queue(self, channel: ChannelSettings, notice: Notice) -> None:
        try:
            await self._store.enqueue_work(
                notice.transfer_id, f"notify:{notice.outcome}:{channel.name}", "notify",
                {"channel": channel.name, "notice": notice.model_dump(mode="json")},
                self._clock())
        except Exception as exc:
            log.warning("could not queue the notification for %s: %s", notice.transfer_id,
                        _describe(exc))

    async def deliver(self, transfer_id: str, entry: OutboxEntry) -> None:
        """The outbox's retry of a queued notification (tickets refreshed from the store):
        EndpointUnavailable when it fails again in a way that may pass, DestinationError
        when it never will."""
        channel = next((c for c in self._settings.channels
                        if c.name == entry.payload["channel"]), None)
        if channel is None:
            raise ConfigError(f"notification channel {entry.payload['channel']!r} is no "
                              "longer configured")
        notice = Notice.model_validate(entry.payload["notice"])
        fresh = await self.notice_for(transfer_id, notice.outcome)
        notice = notice.model_copy(update={"tickets": fresh.tickets,
                                           "ticket_links": fresh.ticket_links})
        url = channel.url.get_secret_value()
        try:
            text = render_text(notice, channel.template)
        except TemplateError:
            text = default_text(notice)
        body = json.dumps(build_payload(channel.kind, notice, text)).encode()
        delivery = await self._deliver(channel, url, body, notice.outcome)
        if not delivery.delivered:
            kind = EndpointUnavailable if delivery.retryable else DestinationError
            raise kind(f"notification to channel {channel.name}: {delivery.error}")
        await self._audit(transfer_id, "notification_sent",
                          {"channel": channel.name, "kind": channel.kind,
                           "outcome": notice.outcome, "attempts": delivery.attempts,
                           "status": delivery.status, "queued": True})

    async def _deliver(self, channel: ChannelSettings, url: str, body: bytes,
                       outcome: str) -> Delivery:
        attempts = self._settings.attempts
        status: int | None = None
        error = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                response = await asyncio.to_thread(self._transport, url, body,
                                                   self._settings.timeout, channel.verify_tls)
            except (OSError, http.client.HTTPException) as exc:
                status, error, retryable = None, _describe(exc), True
            else:
                status, retry_after = response.status, response.retry_after
                if 200 <= status < 300:
                    return Delivery(channel.name, channel.kind, outcome, True,
                                    attempts=attempt, status=status)
                detail = " ".join(response.body.split())[:200]
                error = f"HTTP {status}" + (f": {detail}" if detail else "")
                retryable = status in (408, 425, 429) or status >= 500
            if not retryable or attempt == attempts:
                return Delivery(channel.name, channel.kind, outcome, False, attempts=attempt,
                                status=status, error=_scrub(error, url), retryable=retryable)
            await self._sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _audit(self, transfer_id: str, event: str, detail: Mapping[str, Any]) -> None:
        try:
            await self._store.append_audit(transfer_id, event, detail, self._clock())
        except Exception as exc:
            log.warning("could not record %s for %s: %s", event, transfer_id, _describe(exc))
