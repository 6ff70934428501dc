"""``servicenow:`` settings: instance, credentials, ticket fields, templates, retries.

::

    servicenow:
      instance_url: https://acme.service-now.com
      username: svc_fileferry
      password: "${SERVICENOW_PASSWORD}"
      default_assignment_group: File Transfer Ops
      auth: basic                     # or oauth_password / oauth_client_credentials
      # client_id: ...; client_secret: "${SERVICENOW_CLIENT_SECRET}"
      user_ticket_urgency: 2          # P4 at impact 3
      audit_ticket_urgency: 3         # P5 at impact 3
      impact: 3
      audit_close_state: resolved     # or closed (needs itil_admin)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from fileferry.integrations.notify import human_duration, human_size

__all__ = ["DEFAULT_CLOSE_NOTES", "DEFAULT_DESCRIPTION", "DEFAULT_SHORT_DESCRIPTION",
           "ServiceNowSettings", "jinja_env"]

DEFAULT_SHORT_DESCRIPTION = (
    "FileFerry{% if role == 'audit' %} audit{% endif %}: {{ files_total }} file(s) "
    "({{ bytes_total | filesize }}) to {{ destination }} for {{ requester }}")
DEFAULT_DESCRIPTION = """\
FileFerry transfer {{ transfer_id }}
Requester: {{ requester }}
Destination: {{ destination }}
Files: {{ files_total }} ({{ bytes_total | filesize }}, {{ bytes_total }} bytes)
Sources:
{% for s in sources %}- {{ s }}
{% endfor %}{% if role == 'audit' %}Policy: {{ policy }}
{% if approver %}Approved by: {{ approver }}
{% endif %}{% endif %}"""
DEFAULT_CLOSE_NOTES = """\
{% if outcome == 'SUCCEEDED' %}FileFerry transfer {{ transfer_id }} delivered \
{{ files | length }} file(s) ({{ bytes_total | filesize }}), each verified.\
{% else %}FileFerry transfer {{ transfer_id }} {{ outcome | lower }}\
{% if error %}: {{ error }}{% endif %}.{% endif %}"""


def jinja_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                               keep_trailing_newline=False)
    env.filters["filesize"] = human_size
    env.filters["duration"] = human_duration
    return env


_ENV = jinja_env()

# Success / failure close codes when none is configured, per table (the emulator and a
# fresh instance accept these; legacy instances may want "Solved (Permanently)").
DEFAULT_CLOSE_CODES: dict[str, tuple[str, str]] = {
    "incident": ("Solution provided", "No resolution provided"),
    "change_request": ("successful", "unsuccessful"),
}


class ServiceNowSettings(BaseModel):
    # hide_input_in_errors: a rejected password must not appear in the error message
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    instance_url: str
    username: str | None = None
    password: SecretStr | None = None
    default_assignment_group: str | None = None
    user_ticket_urgency: int = Field(2, ge=1, le=3)
    audit_ticket_urgency: int = Field(3, ge=1, le=3)
    impact: int = Field(3, ge=1, le=3)
    auth: Literal["basic", "oauth_password", "oauth_client_credentials"] = "basic"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    table: Literal["incident", "change_request"] = "incident"
    audit_close_state: Literal["resolved", "closed"] = "resolved"
    # None: "Solution provided" / "No resolution provided" (incident),
    # "successful" / "unsuccessful" (change_request)
    close_code: str | None = None
    failure_close_code: str | None = None
    close_notes_template: str = DEFAULT_CLOSE_NOTES
    short_description_template: str = DEFAULT_SHORT_DESCRIPTION
    description_template: str = DEFAULT_DESCRIPTION
    timeout: float = Field(10.0, gt=0, le=300)
    attempts: int = Field(5, ge=1, le=20)
    max_retry_after: float = Field(60.0, ge=0, le=3600)
    breaker_threshold: int = Field(5, ge=1)  # consecutive failed attempts that open it
    breaker_cooldown: float = Field(30.0, ge=0)  # seconds it stays open
    # how long `fileferry transfer` waits for ticket work queued during an outage
    flush_timeout: float = Field(30.0, ge=0, le=3600)
    verify_tls: bool = True
    ca_file: Path | None = None

    @field_validator("instance_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("instance_url must be an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("close_notes_template", "short_description_template",
                     "description_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            _ENV.from_string(value)
        except TemplateError as exc:
            raise ValueError(f"template: {exc}") from None
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ServiceNowSettings:
        if self.auth in ("basic", "oauth_password") and (not self.username
                                                         or self.password is None):
            raise ValueError(f"auth {self.auth} needs username and password")
        if self.auth.startswith("oauth") and (not self.client_id or self.client_secret is None):
            raise ValueError(f"auth {self.auth} needs client_id and client_secret")
        return self

    @property
    def success_close_code(self) -> str:
        return self.close_code or DEFAULT_CLOSE_CODES[self.table][0]

    @property
    def failed_close_code(self) -> str:
        return self.failure_close_code or DEFAULT_CLOSE_CODES[self.table][1]
