"""Policies: who may send which S3 objects to which destination, how much, and when.

Pure evaluation, no I/O: ``evaluate(policies, facts, server_mode=...)``
returns the first rule (in configuration order) that allows the transfer, or
a denial that names, for the rules that came closest, why each did not.

* A rule is for ``users`` (globs over the user id; ``*`` is everyone) or
  ``groups`` (any one shared group is enough).
* ``destinations`` are globs over destination names; ``sources`` are globs
  over ``s3://bucket/key`` where ``*`` also matches ``/``. Every source must
  match (a prefix such as ``s3://b/finance/`` is matched as written, and its
  objects are matched again once listed).
* ``max_total_size`` bounds the bytes of the whole transfer (checked once the
  objects are listed: ``facts.total_size`` None skips it).
* ``hours`` is a daily window in a time zone; ``end`` before ``start`` spans
  midnight (the part after midnight belongs to the day it started).

With no policies at all, server mode (``sso:`` configured) denies everything;
the local single-user mode allows everything (the caller warns).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from fileferry.identity.settings import DAYS, ApprovalSettings, HoursSettings, PolicySettings

__all__ = ["LOCAL_ALLOW_ALL", "Decision", "Facts", "evaluate", "within_hours"]

LOCAL_ALLOW_ALL = "local mode: no policies configured, everything is allowed"
SHOWN_REASONS = 3


@dataclass(frozen=True)
class Facts:
    """What is asked: by whom, which sources, to which destination name, when."""

    user: str
    groups: frozenset[str]
    sources: Sequence[str]
    destination: str
    when: float
    total_size: int | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str | None
    """The allowing rule's name (None: local allow-all, or denied)."""
    reason: str
    approval: ApprovalSettings | None = None

    @property
    def label(self) -> str:
        """How tickets and the audit trail name it."""
        if self.allowed:
            return f"policy {self.rule}" if self.rule else LOCAL_ALLOW_ALL
        return f"denied: {self.reason}"


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def within_hours(hours: HoursSettings, when: float) -> bool:
    """Whether ``when`` (epoch seconds) falls inside the window, in its time zone."""
    local = datetime.fromtimestamp(when, ZoneInfo(hours.timezone))
    now, start, end = local.hour * 60 + local.minute, _minutes(hours.start), _minutes(hours.end)
    if start <= end:
        return start <= now < end and DAYS[local.weekday()] in hours.days
    if now >= start:
        return DAYS[local.weekday()] in hours.days
    yesterday = local - timedelta(days=1)
    return now < end and DAYS[yesterday.weekday()] in hours.days


def _mismatch(rule: PolicySettings, facts: Facts) -> str | None:
    """Why ``rule`` does not allow ``facts``; None when it does."""
    if not (any(fnmatchcase(facts.user, u) for u in rule.users)
            or facts.groups & set(rule.groups)):
        who = [*(f"user {u}" for u in rule.users), *(f"group {g}" for g in rule.groups)]
        return f"is for {', '.join(who)}"
    if not any(fnmatchcase(facts.destination, d) for d in rule.destinations):
        return f"does not cover destination {facts.destination}"
    outside = [s for s in facts.sources if not any(fnmatchcase(s, g) for g in rule.sources)]
    if outside:
        more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
        return f"does not cover source {outside[0]}{more}"
    if rule.hours is not None and not within_hours(rule.hours, facts.when):
        h = rule.hours
        return f"allows {h.start}-{h.end} {h.timezone} on {','.join(h.days)} only"
    if rule.max_total_size is not None and facts.total_size is not None \
            and facts.total_size > rule.max_total_size:
        return f"allows at most {int(rule.max_total_size)} bytes, not {facts.total_size}"
    return None


def evaluate(policies: Sequence[PolicySettings], facts: Facts, *,
             server_mode: bool) -> Decision:
    """The first rule allowing ``facts``, else a denial saying why the rules did not."""
    if not policies:
        if server_mode:
            return Decision(False, None, "sso is configured and there are no policies: server "
                                         "mode denies by default; add a rule under policies:")
        return Decision(True, None, LOCAL_ALLOW_ALL)
    reasons = []
    for rule in policies:
        why = _mismatch(rule, facts)
        if why is None:
            return Decision(True, rule.name, f"allowed by policy {rule.name}",
                            rule.requires_approval)
        reasons.append(f"rule {rule.name!r} {why}")
    groups = ", ".join(sorted(facts.groups)) or "none"
    shown = "; ".join(reasons[:SHOWN_REASONS])
    if len(reasons) > SHOWN_REASONS:
        shown += f"; and {len(reasons) - SHOWN_REASONS} more rule(s)"
    return Decision(False, None, f"no policy allows {facts.user} (groups: {groups}) to send "
                                 f"to {facts.destination}: {shown}")
