"""The engine end to end over FTP and FTPS: moto's S3 server -> ProFTPD / pyftpdlib."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.sandbox.ftps import SandboxFtpServer
from fileferry.sandbox.tls import TestPki
from tests.conftest import FTP_PASSWORD, ftp_target
from tests.servers.proftpd import ProftpdServer
from tests.transfer.test_engine_sftp import OBJECTS, seed, send, tree

SettingsFor = Callable[..., Settings]


@pytest.mark.parametrize(("kind", "method"), [("proftpd", "server-md5"),
                                              ("proftpd-plain", "server-md5"),
                                              ("pyftpd", "readback-sha256")])
async def test_prefix_delivered_and_verified(request: pytest.FixtureRequest,
                                             settings_for: SettingsFor, s3: Any, bucket: str,
                                             kind: str, method: str) -> None:
    seed(s3, bucket, OBJECTS)
    dest, local = ftp_target(request, kind)
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/data/", dest="t:in")
    assert result.status == "SUCCEEDED", result.error
    expected = {f"in/{k.removeprefix('data/')}": v for k, v in OBJECTS.items()
                if k.startswith("data/")}
    assert tree(local) == expected
    for f in result.files:
        body = expected[f.destination.split("/", 2)[2]]
        assert f.sha256 == hashlib.sha256(body).hexdigest()
        assert f.verified_by == method


async def test_mode_z_compression(request: pytest.FixtureRequest, settings_for: SettingsFor,
                                  proftpd: ProftpdServer, s3: Any, bucket: str) -> None:
    # Realistic text: ProFTPD's mod_deflate fails on extreme ratios (all-identical
    # lines) and inflates slowly, so the sample is small and CSV-like.
    body = "".join(f"{i},{i * 7919 % 100003},store-{i % 97}\n" for i in range(3000)).encode()
    seed(s3, bucket, {"z.txt": body})
    dest, local = ftp_target(request, "proftpd")
    log = proftpd.root.parent / "deflate.log"
    before = log.read_text().count("STOR: inflated") if log.exists() else 0
    settings = settings_for({"t": dest}, transfer={"enable_compression": True})
    result = await send(settings, f"s3://{bucket}/z.txt")
    assert result.status == "SUCCEEDED", result.error
    assert (local / "z.txt").read_bytes() == body
    assert log.read_text().count("STOR: inflated") == before + 1, "sent with MODE Z"


async def test_active_mode(request: pytest.FixtureRequest, settings_for: SettingsFor, s3: Any,
                           bucket: str) -> None:
    seed(s3, bucket, {"a.bin": b"active"})
    dest, local = ftp_target(request, "pyftpd", passive=False)
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/a.bin")
    assert result.status == "SUCCEEDED", result.error
    assert tree(local) == {"a.bin": b"active"}


async def test_plain_ftp_needs_allow_insecure(request: pytest.FixtureRequest,
                                              settings_for: SettingsFor, s3: Any,
                                              bucket: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    dest, local = ftp_target(request, "proftpd-plain")
    del dest["allow_insecure"]
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/k")
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == "InsecureTransport"
    assert "allow_insecure: true" in result.error["message"]
    assert tree(local) == {}


async def test_wrong_password(request: pytest.FixtureRequest, settings_for: SettingsFor,
                              s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    dest, _ = ftp_target(request, "proftpd", password="not-the-password")
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/k")
    assert result.error is not None and result.error["type"] == "AuthenticationFailed"
    assert "not-the-password" not in result.error["message"]


async def test_readonly_directory(request: pytest.FixtureRequest, settings_for: SettingsFor,
                                  proftpd: ProftpdServer, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    dest, _ = ftp_target(request, "proftpd")
    readonly = proftpd.readonly_dir.relative_to(proftpd.root)
    dest["url"] = f"ftps://{proftpd.username}@127.0.0.1:{proftpd.port}/{readonly}/"
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/k")
    assert result.status == "FAILED"
    assert result.error is not None and result.error["type"] == "PermissionDenied"
    assert sorted(p.name for p in proftpd.readonly_dir.iterdir()) == ["README.txt"]


@pytest.mark.parametrize("on_conflict", ["fail", "overwrite", "rename"])
async def test_existing_target(request: pytest.FixtureRequest, settings_for: SettingsFor,
                               s3: Any, bucket: str, on_conflict: str) -> None:
    seed(s3, bucket, {"r.csv": b"new"})
    dest, local = ftp_target(request, "proftpd", on_conflict=on_conflict)
    (local / "r.csv").write_bytes(b"old")
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/r.csv")
    expected = {"fail": {"r.csv": b"old"}, "overwrite": {"r.csv": b"new"},
                "rename": {"r.csv": b"old", "r-1.csv": b"new"}}[on_conflict]
    assert tree(local) == expected
    assert result.status == ("REFUSED" if on_conflict == "fail" else "SUCCEEDED")


@pytest.fixture(params=["untrusted", "wrong-name"])
def bad_cert_server(request: pytest.FixtureRequest, pki: TestPki,
                    tmp_path: Path) -> Iterator[tuple[SandboxFtpServer, str]]:
    if request.param == "untrusted":
        bad = dataclasses.replace(pki, cert_file=pki.untrusted_cert_file,
                                  key_file=pki.untrusted_key_file)
    else:
        bad = dataclasses.replace(pki, cert_file=pki.wrong_name_cert_file,
                                  key_file=pki.wrong_name_key_file)
    with SandboxFtpServer(tmp_path / "bad", "ferry", FTP_PASSWORD, tls=bad) as server:
        yield server, request.param


async def test_refused_certificate_says_what_was_presented(
        bad_cert_server: tuple[SandboxFtpServer, str], pki: TestPki,
        settings_for: SettingsFor, s3: Any, bucket: str) -> None:
    server, kind = bad_cert_server
    seed(s3, bucket, {"k": b"1"})
    dest = {"url": f"ftps://ferry@127.0.0.1:{server.port}/", "password": FTP_PASSWORD,
            "ca_file": str(pki.ca_file)}
    result = await send(settings_for({"t": dest}), f"s3://{bucket}/k")
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == "CertificateError"
    message = result.error["message"]
    assert "presented CN=" in message and "SHA-256" in message
    assert ("DNS:wrong.example" in message) is (kind == "wrong-name")
    assert list(server.root.iterdir()) == []


async def test_implicit_ftps(pki: TestPki, settings_for: SettingsFor, tmp_path: Path, s3: Any,
                             bucket: str) -> None:
    body = secrets.token_bytes(100_000)
    seed(s3, bucket, {"i.bin": body})
    with SandboxFtpServer(tmp_path / "imp", "ferry", FTP_PASSWORD, tls=pki,
                          implicit=True) as server:
        dest = {"url": f"ftps://ferry@127.0.0.1:{server.port}/", "implicit": True,
                "password": FTP_PASSWORD, "ca_file": str(pki.ca_file)}
        result = await send(settings_for({"t": dest}), f"s3://{bucket}/i.bin")
        assert result.status == "SUCCEEDED", result.error
        assert (server.root / "i.bin").read_bytes() == body


@pytest.mark.parametrize(("kind", "methods"), [
    ("proftpd", ["server-md5", "server-sha256", "readback-sha256", "size", "none"]),
    ("pyftpd", ["readback-sha256", "size", "none"])])
async def test_check_reports_methods_and_changes_nothing(request: pytest.FixtureRequest,
                                                         settings_for: SettingsFor, kind: str,
                                                         methods: list[str]) -> None:
    from fileferry.endpoints.probe import probe_destination

    dest, local = ftp_target(request, kind)
    settings = settings_for({"t": dest})
    report = await probe_destination("t", settings.destinations["t"], settings.transfer)
    assert report["verification_methods"] == methods
    assert report["writable"] is True
    assert list(local.iterdir()) == []
