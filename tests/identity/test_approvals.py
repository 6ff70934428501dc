"""Approvals: the transfer parks in PENDING_APPROVAL until someone in the group decides.

Real servers: moto's S3, sshd, the ServiceNow emulator, the sandbox OIDC provider.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings, load_settings
from fileferry.errors import NotAuthorized, ValidationError
from fileferry.identity.principal import Principal
from fileferry.models import TransferResult
from fileferry.sandbox.oidc import OidcProvider
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.services import (
    approve_transfer,
    continue_transfer,
    reject_transfer,
    resume_transfers,
    submit_transfer,
)
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import cli_command, cli_env, files_under, json_line, run_cli, seed
from tests.identity.conftest import sso_section
from tests.servers.sshd import SshdServer

ALICE = Principal("alice", frozenset({"finance"}))
BOB = Principal("bob", frozenset({"finance", "finance-approvers"}))
CAROL = Principal("carol", frozenset({"ops"}))


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def sn() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        yield emulator


def approval_config(make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer,
                    remote_dir: Path, bucket: str, **sections: Any) -> Path:
    rules = [{"name": "finance-out", "groups": ["finance"], "destinations": ["t"],
              "sources": [f"s3://{bucket}/*"],
              "requires_approval": {"group": "finance-approvers", "timeout": 600}}]
    return make_config({"t": sftp_destination(sshd, remote_dir)}, policies=rules,
                       sso=sso_section(oidc), **sections)


async def pending(settings: Settings, bucket: str) -> TransferResult:
    request = TransferRequest(sources=[f"s3://{bucket}/r.csv"], destination="t:")
    result = await submit_transfer(settings, request, principal=ALICE, sleep=no_sleep,
                                   wait_for_approval=False)
    assert result.status == "PENDING_APPROVAL", result.error
    return result


async def trail(settings: Settings, transfer_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with open_store(settings.store.url) as store:
        return [(e.event, e.detail) for e in await store.audit(transfer_id)]


async def test_approved_by_someone_in_the_group_never_by_the_requester(
        make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer, remote_dir: Path,
        s3: Any, bucket: str, sn: ServiceNowEmulator) -> None:
    seed(s3, bucket, {"r.csv": b"q4\n"})
    servicenow = {"instance_url": sn.url, "username": sn.username, "password": sn.password}
    settings = load_settings(approval_config(make_config, oidc, sshd, remote_dir, bucket,
                                             servicenow=servicenow))
    tid = (await pending(settings, bucket)).transfer_id
    async with open_store(settings.store.url) as store:
        record = await store.get_transfer(tid)
        assert record is not None and record.status == "PENDING_APPROVAL"
    assert files_under(remote_dir) == {}, "nothing moves before the approval"
    with pytest.raises(NotAuthorized, match=r"alice requested .* cannot decide"):
        await approve_transfer(settings, tid, ALICE)
    with pytest.raises(NotAuthorized, match="membership of group finance-approvers"):
        await approve_transfer(settings, tid, CAROL)
    decided = await approve_transfer(settings, tid, BOB, "quarterly numbers, fine")
    assert decided["approver"] == "bob"
    with pytest.raises(ValidationError, match="already approved by bob"):
        await reject_transfer(settings, tid, BOB)
    result = await continue_transfer(settings, tid, sleep=no_sleep)
    assert result is not None and result.status == "SUCCEEDED", result
    assert files_under(remote_dir) == {"r.csv": b"q4\n"}
    kinds = [kind for kind, _ in await trail(settings, tid)]
    assert kinds.count("approval_refused") == 2 and kinds.count("approved") == 1
    assert kinds.index("approval_requested") < kinds.index("approved") \
        < kinds.index("tickets_created")
    audit = [r for r in sn.records("incident") if r["correlation_id"].endswith(":audit")]
    assert len(audit) == 1 and "Approved by: bob" in audit[0]["description"]
    assert "Policy: policy finance-out" in audit[0]["description"]


async def test_rejected(make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer,
                        remote_dir: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"r.csv": b"q4\n"})
    settings = load_settings(approval_config(make_config, oidc, sshd, remote_dir, bucket))
    tid = (await pending(settings, bucket)).transfer_id
    await reject_transfer(settings, tid, BOB, "not this quarter")
    result = await continue_transfer(settings, tid, sleep=no_sleep)
    assert result is not None and result.status == "REFUSED"
    assert result.error == {"type": "ApprovalRejected",
                            "message": "rejected by bob: not this quarter"}
    assert files_under(remote_dir) == {}
    kinds = [kind for kind, _ in await trail(settings, tid)]
    assert "rejected" in kinds and "failed" in kinds and "session_opened" in kinds[:2]


async def test_nobody_decides_in_time(make_config: MakeConfig, oidc: OidcProvider,
                                      sshd: SshdServer, remote_dir: Path, s3: Any,
                                      bucket: str) -> None:
    seed(s3, bucket, {"r.csv": b"q4\n"})
    settings = load_settings(approval_config(make_config, oidc, sshd, remote_dir, bucket))
    tid = (await pending(settings, bucket)).transfer_id

    def later() -> float:
        return time.time() + 601  # the policy's timeout is 600 s

    still = await resume_transfers(settings, tid, sleep=no_sleep)
    assert still[0].status == "PENDING_APPROVAL", "a resume in time keeps waiting"
    with pytest.raises(ValidationError, match="too late, the approval timed out"):
        await approve_transfer(settings, tid, BOB, clock=later)
    [result] = await resume_transfers(settings, tid, sleep=no_sleep, clock=later)
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == "ApprovalTimedOut"
    with pytest.raises(ValidationError, match="nothing to decide"):
        await approve_transfer(settings, tid, BOB, clock=later)
    assert files_under(remote_dir) == {}


def test_the_cli_waits_for_the_approval_given_in_another_process(
        make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer, remote_dir: Path,
        tmp_path: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"r.csv": b"q4\n"})
    config = approval_config(make_config, oidc, sshd, remote_dir, bucket)
    alice, bob = oidc.mint(user="alice"), oidc.mint(user="bob")
    waiting = subprocess.Popen(cli_command("transfer", "--config", config, "--json",
                                           f"s3://{bucket}/r.csv", "t:"),
                               cwd=tmp_path, env=cli_env({"FILEFERRY_TOKEN": alice}),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tid = _wait_for_pending(load_settings(config))
        refused = run_cli("approve", tid, "--config", config, "--json", cwd=tmp_path,
                          env={"FILEFERRY_TOKEN": alice})
        assert refused.returncode == 2 and "NotAuthorized" in refused.stdout
        given = run_cli("approve", tid, "--config", config, "--json", "--reason", "ok",
                        cwd=tmp_path, env={"FILEFERRY_TOKEN": bob})
        assert given.returncode == 0, given.stdout + given.stderr
        assert json_line(given.stdout)["transfer"] == "carried on by the process waiting for it"
        out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert json_line(out)["status"] == "SUCCEEDED"
    assert files_under(remote_dir) == {"r.csv": b"q4\n"}


def _park(make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer, remote_dir: Path,
          tmp_path: Path, s3: Any, bucket: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """alice's ``transfer --no-wait`` of r.csv, parked for approval: the config and the run."""
    seed(s3, bucket, {"r.csv": b"q4\n"})
    config = approval_config(make_config, oidc, sshd, remote_dir, bucket)
    return config, run_cli("transfer", "--config", config, "--json", "--no-wait",
                           f"s3://{bucket}/r.csv", "t:", cwd=tmp_path,
                           env={"FILEFERRY_TOKEN": oidc.mint(user="alice")})


