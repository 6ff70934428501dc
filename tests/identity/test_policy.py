"""Policies: pure evaluation, and the denial path through the workflow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fileferry.config import Settings, parse_settings
from fileferry.errors import ConfigError
from fileferry.identity.policy import LOCAL_ALLOW_ALL, Facts, evaluate
from fileferry.identity.principal import Principal
from fileferry.identity.settings import PolicySettings
from fileferry.services import submit_transfer
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from tests.conftest import sftp_destination
from tests.helpers import files_under, seed
from tests.servers.sshd import SshdServer

BERLIN = ZoneInfo("Europe/Berlin")
# Wednesday 2026-11-25, 10:00 in Berlin
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN).timestamp()

RULES = [
    {"name": "finance-reports", "groups": ["finance"], "destinations": ["acme"],
     "sources": ["s3://reports/finance/*"], "max_total_size": "1KiB",
     "hours": {"start": "07:00", "end": "19:00", "timezone": "Europe/Berlin",
               "days": ["mon", "tue", "wed", "thu", "fri"]}},
    {"name": "ops-anything", "users": ["carol"], "destinations": ["*"], "sources": ["s3://*"],
     "requires_approval": {"group": "ops-leads", "timeout": 600}},
]


def policies(rules: list[dict[str, Any]] = RULES) -> list[PolicySettings]:
    return [PolicySettings.model_validate(r) for r in rules]


def facts(**changes: Any) -> Facts:
    base: dict[str, Any] = {"user": "alice", "groups": frozenset({"finance"}),
                            "sources": ["s3://reports/finance/2026/"], "destination": "acme",
                            "when": WEDNESDAY_10}
    return Facts(**{**base, **changes})


def test_the_first_matching_rule_allows() -> None:
    decision = evaluate(policies(), facts(), server_mode=True)
    assert decision.allowed and decision.rule == "finance-reports"
    assert decision.label == "policy finance-reports" and decision.approval is None
    carol = evaluate(policies(), facts(user="carol", groups=frozenset()), server_mode=True)
    assert carol.rule == "ops-anything" and carol.approval is not None
    assert carol.approval.group == "ops-leads"


@pytest.mark.parametrize(("changes", "why"), [
    ({"groups": frozenset({"sales"})}, "is for group finance"),
    ({"destination": "other"}, "does not cover destination other"),
    ({"sources": ["s3://reports/hr/x.csv"]}, "does not cover source s3://reports/hr/x.csv"),
    ({"total_size": 2048}, "allows at most 1024 bytes, not 2048"),
    ({"when": datetime(2026, 11, 25, 19, 0, tzinfo=BERLIN).timestamp()}, "allows 07:00-19:00"),
    ({"when": datetime(2026, 11, 28, 10, 0, tzinfo=BERLIN).timestamp()},
     "allows 07:00-19:00 Europe/Berlin on mon,tue"),
])
def test_a_denial_names_each_rule_and_why(changes: dict[str, Any], why: str) -> None:
    decision = evaluate(policies(), facts(**changes), server_mode=True)
    assert not decision.allowed
    assert f"rule 'finance-reports' {why}" in decision.reason
    assert "rule 'ops-anything' is for user carol" in decision.reason
    assert decision.reason.startswith("no policy allows alice")


def test_hours_across_midnight_belong_to_the_starting_day() -> None:
    night = [{"name": "night", "users": ["*"], "destinations": ["*"], "sources": ["s3://*"],
              "hours": {"start": "22:00", "end": "02:00", "timezone": "UTC",
                        "days": ["fri"]}}]

    def at(day: int, hour: int) -> bool:
        when = datetime(2026, 11, day, hour, 30, tzinfo=ZoneInfo("UTC")).timestamp()
        return evaluate(policies(night), facts(when=when), server_mode=True).allowed

    # 2026-11-27 is a Friday
    assert at(27, 23) and at(28, 1)
    assert not at(27, 1) and not at(28, 23) and not at(27, 12)


def test_without_policies_server_mode_denies_and_local_mode_allows() -> None:
    denied = evaluate([], facts(), server_mode=True)
    assert not denied.allowed and "denies by default" in denied.reason
    allowed = evaluate([], facts(), server_mode=False)
    assert allowed.allowed and allowed.label == LOCAL_ALLOW_ALL


@pytest.mark.parametrize(("rule", "message"), [
    ({"name": "x", "destinations": ["a"], "sources": ["s3://b/*"]}, "name the users or groups"),
    ({"name": "x", "users": ["*"], "destinations": ["a"], "sources": ["b/*"]}, "globs over s3"),
    ({"name": "x", "users": ["*"], "destinations": ["a"], "sources": ["s3://b"],
      "hours": {"start": "7:00", "end": "19:00"}}, "time of day"),
    ({"name": "x", "users": ["*"], "destinations": ["a"], "sources": ["s3://b"],
      "hours": {"start": "07:00", "end": "19:00", "timezone": "Mars/Olympus"}}, "time zone"),
])
def test_bad_rules_are_config_errors_naming_the_key(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_settings({"policies": [rule]})
    assert "policies.0" in str(info.value)
    with pytest.raises(ConfigError, match="unique"):
        parse_settings({"policies": [RULES[1], RULES[1]]})


async def test_a_denied_transfer_is_refused_audited_and_ticketed(
        settings_for: Callable[..., Settings], sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"hr/salaries.csv": b"secret numbers\n"})
    rules = [{"name": "finance-only", "groups": ["finance"], "destinations": ["t"],
              "sources": [f"s3://{bucket}/finance/*"]}]
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, policies=rules,
                            sso={"issuer": "https://idp.example", "audience": "fileferry"})
    request = TransferRequest(sources=[f"s3://{bucket}/hr/salaries.csv"], destination="t:")
    alice = Principal("alice", frozenset({"finance"}))
    result = await submit_transfer(settings, request, principal=alice)
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == "PolicyDenied"
    assert "rule 'finance-only' does not cover source" in result.error["message"]
    assert result.tickets and result.tickets["audit"], "a denial still has an audit ticket"
    async with open_store(settings.store.url) as store:
        trail = await store.audit(result.transfer_id)
    kinds = [e.event for e in trail]
    assert kinds[:2] == ["policy_denied", "tickets_created"], kinds
    created = trail[1].detail
    assert created["outcome"] == "DENIED" and created["policy"].startswith("denied: ")
    assert "session_opened" not in kinds, "nothing was opened, read or sent"
    assert files_under(remote_dir) == {}
