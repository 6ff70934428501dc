"""Settings on Lambda: the document from SSM, secrets from Secrets Manager (moto's server),
each function reading only the secret sections it needs."""

from __future__ import annotations

import re
import secrets
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from fileferry.aws.settings import load_lambda_settings
from fileferry.errors import ConfigError

DOCUMENT = """
destinations:
  partner:
    url: sftp://ferry@sftp.partner.example/inbound/
    password: ${{aws-secret:{prefix}destinations/partner#password}}
    private_key_file: ${{aws-secret-file:{prefix}destinations/partner#private_key}}
    host_key_fingerprint: SHA256:2Cn3ZEu1HQ6iJNBbCKUgBGNhPxeN0yZtg8mIYmrMqLc
servicenow:
  instance_url: https://acme.service-now.com
  username: svc_fileferry
  password: ${{aws-secret:{prefix}servicenow}}
store:
  url: dynamodb://?region=us-east-1&table_prefix={table_prefix}
"""
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"


@pytest.fixture
def aws(moto: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    monkeypatch.setenv("FILEFERRY_CONFIG_MAX_AGE", "0")
    for name in ("FILEFERRY_CONFIG_JSON", "FILEFERRY_CONFIG_SSM", "FILEFERRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    prefix = f"ff-{secrets.token_hex(3)}/"
    clients = {"ssm": boto3.client("ssm", endpoint_url=moto.endpoint_url,
                                   region_name="us-east-1"),
               "secrets": boto3.client("secretsmanager", endpoint_url=moto.endpoint_url,
                                       region_name="us-east-1")}
    name = f"/{prefix}config"
    clients["ssm"].put_parameter(Name=name, Type="SecureString", Value=DOCUMENT.format(
        prefix=prefix, table_prefix="FF" + secrets.token_hex(2)))
    monkeypatch.setenv("FILEFERRY_CONFIG_SSM", name)
    return {"prefix": prefix, **clients}


def test_a_function_gets_its_sections_with_the_secrets_resolved(aws: dict[str, Any]) -> None:
    aws["secrets"].create_secret(Name=aws["prefix"] + "destinations/partner",
                                 SecretString='{"password": "s3cr3t", "private_key": '
                                              + repr(KEY).replace("'", '"') + "}")
    settings = load_lambda_settings(("destinations",))
    partner = settings.destinations["partner"]
    assert partner.password is not None and partner.password.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)  # secrets stay SecretStr
    key_file = partner.private_key_file
    assert key_file is not None and key_file.read_text() == KEY + "\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    # the ServiceNow secret does not exist: a function without that section never asks
    assert settings.servicenow is None
    assert settings.store.url.startswith("dynamodb://")


def test_a_missing_secret_is_named_with_what_to_do(aws: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"secret '.*servicenow'.*role may read it") as caught:
        load_lambda_settings(("servicenow",))
    assert "Secrets Manager" in str(caught.value)


def test_a_json_secret_without_the_key(aws: dict[str, Any]) -> None:
    aws["secrets"].create_secret(Name=aws["prefix"] + "destinations/partner",
                                 SecretString='{"user": "x"}')
    with pytest.raises(ConfigError, match=r"not a JSON object with the key 'password'"):
        load_lambda_settings(("destinations",))


def test_without_configuration_the_error_says_where_to_put_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FILEFERRY_CONFIG_JSON", "FILEFERRY_CONFIG_SSM", "FILEFERRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="FILEFERRY_CONFIG_SSM"):
        load_lambda_settings()
    monkeypatch.setenv("FILEFERRY_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read FILEFERRY_CONFIG"):
        load_lambda_settings()
    monkeypatch.setenv("FILEFERRY_CONFIG_JSON", "[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_lambda_settings()
    monkeypatch.setenv("FILEFERRY_CONFIG_JSON", '{"transfer": {"max_parallel_threads": 0}}')
    with pytest.raises(ConfigError, match=r"transfer\.max_parallel_threads"):
        load_lambda_settings()


def test_the_deploy_guides_configuration_examples_load() -> None:
    """docs/deploy.md's YAML blocks are valid configurations (secret references unresolved)."""
    from fileferry.config import parse_settings

    text = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text("utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    lambda_doc, cli = (parse_settings(yaml.safe_load(b)) for b in blocks)
    assert set(lambda_doc.destinations) == {"acme", "globex"}
    assert cli.workflow.engine == "stepfunctions"
    assert lambda_doc.store.url == cli.store.url