def test_no_wait_exits_3_and_approve_carries_it_on(
        make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer, remote_dir: Path,
        tmp_path: Path, s3: Any, bucket: str) -> None:
    config, parked = _park(make_config, oidc, sshd, remote_dir, tmp_path, s3, bucket)
    assert parked.returncode == 3, parked.stderr
    tid = json_line(parked.stdout)["transfer_id"]
    given = run_cli("approve", tid, "--config", config, "--json",
                    "--token", oidc.mint(user="bob"), cwd=tmp_path)
    assert given.returncode == 0, given.stdout + given.stderr
    assert json_line(given.stdout)["transfer"]["status"] == "SUCCEEDED"


def _wait_for_pending(settings: Settings, timeout: float = 60) -> str:
    import asyncio

    async def look() -> str | None:
        async with open_store(settings.store.url) as store:
            found, _ = await store.list_transfers(status="PENDING_APPROVAL")
            return found[0].transfer_id if found else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tid = asyncio.run(look())
        if tid:
            return tid
        time.sleep(0.2)
    raise AssertionError("the transfer never reached PENDING_APPROVAL")


def test_cancelling_a_transfer_parked_for_approval(
        make_config: MakeConfig, oidc: OidcProvider, sshd: SshdServer, remote_dir: Path,
        tmp_path: Path, s3: Any, bucket: str) -> None:
    config, parked = _park(make_config, oidc, sshd, remote_dir, tmp_path, s3, bucket)
    tid = json_line(parked.stdout)["transfer_id"]
    stopped = run_cli("cancel", tid, "--config", config, "--json", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert json_line(stopped.stdout)["cancel"] == "cancelled"
    late = run_cli("approve", tid, "--config", config, "--json", cwd=tmp_path,
                   env={"FILEFERRY_TOKEN": oidc.mint(user="bob")})
    assert late.returncode == 2 and "is CANCELLED" in late.stdout
    assert files_under(remote_dir) == {}
