"""Connecting to sshd: host keys are pinned, credentials checked, failures explained."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.endpoints.registry import connect_destination
from fileferry.errors import (
    AuthenticationFailed,
    EndpointUnavailable,
    FileFerryError,
    HostKeyMismatch,
    HostKeyUnknown,
)
from fileferry.sandbox.net import free_port
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer

SettingsFor = Callable[..., Settings]


async def connect(settings_for: SettingsFor, dest: dict[str, Any]) -> None:
    settings = settings_for({"t": dest})
    conn = await connect_destination("t", settings.destinations["t"], settings.transfer)
    await conn.close()


async def refused(settings_for: SettingsFor, dest: dict[str, Any],
                  error: type[FileFerryError]) -> str:
    with pytest.raises(error) as info:
        await connect(settings_for, dest)
    return str(info.value)


def other_key(tmp_path: Path, name: str = "other") -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


async def test_unknown_host_key_is_refused_with_the_offered_fingerprint(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, tmp_path: Path) -> None:
    message = await refused(settings_for, sftp_destination(
        sshd, remote_dir, known_hosts=str(tmp_path / "empty_known_hosts")), HostKeyUnknown)
    assert sshd.host_key_fingerprint in message
    assert "fileferry hostkey t --pin" in message


async def test_changed_host_key_is_refused(settings_for: SettingsFor, sshd: SshdServer,
                                           remote_dir: Path, tmp_path: Path) -> None:
    wrong = other_key(tmp_path).with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.shell_port} {wrong[0]} {wrong[1]}\n")
    message = await refused(settings_for, sftp_destination(sshd, remote_dir,
                                                           known_hosts=str(known)),
                            HostKeyMismatch)
    assert sshd.host_key_fingerprint in message and "--replace" in message


async def test_fingerprint_pin(settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path,
                               tmp_path: Path) -> None:
    empty = str(tmp_path / "none")
    await connect(settings_for, sftp_destination(
        sshd, remote_dir, known_hosts=empty, host_key_fingerprint=sshd.host_key_fingerprint))
    message = await refused(settings_for, sftp_destination(
        sshd, remote_dir, known_hosts=empty, host_key_fingerprint="SHA256:" + "A" * 43),
        HostKeyMismatch)
    assert sshd.host_key_fingerprint in message


async def test_wrong_key_is_an_authentication_failure(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, tmp_path: Path) -> None:
    message = await refused(settings_for, sftp_destination(
        sshd, remote_dir, private_key_file=str(other_key(tmp_path))), AuthenticationFailed)
    assert "private_key_file" in message


async def test_password_login(settings_for: SettingsFor, sshd: SshdServer,
                              remote_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sshd.password is None:
        pytest.skip("password login needs the root-only test user")
    base = sftp_destination(sshd, remote_dir)
    del base["private_key_file"]
    monkeypatch.setenv("T_PASSWORD", sshd.password)
    await connect(settings_for, {**base, "password": "${T_PASSWORD}"})
    monkeypatch.setenv("T_PASSWORD", sshd.password + "x")
    message = await refused(settings_for, {**base, "password": "${T_PASSWORD}"},
                            AuthenticationFailed)
    assert sshd.password not in message


async def test_unreachable_host(settings_for: SettingsFor, sshd: SshdServer,
                                remote_dir: Path) -> None:
    dest = sftp_destination(sshd, remote_dir)
    dest["url"] = f"sftp://{sshd.username}@127.0.0.1:{free_port()}/x/"
    message = await refused(settings_for, dest, EndpointUnavailable)
    assert "check the host and port" in message
