"""A transfer plan the user can confirm: which objects, where they land, who allows it.

``make_plan`` asks the policies first, with the sources as written (so a user no
policy covers learns nothing about a bucket, not even its object names), then
expands globs (``s3://b/2026-11-27/*.csv``: ``*`` also matches ``/``), resolves
prefixes and keys through the same dry run as ``fileferry transfer --dry-run``
(sizes, confined target paths, targets that exist already, the check each file
gets), and asks the policies again with the objects and the total size.

A plan's ``fingerprint`` covers what the user confirms: the sources, the
destination, and every file's source, size and target (hence the count and the
total size). ``execute_transfer`` plans again and compares fingerprints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, Field

from fileferry.config import Settings
from fileferry.console import human_size
from fileferry.endpoints.base import Source
from fileferry.endpoints.s3 import parse_s3_uri
from fileferry.errors import (
    FileFerryError,
    PolicyDenied,
    SourceNotFound,
    TransferFailed,
    UsageError,
    all_error_classes,
)
from fileferry.identity.policy import Decision, Facts, evaluate
from fileferry.identity.principal import Principal
from fileferry.identity.secrets import with_credentials
from fileferry.models import TransferResult, new_transfer_id
from fileferry.paths import split_destination
from fileferry.transfer.engine import TransferRequest, run_transfer

__all__ = ["GLOB_CHARS", "Plan", "PlannedFile", "authorize", "error_from", "expand_globs",
           "make_plan", "new_plan_id"]

log = logging.getLogger(__name__)
GLOB_CHARS = "*?["
_ERRORS = {cls.__name__: cls for cls in all_error_classes()}


def new_plan_id() -> str:
    return "pl-" + secrets.token_hex(6)


class PlannedFile(BaseModel):
    source: str
    target: str
    size: int


class Plan(BaseModel):
    """One proposed transfer, as confirmed by the user and re-checked before it runs."""

    plan_id: str
    transfer_id: str
    requester: str
    requested: list[str]
    """The sources as the user gave them (prefixes, keys, globs)."""
    sources: list[str]
    """What the transfer request carries: globs expanded to keys, the rest as given."""
    destination: str
    files: list[PlannedFile]
    total_bytes: int
    verification: str | None = None
    policy: str
    policy_warning: str | None = None
    approval_group: str | None = None
    created_at: float = Field(default_factory=time.time)

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def fingerprint(self) -> str:
        body = {"sources": self.sources, "destination": self.destination,
                "files": sorted((f.source, f.size, f.target) for f in self.files)}
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()

    def differences(self, now: Plan) -> list[str]:
        """What changed between this (confirmed) plan and ``now``, for the user."""
        out = []
        if now.count != self.count:
            out.append(f"{self.count} files then, {now.count} now")
        if now.total_bytes != self.total_bytes:
            out.append(f"{human_size(self.total_bytes)} then, {human_size(now.total_bytes)} now")
        before = {(f.source, f.size, f.target) for f in self.files}
        after = {(f.source, f.size, f.target) for f in now.files}
        if before != after and not out:
            out.append("the same count and size, but other objects or targets")
        if now.sources != self.sources or now.destination != self.destination:
            out.append("other sources or destination")
        return out

    def view(self, shown: int) -> dict[str, Any]:
        """The plan as tool results and the chat show it. Object names stay in their own
        fields: they are data, never instructions."""
        name, path = split_destination(self.destination)
        return {
            "plan_id": self.plan_id,
            "destination": self.destination,
            "sources": self.requested,
            "count": self.count,
            "total_bytes": self.total_bytes,
            "total_size": human_size(self.total_bytes),
            "files": [f.model_dump() for f in self.files[:shown]],
            "files_not_shown": max(0, self.count - shown),
            "verification": self.verification,
            "policy": self.policy,
            "policy_warning": self.policy_warning,
            "approval_required_from": self.approval_group,
            "would_create": {
                "files": f"{self.count} file(s) on {name} under {path or 'its root'}, each "
                         "written under a temporary name, verified, then renamed",
                "tickets": "a user ticket and an audit ticket",
                "transfer_id": self.transfer_id,
            },
        }


def authorize(settings: Settings, principal: Principal, sources: Sequence[str],
              destination_name: str, total: int | None, when: float) -> Decision:
    """The policies' decision for this principal (``PolicyDenied`` when none allows it)."""
    facts = Facts(user=principal.user, groups=principal.groups, sources=list(sources),
                  destination=destination_name, when=when, total_size=total)
    decision = evaluate(settings.policies, facts, server_mode=settings.sso is not None)
    if not decision.allowed:
        log.warning("agent: %s may not send to %s: %s", principal.user, destination_name,
                    decision.reason)
        raise PolicyDenied(decision.reason)
    return decision


