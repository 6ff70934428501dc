"""The ``routes:`` section and PGP settings, validated when the configuration loads.

A route names a source (bucket, prefix, include/exclude globs, minimum age),
a destination ``NAME:PATH``, options (naming, encryption, trigger file,
post-delivery actions, the identity it runs as) and triggers (a cron
schedule with its time zone, S3 events). Every error names the key.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from fileferry.automation.naming import FILE_FIELDS, TRIGGER_FIELDS, check_template
from fileferry.timezones import TimeZoneName

__all__ = ["PgpSettings", "PostDeliverySettings", "RouteOptions", "RouteSettings",
           "RouteSource", "S3EventSettings", "ScheduleSettings", "TriggerFileSettings",
           "TriggerSettings", "check_routes", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"2h"`` or ``"1d"``; ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: write seconds, or e.g. 90s, 15m, 2h, 1d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PgpSettings(_Model):
    """Encrypt every file to the partner's OpenPGP key (GnuPG), optionally signed by ours."""

    recipient_key: str | None = None
    """The partner's public key, ASCII-armored (``${ENV}`` works)."""
    recipient_key_file: Path | None = None
    recipient_key_secret: str | None = None
    """A Secrets Manager secret (ARN or name; ``NAME#field`` for one field of a JSON
    secret) holding the armored public key, read when a file is encrypted."""
    signing_key: SecretStr | None = None
    """Our private key, ASCII-armored, to sign with (use ``${ENV}``)."""
    signing_key_file: Path | None = None
    signing_key_secret: str | None = None
    """Our armored private key in Secrets Manager (as ``recipient_key_secret``)."""
    signing_passphrase: SecretStr | None = None
    armor: bool = False
    """ASCII-armored output instead of binary OpenPGP."""

    @field_validator("recipient_key_file", "signing_key_file")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _one_of_each(self) -> PgpSettings:
        given = [k for k in ("recipient_key", "recipient_key_file", "recipient_key_secret")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of recipient_key (armored text), "
                             "recipient_key_file and recipient_key_secret (Secrets Manager)")
        if self.recipient_key is not None and "BEGIN PGP PUBLIC KEY BLOCK" not in \
                self.recipient_key:
            raise ValueError("recipient_key must be an ASCII-armored public key "
                             "(-----BEGIN PGP PUBLIC KEY BLOCK-----)")
        signing = [k for k in ("signing_key", "signing_key_file", "signing_key_secret")
                   if getattr(self, k) is not None]
        if len(signing) > 1:
            raise ValueError("give at most one of signing_key, signing_key_file and "
                             "signing_key_secret")
        if self.signing_passphrase is not None and not self.signs:
            raise ValueError("signing_passphrase needs signing_key or signing_key_file")
        return self

    @property
    def signs(self) -> bool:
        return any(k is not None for k in (self.signing_key, self.signing_key_file,
                                           self.signing_key_secret))


class RouteSource(_Model):
    bucket: str = Field(min_length=3)
    prefix: str = ""
    """A folder (ending in ``/``) or ``""`` for the whole bucket; every object below it."""
    include: list[str] = Field(default_factory=lambda: ["*"])
    """Glob patterns (fnmatch; ``*`` also crosses ``/``) matched against the key below
    the prefix; an object is sent when one matches and no ``exclude`` does."""
    exclude: list[str] = Field(default_factory=list)
    min_age: float = 0.0
    """Skip objects modified less than this long ago (half-written uploads): ``15m``."""

    @field_validator("prefix")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError("an S3 prefix does not start with '/'")
        if value and not value.endswith("/"):
            raise ValueError(f"must be a folder ending in '/', e.g. {value}/")
        return value

    @field_validator("min_age", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)


class TriggerFileSettings(_Model):
    """A file written after every file of the batch is verified and renamed."""

    name: str = "{transfer_id}.done"
    content: Literal["empty", "csv", "json"] = "empty"
    """``empty`` (a ``.done``/``.ok`` marker) or a manifest: ``csv`` (name,size,sha256)
    or ``json``."""

    @field_validator("name")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value, TRIGGER_FIELDS)


