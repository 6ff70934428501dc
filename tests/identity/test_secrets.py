"""Destination credentials from Secrets Manager (moto's server), the environment, or a file."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.config import Settings
from fileferry.errors import ConfigError
from fileferry.identity.secrets import DestinationSecrets
from fileferry.sandbox.s3 import MotoServer
from fileferry.services import submit_transfer
from fileferry.transfer.engine import TransferRequest
from tests.conftest import FTP_PASSWORD, ftp_target, sftp_destination
from tests.helpers import files_under, seed
from tests.servers.sshd import SshdServer

SettingsFor = Callable[..., Settings]


async def no_sleep(seconds: float) -> None:
    return None


def secrets_client(moto: MotoServer) -> Any:
    return boto3.client("secretsmanager", endpoint_url=moto.endpoint_url,
                        region_name="us-east-1")


def make_secret(moto: MotoServer, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    answer = secrets_client(moto).create_secret(Name="ff/" + secrets.token_hex(6),
                                                SecretString=text)
    return str(answer["ARN"])


def sm_section(moto: MotoServer) -> dict[str, Any]:
    return {"endpoint_url": moto.endpoint_url, "region": "us-east-1"}


async def run(settings: Settings, bucket: str) -> Any:
    request = TransferRequest(sources=[f"s3://{bucket}/k.txt"], destination="t:",
                              requester="alice")
    return await submit_transfer(settings, request, sleep=no_sleep)


async def test_an_ftp_password_from_secrets_manager(
        request: pytest.FixtureRequest, settings_for: SettingsFor, moto: MotoServer, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"from a secret\n"})
    dest, local = ftp_target(request, "pyftpd")
    dest.pop("password")
    dest["secret_arn"] = make_secret(moto, {"username": "ignored", "password": FTP_PASSWORD})
    settings = settings_for({"t": dest}, secrets_manager=sm_section(moto))
    result = await run(settings, bucket)
    assert result.status == "SUCCEEDED", result.error
    assert files_under(local) == {"k.txt": b"from a secret\n"}
    assert DestinationSecrets(settings).reference("t") == f"secretsmanager:{dest['secret_arn']}"


async def test_an_ssh_key_from_secrets_manager(
        settings_for: SettingsFor, moto: MotoServer, sshd: SshdServer, remote_dir: Path,
        s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"keyed\n"})
    dest = sftp_destination(sshd, remote_dir)
    key = Path(dest.pop("private_key_file")).read_text()
    dest["secret_arn"] = make_secret(moto, {"private_key": key})
    settings = settings_for({"t": dest}, secrets_manager=sm_section(moto))
    result = await run(settings, bucket)
    assert result.status == "SUCCEEDED", result.error
    assert files_under(remote_dir) == {"k.txt": b"keyed\n"}


class Counting:
    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def get_secret_value(self, **kw: Any) -> Any:
        self.calls += 1
        return self.real.get_secret_value(**kw)


def test_secrets_are_cached_briefly(settings_for: SettingsFor, moto: MotoServer) -> None:
    arn = make_secret(moto, {"password": "pw-1"})
    settings = settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/", "secret_arn": arn}},
                            secrets_manager={**sm_section(moto), "cache_seconds": 60})
    counting, now = Counting(secrets_client(moto)), [0.0]
    port = DestinationSecrets(settings, client=counting, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(3):
        resolved = port.destination("t")
        assert resolved.password is not None and resolved.password.get_secret_value() == "pw-1"
    assert counting.calls == 1
    secrets_client(moto).put_secret_value(SecretId=arn, SecretString='{"password": "pw-2"}')
    now[0] = 61.0  # rotated secrets are picked up once the cache runs out
    resolved = port.destination("t")
    assert resolved.password is not None and resolved.password.get_secret_value() == "pw-2"
    assert counting.calls == 2


@pytest.mark.parametrize(("value", "message"), [
    (None, "destinations.t.secret_arn: no secret"),
    ({"user": "x"}, "holds neither a 'password' nor a 'private_key'"),
    ("not json: hunter2", "is not a JSON object"),
])
def test_secret_problems_name_the_key_never_the_value(settings_for: SettingsFor,
                                                      moto: MotoServer, value: Any,
                                                      message: str) -> None:
    arn = (make_secret(moto, value) if value is not None else
           "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf")
    settings = settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/", "secret_arn": arn}},
                            secrets_manager=sm_section(moto))
    with pytest.raises(ConfigError, match=message) as info:
        DestinationSecrets(settings).destination("t")
    assert "hunter2" not in str(info.value)


def test_password_env(settings_for: SettingsFor, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/",
                                   "password_env": "FF_TEST_PARTNER_PW"}})
    port = DestinationSecrets(settings)
    with pytest.raises(ConfigError, match="password_env: FF_TEST_PARTNER_PW is not set"):
        port.destination("t")
    monkeypatch.setenv("FF_TEST_PARTNER_PW", "from-env")
    resolved = port.destination("t")
    assert resolved.password is not None and resolved.password.get_secret_value() == "from-env"
    assert port.reference("t") == "env:FF_TEST_PARTNER_PW"


def test_credentials_file_must_be_the_owners_alone(settings_for: SettingsFor,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "partner.json"
    path.write_text(json.dumps({"password": "from-file"}))
    settings = settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/",
                                   "credentials_file": str(path)}})
    port = DestinationSecrets(settings)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"mode 0644.*chmod 600"):
        port.destination("t")
    path.chmod(0o600)
    resolved = port.destination("t")
    assert resolved.password is not None and resolved.password.get_secret_value() == "from-file"
    link = tmp_path / "link.json"
    link.symlink_to(path)
    linked = settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/",
                                 "credentials_file": str(link)}})
    with pytest.raises(ConfigError, match="symbolic link"):
        DestinationSecrets(linked).destination("t")
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            port.destination("t")


def test_one_source_of_credentials(settings_for: SettingsFor) -> None:
    with pytest.raises(ConfigError, match="password and password_env: give the credentials "
                                          "one way only"):
        settings_for({"t": {"url": "ftps://u@127.0.0.1:1/x/", "password": "x",
                            "password_env": "Y"}})