def _glob_prefix(text: str) -> str:
    """A glob source up to its first wildcard (what the policies see before listing)."""
    cut = min((i for i, c in enumerate(text) if c in GLOB_CHARS), default=len(text))
    return text[:cut]


async def expand_globs(source: Source, requested: Sequence[str]) -> list[str]:
    """Globs become the keys they match (sorted); other sources stay as given."""
    out: list[str] = []
    for text in requested:
        uri = parse_s3_uri(text)
        if any(c in uri.bucket for c in GLOB_CHARS):
            raise UsageError(f"{text}: the bucket name cannot be a pattern")
        if not any(c in uri.key for c in GLOB_CHARS):
            out.append(text)
            continue
        found = await source.list(uri.bucket, _glob_prefix(uri.key))
        keys = sorted(o.path for o in found if fnmatchcase(o.path, uri.key))
        if not keys:
            raise SourceNotFound(f"no objects match {text}; check the pattern "
                                 "(* also matches /)")
        out.extend(f"s3://{uri.bucket}/{key}" for key in keys)
    return list(dict.fromkeys(out))


def error_from(result: TransferResult) -> FileFerryError:
    """The error of a refused or failed dry run, as its class in the tree."""
    error = result.error or {}
    cls = _ERRORS.get(error.get("type", ""), TransferFailed)
    return cls(error.get("message") or "the plan could not be made")


async def make_plan(settings: Settings, principal: Principal, requested: Sequence[str],
                    destination: str, *, source: Source,
                    clock: Callable[[], float] = time.time,
                    transfer_id: str | None = None) -> Plan:
    """Plan the transfer, or raise what refuses it (``PolicyDenied`` first)."""
    if not requested:
        raise UsageError("give at least one source, e.g. s3://bucket/prefix/")
    name, _ = split_destination(destination)
    for text in requested:
        parse_s3_uri(text)
    authorize(settings, principal, [_glob_prefix(s) for s in requested], name, None, clock())
    sources = await expand_globs(source, requested)
    tid = transfer_id or new_transfer_id()
    if name in settings.destinations:  # else the dry run refuses it (UnknownDestination)
        # credentials are fetched only after the policy allowed the request, as for a dry run
        settings_now = await asyncio.to_thread(with_credentials, settings, name)
    else:
        settings_now = settings
    result = await run_transfer(settings_now, TransferRequest(
        sources=sources, destination=destination, requester=principal.user, dry_run=True,
        transfer_id=tid), source=source)
    if result.status != "SUCCEEDED":
        raise error_from(result)
    files = [PlannedFile(source=f.source, target=f.destination, size=f.size)
             for f in result.files]
    total = sum(f.size for f in files)
    decision = authorize(settings, principal, [f.source for f in files], name, total, clock())
    warning = None if decision.rule else (
        f"{decision.label}; configure sso: and policies: to restrict who may send what")
    return Plan(plan_id=new_plan_id(), transfer_id=tid, requester=principal.user,
                requested=list(requested), sources=sources, destination=destination,
                files=files, total_bytes=total,
                verification=result.files[0].verified_by if result.files else None,
                policy=decision.label, policy_warning=warning,
                approval_group=decision.approval.group if decision.approval else None,
                created_at=clock())