class PostDeliverySettings(_Model):
    """What happens to each source object once the whole batch is verified."""

    tags: dict[str, str] = Field(default_factory=dict)
    """Added to the object's tags (existing tags are kept)."""
    archive_prefix: str | None = None
    """Copy the object to this prefix (same bucket) or ``s3://bucket/prefix/``, keeping its
    key below the route prefix."""
    delete: bool = False
    """Delete the original (after the archive copy, when both are set)."""

    @field_validator("archive_prefix")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith("/"):
            raise ValueError(f"must end in '/', e.g. {value}/")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_limits(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 10:
            raise ValueError("S3 keeps at most 10 tags per object")
        return value


class RouteOptions(_Model):
    naming: str | None = None
    """Remote name template (see ``naming.py``); default ``{path}``, or ``{path}.pgp``
    with encryption."""
    encryption: PgpSettings | None = None
    trigger_file: TriggerFileSettings | None = None
    post_delivery: PostDeliverySettings | None = None
    run_as: str | None = None
    """The requester the route's transfers run as (policies apply to it); default
    ``route:NAME``."""
    resend_changed: bool = True
    """Send an object again when it changed (new ETag) after it was delivered (a new file
    uploaded under the same key is a new version); false: each key is sent once, ever."""
    max_files: int = Field(default=1000, ge=1, le=10000)
    """At most this many files per run; the rest go in the next run."""

    @field_validator("naming")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value, FILE_FIELDS)

    @property
    def name_template(self) -> str:
        if self.naming is not None:
            return self.naming
        return "{path}.pgp" if self.encryption is not None else "{path}"


class ScheduleSettings(_Model):
    cron: str
    """Five fields (minute hour day month weekday) or @daily/@hourly/...."""
    timezone: TimeZoneName = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month "
                             "weekday, e.g. '0 2 * * *')")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware), in the schedule's zone.
        A time that does not exist on a DST change day runs once at the next valid time."""
        return croniter(self.cron, moment.astimezone(self.zone)).get_next(datetime)


class S3EventSettings(_Model):
    queue_url: str | None = None
    """An SQS queue receiving the bucket's ObjectCreated notifications; without it the
    prefix is listed every ``poll_interval`` seconds."""
    poll_interval: float = Field(default=60.0, gt=0)


class TriggerSettings(_Model):
    schedule: ScheduleSettings | None = None
    s3_events: bool | S3EventSettings = False

    @property
    def events(self) -> S3EventSettings | None:
        if self.s3_events is True:
            return S3EventSettings()
        return self.s3_events or None


class RouteSettings(_Model):
    source: RouteSource
    destination: str
    """``NAME:PATH`` as for ``fileferry transfer``."""
    options: RouteOptions = RouteOptions()
    triggers: TriggerSettings = TriggerSettings()

    @field_validator("destination")
    @classmethod
    def _name_path(cls, value: str) -> str:
        name, sep, _ = value.partition(":")
        if not sep or not name or "/" in name:
            raise ValueError(f"{value!r} must be NAME:PATH, e.g. acme:incoming/")
        return value

    @property
    def destination_name(self) -> str:
        return self.destination.partition(":")[0]

    @property
    def timezone(self) -> ZoneInfo:
        return self.triggers.schedule.zone if self.triggers.schedule else ZoneInfo("UTC")

    def archive_location(self) -> tuple[str, str] | None:
        """(bucket, prefix) archive copies go to, or None."""
        post = self.options.post_delivery
        if post is None or post.archive_prefix is None:
            return None
        if post.archive_prefix.startswith("s3://"):
            bucket, _, prefix = post.archive_prefix[5:].partition("/")
            return bucket, prefix
        return self.source.bucket, post.archive_prefix


def check_routes(routes: dict[str, RouteSettings], destinations: set[str]) -> None:
    """Cross-checks needing the whole file: names, known destinations. ValueError names
    the route."""
    for name, route in routes.items():
        if not ROUTE_NAME.fullmatch(name):
            raise ValueError(f"route name {name!r} may hold only letters, digits, '_', '.' "
                             "and '-'")
        if route.destination_name not in destinations:
            known = ", ".join(sorted(destinations)) or "none configured"
            raise ValueError(f"routes.{name}.destination: unknown destination "
                             f"{route.destination_name!r} (known: {known})")

