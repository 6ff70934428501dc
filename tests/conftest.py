"""Session-wide real servers on 127.0.0.1: moto's S3 server and OpenSSH's sshd.

Each test gets a fresh bucket and a fresh directory under the SFTP root, and
``make_config`` writes a configuration file pointing at both.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from fileferry.config import Settings, load_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.sandbox.ftps import SandboxFtpServer
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.tls import TestPki, make_test_pki
from tests.servers.proftpd import MODULE_DIR, ProftpdServer, proftpd_binary, start_proftpd
from tests.servers.sshd import SshdServer, start_sshd

os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_DEFAULT_REGION="us-east-1")
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FILEFERRY_CONFIG"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
async def _log_out_shared_destinations() -> AsyncIterator[None]:
    """Transfers share pooled connections; a test's pools end with the test."""
    yield
    await close_idle_destinations()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def s3(moto: MotoServer) -> Any:
    return boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("OpenSSH's sshd is not installed (apt-get install openssh-server)")
    server, stop = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def proftpd(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[ProftpdServer]:
    """Debian's ProFTPD: explicit FTPS with mod_digest (HASH/XSHA256/XMD5), and plain FTP."""
    if proftpd_binary() is None or not (MODULE_DIR / "mod_tls.so").exists():
        pytest.skip("ProFTPD is not installed (apt-get install proftpd-core proftpd-mod-crypto)")
    if os.geteuid() != 0:
        pytest.skip("the ProFTPD helper needs root (it creates a local user)")
    server, stop = start_proftpd(tmp_path_factory.mktemp("proftpd"), pki)
    yield server
    stop()


FTP_PASSWORD = "sandbox-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def pyftpd(tmp_path_factory: pytest.TempPathFactory, pki: TestPki) -> Iterator[SandboxFtpServer]:
    """pyftpdlib with explicit FTPS: no hash commands, so files are verified by reading back."""
    with SandboxFtpServer(tmp_path_factory.mktemp("pyftpd"), "ferry", FTP_PASSWORD,
                          tls=pki) as server:
        yield server


@pytest.fixture
def bucket(s3: Any) -> str:
    name = "b-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def remote_dir(sshd: SshdServer) -> Path:
    """A fresh, empty directory inside the SFTP root (local path of the server's disk)."""
    path = sshd.root / secrets.token_hex(6)
    path.mkdir()
    shutil.chown(path, sshd.username)
    return path


def sftp_destination(sshd: SshdServer, root: Path, *, sftp_only: bool = False,
                     **extra: Any) -> dict[str, Any]:
    port = sshd.sftp_only_port if sftp_only else sshd.shell_port
    dest: dict[str, Any] = {
        "url": f"sftp://{sshd.username}@127.0.0.1:{port}{root}/",
        "private_key_file": str(sshd.client_key_file),
        "known_hosts": str(sshd.known_hosts_file),
    }
    dest.update(extra)
    return dest


MakeConfig = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path, moto: MotoServer) -> MakeConfig:
    """``make_config(destinations={...}, transfer={...})`` -> path of a YAML file."""

    def make(destinations: dict[str, Any], **sections: Any) -> Path:
        data: dict[str, Any] = {
            "s3": {"endpoint_url": moto.endpoint_url, "region": "us-east-1"},
            "destinations": destinations,
            "store": {"url": f"sqlite:///{tmp_path}/fileferry.db"},
        }
        data.update(sections)
        path = tmp_path / f"fileferry-{secrets.token_hex(3)}.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return make


@pytest.fixture
def settings_for(make_config: MakeConfig) -> Callable[..., Settings]:
    def make(destinations: dict[str, Any], **sections: Any) -> Settings:
        return load_settings(make_config(destinations, **sections))

    return make


# "proftpd" (explicit FTPS, hashes), "proftpd-plain", "pyftpd" (FTPS, no hashes)
FtpServerKind = str


def ftp_target(request: pytest.FixtureRequest, kind: FtpServerKind,
               **extra: Any) -> tuple[dict[str, Any], Path]:
    """A destination dict for one of the FTP servers, rooted in a fresh directory.

    Returns the destination settings and the directory's path on the server's disk.
    """
    sub = secrets.token_hex(6)
    pki_: TestPki = request.getfixturevalue("pki")
    if kind.startswith("proftpd"):
        server: ProftpdServer = request.getfixturevalue("proftpd")
        local = server.root / sub
        local.mkdir()
        shutil.chown(local, server.username)
        if kind == "proftpd-plain":
            dest = {"url": f"ftp://{server.username}@127.0.0.1:{server.plain_port}/{sub}/",
                    "allow_insecure": True}
        else:
            dest = {"url": f"ftps://{server.username}@127.0.0.1:{server.port}/{sub}/",
                    "ca_file": str(pki_.ca_file)}
        dest["password"] = server.password
    else:
        sandbox: SandboxFtpServer = request.getfixturevalue("pyftpd")
        local = sandbox.root / sub
        local.mkdir()
        dest = {"url": f"ftps://ferry@127.0.0.1:{sandbox.port}/{sub}/",
                "ca_file": str(pki_.ca_file), "password": FTP_PASSWORD}
    dest.update(extra)
    return dest, local


# --- identity: the sandbox OIDC provider (tests/identity, and the API's login tests)

OIDC_REDIRECT = "http://127.0.0.1:9/callback"
OIDC_CLIENT_SECRET = "client-secret-" + secrets.token_hex(6)


@pytest.fixture(scope="session")
def oidc() -> Iterator[Any]:
    """Users alice (finance), bob (finance, finance-approvers), carol (ops); a public
    ``dashboard`` client redirecting to OIDC_REDIRECT and a confidential ``robot``."""
    from fileferry.sandbox.oidc import OidcProvider, SandboxClient, SandboxUser

    users = {"alice": SandboxUser("alice-pw", ["finance"]),
             "bob": SandboxUser("bob-pw", ["finance", "finance-approvers"]),
             "carol": SandboxUser("carol-pw", ["ops"])}
    clients = {"dashboard": SandboxClient(None, [OIDC_REDIRECT]),
               "robot": SandboxClient(OIDC_CLIENT_SECRET, [], groups=["automation"])}
    with OidcProvider(users=users, clients=clients, auto_login="alice") as provider:
        yield provider
