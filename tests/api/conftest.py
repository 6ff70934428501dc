"""The API server for the tests: started once per session for real (uvicorn on a free
127.0.0.1 port, on its own thread), over moto's S3, OpenSSH's sshd and the
ServiceNow emulator, with its store in SQLite.

Destinations: ``t`` (full speed) and ``slow`` (``bandwidth_limit`` 512 KiB/s), both
rooted in ``api.remote``; each test sends to its own sub-directory.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fileferry.api.server import BackgroundServer
from fileferry.config import load_settings
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.servicenow import ServiceNowEmulator
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer

KiB = 1024
MiB = 1024 * KiB
TOKEN = "api-test-token-" + secrets.token_hex(12)
TERMINAL = {"SUCCEEDED", "FAILED", "REFUSED", "CANCELLED"}


@dataclass(frozen=True)
class ApiEnv:
    config: Path
    remote: Path
    bucket: str
    workdir: Path
    store_url: str
    snow: ServiceNowEmulator


@pytest.fixture(scope="session")
def servicenow() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as snow:
        snow.add_group("DataOps")
        for user in ("alice", "bob", "api"):
            snow.add_user(user, user.title())
        yield snow


def write_api_config(workdir: Path, moto: MotoServer, sshd: SshdServer, remote: Path,
                     snow: ServiceNowEmulator, **api: Any) -> Path:
    """A configuration for a server over the session's servers; ``api`` adds api keys."""
    data: dict[str, Any] = {
        "s3": {"endpoint_url": moto.endpoint_url, "region": "us-east-1"},
        "transfer": {"default_chunk_size": 128 * KiB},
        "destinations": {
            "t": sftp_destination(sshd, remote),
            "slow": sftp_destination(sshd, remote, bandwidth_limit=512 * KiB),
        },
        "servicenow": {"instance_url": snow.url, "username": snow.username,
                       "password": snow.password, "default_assignment_group": "DataOps"},
        "store": {"url": f"sqlite:///{workdir}/fileferry.db"},
        "api": {"token": TOKEN, **api},
    }
    path = workdir / "fileferry.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def make_remote(sshd: SshdServer) -> Path:
    path = sshd.root / ("api-" + secrets.token_hex(6))
    path.mkdir()
    shutil.chown(path, sshd.username)
    return path


@pytest.fixture(scope="session")
def api_env(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer, sshd: SshdServer,
            s3: Any, servicenow: ServiceNowEmulator) -> ApiEnv:
    workdir = tmp_path_factory.mktemp("api")
    remote = make_remote(sshd)
    bucket = "api-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=bucket)
    config = write_api_config(workdir, moto, sshd, remote, servicenow)
    return ApiEnv(config, remote, bucket, workdir, f"sqlite:///{workdir}/fileferry.db",
                  servicenow)


@pytest.fixture(scope="session")
def api_server(api_env: ApiEnv) -> Iterator[BackgroundServer]:
    with BackgroundServer(load_settings(api_env.config)) as server:
        yield server


@pytest.fixture
def client(api_server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


@pytest.fixture
def subdir(api_env: ApiEnv) -> str:
    """A fresh directory name under the destinations' root (created by the transfer)."""
    return "t-" + secrets.token_hex(4)


def wait_for(client: httpx.Client, transfer_id: str,
             done: Callable[[dict[str, Any]], bool] = lambda t: t["status"] in TERMINAL,
             timeout: float = 90) -> dict[str, Any]:
    """Poll ``GET /api/transfers/ID`` until ``done`` holds; the last body."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/api/transfers/{transfer_id}").json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{transfer_id} never got there: {body}")
        time.sleep(0.1)


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a text/event-stream response, as they arrive."""
    import json

    kind, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield kind, json.loads("\n".join(data))
            kind, data = "message", []


# --- a second server with sso: (tests/api/test_sso_api.py, test_dashboard_sso.py)

SSO_USERS = {"alice": ("alice-pw", ["finance"]),
             "bob": ("bob-pw", ["finance", "finance-approvers"]),
             "carol": ("carol-pw", ["ops"]),
             "dave": ("dave-pw", ["ops", "ff-operators"])}
OPERATOR_GROUPS = ["ff-operators"]


@dataclass(frozen=True)
class SsoEnv:
    """The SSO server over its own store; ``direct/`` needs no approval, ``reviewed/``
    waits for group finance-approvers; only group finance has a rule. dave is an
    operator (``sso.operator_groups``): he sees every transfer."""

    server: BackgroundServer
    idp: Any  # fileferry.sandbox.oidc.OidcProvider
    bucket: str
    remote: Path
    store_url: str
    config: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, user: str | None = None, token: str | None = None) -> httpx.Client:
        """A client with a fresh token for ``user`` (or ``token`` as given, or none)."""
        token = token or (self.idp.mint(user=user) if user else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


def _sso_policies(bucket: str) -> list[dict[str, Any]]:
    return [{"name": "finance-direct", "groups": ["finance"], "destinations": ["t"],
             "sources": [f"s3://{bucket}/direct/*"]},
            {"name": "finance-reviewed", "groups": ["finance"], "destinations": ["t"],
             "sources": [f"s3://{bucket}/reviewed/*"],
             "requires_approval": {"group": "finance-approvers", "timeout": 600}}]


@pytest.fixture(scope="session")
def sso_env(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer, sshd: SshdServer,
            s3: Any, servicenow: ServiceNowEmulator) -> Iterator[SsoEnv]:
    from fileferry.sandbox.net import free_port
    from fileferry.sandbox.oidc import OidcProvider, SandboxClient, SandboxUser

    servicenow.add_user("carol", "Carol")
    servicenow.add_user("dave", "Dave")
    workdir, remote = tmp_path_factory.mktemp("sso"), make_remote(sshd)
    bucket = "sso-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=bucket)
    port = free_port()
    users = {name: SandboxUser(pw, groups) for name, (pw, groups) in SSO_USERS.items()}
    callback = f"http://127.0.0.1:{port}/auth/callback"
    with OidcProvider(users=users, clients={"ff-dashboard": SandboxClient(None, [callback])}
                      ) as idp:
        config = write_api_config(workdir, moto, sshd, remote, servicenow)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["sso"] = {"issuer": idp.issuer, "audience": idp.audience,
                       "client_id": "ff-dashboard", "session_seconds": 600,
                       "operator_groups": OPERATOR_GROUPS}
        data["policies"] = _sso_policies(bucket)
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        with BackgroundServer(load_settings(config), port=port) as server:
            yield SsoEnv(server, idp, bucket, remote, f"sqlite:///{workdir}/fileferry.db",
                         config)
