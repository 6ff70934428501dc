"""Unit tests of ``fileferry.config``: env expansion, key-naming errors, file lookup, defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from fileferry.config import (
    SUPPORTED_SCHEMES,
    Settings,
    TransferSettings,
    config_path,
    load_settings,
    parse_settings,
)
from fileferry.errors import ConfigError

MiB = 1024 * 1024
README = Path(__file__).resolve().parents[1] / "README.md"
GOOD_URL = "sftp://acme@sftp.example.com:22/inbound/"


def config(**dest: Any) -> dict[str, Any]:
    """A minimal document with one destination ``acme`` (``dest`` overrides its keys)."""
    return {"destinations": {"acme": {"url": GOOD_URL, **dest}}}


def refusal(data: Any) -> str:
    """The message of the ``ConfigError`` that ``parse_settings(data)`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    return str(info.value)


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


# -- ${VAR} and ${VAR:-default} ------------------------------------------------------------


def test_env_var_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_PASSWORD", "s3cret-value")
    monkeypatch.setenv("ACME_HOST", "files.acme.example")
    settings = parse_settings(config(url="sftp://acme@${ACME_HOST}:2222/in/",
                                     password="${ACME_PASSWORD}"))
    dest = settings.destinations["acme"]
    assert dest.password is not None
    assert dest.password.get_secret_value() == "s3cret-value"
    assert dest.parsed.host == "files.acme.example"
    assert dest.parsed.port == 2222


def test_default_used_when_var_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FF_TEST_REGION", raising=False)
    monkeypatch.delenv("FF_TEST_ENDPOINT", raising=False)
    settings = parse_settings({"s3": {"region": "${FF_TEST_REGION:-eu-west-1}",
                                      "endpoint_url": "${FF_TEST_ENDPOINT:-}"}})
    assert settings.s3.region == "eu-west-1"
    assert settings.s3.endpoint_url == ""


def test_set_var_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FF_TEST_REGION", "ap-south-1")
    settings = parse_settings({"s3": {"region": "${FF_TEST_REGION:-eu-west-1}"}})
    assert settings.s3.region == "ap-south-1"


def test_expansion_in_numbers_and_several_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FF_TEST_THREADS", "7")
    monkeypatch.setenv("FF_TEST_USER", "bob")
    monkeypatch.setenv("FF_TEST_HOST", "h.example")
    settings = parse_settings({"transfer": {"max_parallel_threads": "${FF_TEST_THREADS}"},
                               **config(url="sftp://${FF_TEST_USER}@${FF_TEST_HOST}/x/")})
    assert settings.transfer.max_parallel_threads == 7
    assert settings.destinations["acme"].parsed.username == "bob"
    assert settings.destinations["acme"].parsed.host == "h.example"


def test_missing_env_var_names_key_path_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_PASSWORD_UNSET", raising=False)
    message = refusal(config(password="${ACME_PASSWORD_UNSET}"))
    assert "destinations.acme.password" in message
    assert "ACME_PASSWORD_UNSET" in message


def test_missing_env_var_in_load_settings(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_KEY_UNSET", raising=False)
    path = write(tmp_path / "f.yaml", config(private_key_file="${ACME_KEY_UNSET}"))
    with pytest.raises(ConfigError, match=r"destinations\.acme\.private_key_file.*ACME_KEY_UNSET"):
        load_settings(path)


# -- errors that name the key ----------------------------------------------------------------


@pytest.mark.parametrize(("data", "key"), [
    ({"transfer": {"max_paralel_threads": 3}}, "transfer.max_paralel_threads"),
    (config(pasword="x"), "destinations.acme.pasword"),
    ({"s3": {"endpoint": "http://x"}}, "s3.endpoint"),
    ({"destination": {}}, "destination"),
])
def test_unknown_key_is_named(data: dict[str, Any], key: str) -> None:
    message = refusal(data)
    assert re.search(rf"(^|[ ;]){re.escape(key)}: unknown key", message), message


def test_invalid_verify_names_key() -> None:
    message = refusal(config(verify="sometimes"))
    assert "destinations.acme.verify" in message
    for allowed in ("auto", "readback", "size", "none"):
        assert allowed in message


def test_invalid_on_conflict_names_key() -> None:
    assert "destinations.acme.on_conflict" in refusal(config(on_conflict="skip"))


def test_password_in_url_refused_without_echoing_it() -> None:
    message = refusal(config(url="sftp://acme:hunter2secret@sftp.example.com/in/"))
    assert "destinations.acme.url" in message
    assert "password" in message
    assert "hunter2secret" not in message


@pytest.mark.parametrize("url", ["http://example.com/in/", "scp://acme@example.com/in/",
                                 "smb://example.com/share/", "sftp.example.com/in/"])
def test_unsupported_scheme_refused(url: str) -> None:
    message = refusal(config(url=url))
    assert "destinations.acme.url" in message
    assert "not supported" in message
    for scheme in SUPPORTED_SCHEMES:  # the message says what would work
        assert f"{scheme}://" in message


def test_url_without_host_refused() -> None:
    assert "destinations.acme.url" in refusal(config(url="sftp:///inbound/"))


def test_fingerprint_without_sha256_prefix_refused() -> None:
    message = refusal(config(host_key_fingerprint="MD5:16:27:ac:a5:76:28:2d:36:63:1b"))
    assert "destinations.acme.host_key_fingerprint" in message
    assert "SHA256:" in message


def test_fingerprint_with_sha256_prefix_accepted() -> None:
    fp = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
    assert parse_settings(config(host_key_fingerprint=fp)).destinations["acme"] \
        .host_key_fingerprint == fp


def test_small_threshold_above_large_refused() -> None:
    message = refusal({"transfer": {"small_file_threshold": 2 * MiB,
                                    "large_file_threshold": MiB}})
    assert "transfer" in message
    assert "small_file_threshold" in message
    assert "large_file_threshold" in message


def test_equal_thresholds_accepted() -> None:
    settings = parse_settings({"transfer": {"small_file_threshold": MiB,
                                            "large_file_threshold": MiB}})
    assert settings.transfer.small_file_threshold == settings.transfer.large_file_threshold


@pytest.mark.parametrize(("key", "value"), [("max_parallel_threads", 0),
                                            ("default_chunk_size", 1024),
                                            ("small_file_threshold", -1)])
def test_out_of_range_transfer_values_name_key(key: str, value: int) -> None:
    assert f"transfer.{key}" in refusal({"transfer": {key: value}})


def test_bad_destination_name_refused() -> None:
    data = {"destinations": {"acme corp": {"url": GOOD_URL}}}
    assert "acme corp" in refusal(data)


def test_top_level_must_be_mapping() -> None:
    assert "mapping" in refusal(["not", "a", "mapping"])


# -- where the file is found -------------------------------------------------------------------


@pytest.fixture
def three_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """``explicit``, ``env`` and ``cwd`` configs, told apart by max_parallel_threads 1/2/3."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("FILEFERRY_CONFIG", raising=False)
    paths = {"explicit": tmp_path / "explicit.yaml", "env": tmp_path / "env.yaml",
             "cwd": cwd / "fileferry.yaml"}
    for threads, path in enumerate(paths.values(), start=1):
        write(path, {"transfer": {"max_parallel_threads": threads}})
    return paths


def threads_loaded(explicit: Path | None = None) -> int:
    return load_settings(explicit).transfer.max_parallel_threads


def test_explicit_config_wins(three_configs: dict[str, Path],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEFERRY_CONFIG", str(three_configs["env"]))
    assert config_path(three_configs["explicit"]) == three_configs["explicit"]
    assert threads_loaded(three_configs["explicit"]) == 1


def test_env_config_used_without_explicit(three_configs: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEFERRY_CONFIG", str(three_configs["env"]))
    assert config_path() == three_configs["env"]
    assert threads_loaded() == 2


def test_cwd_config_is_the_fallback(three_configs: dict[str, Path]) -> None:
    assert config_path().resolve() == three_configs["cwd"].resolve()
    assert threads_loaded() == 3


def test_empty_env_var_falls_back_to_cwd(three_configs: dict[str, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILEFERRY_CONFIG", "")
    assert threads_loaded() == 3


def test_explicit_path_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "home.yaml", {"transfer": {"max_parallel_threads": 9}})
    assert threads_loaded(Path("~/home.yaml")) == 9


def test_missing_file_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FILEFERRY_CONFIG", raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "fileferry.yaml" in message
    assert "--config" in message
    assert "FILEFERRY_CONFIG" in message


def test_missing_explicit_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_settings(missing)


def test_directory_instead_of_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path)


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml",
                 "transfer:\n  max_parallel_threads: 5\n chunk: 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "line 3" in message
    assert str(path) in message


def test_load_error_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.yaml", config(verfy="auto"))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "destinations.acme.verfy" in str(info.value)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "empty.yaml", ""))
    assert settings == Settings()


# -- defaults -----------------------------------------------------------------------------------


def test_seed_defaults() -> None:
    for transfer in (TransferSettings(), parse_settings({}).transfer,
                     parse_settings(None).transfer, parse_settings({"transfer": {}}).transfer):
        assert transfer.small_file_threshold == 100 * MiB
        assert transfer.large_file_threshold == 1024 * MiB
        assert transfer.default_chunk_size == 10 * MiB
        assert transfer.max_parallel_threads == 5
        assert transfer.enable_compression is False


def test_destination_defaults() -> None:
    dest = parse_settings(config()).destinations["acme"]
    assert dest.verify == "auto"
    assert dest.on_conflict == "fail"
    assert dest.password is None
    assert dest.parsed.port == 22
    assert dest.parsed.path == "/inbound/"


# -- runnable docs: the README's configuration example loads --------------------------------

_FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def readme_config_blocks(text: str) -> list[str]:
    return [b for b in _FENCE.findall(text)
            if re.search(r"^\s*(destinations|notifications|servicenow|api|store):", b,
                         re.MULTILINE)]


def placeholder(var: str) -> str:
    """A value of the right shape for an env var the README example references."""
    upper = var.upper()
    if "FINGERPRINT" in upper:
        return "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
    if "PORT" in upper:
        return "2222"
    if "URL" in upper or "ENDPOINT" in upper:
        return "http://127.0.0.1:9000"
    return "readme-example-value"


def test_readme_block_extraction() -> None:
    text = ("intro\n```yaml\ndestinations:\n  a: {}\n```\n"
            "```yaml\ns3: {}\n```\n```bash\ndestinations:\n```\n")
    assert readme_config_blocks(text) == ["destinations:\n  a: {}\n"]


@pytest.mark.skipif(not README.exists(), reason="README.md is not written yet")
def test_readme_configuration_examples_load(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = readme_config_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```yaml block with destinations:"
    for block in blocks:
        for var, default in _ENV_REF.findall(block):
            if not default:
                monkeypatch.setenv(var, placeholder(var))
        settings = parse_settings(yaml.safe_load(block), "README.md example")
        if "destinations:" in block:
            assert settings.destinations, f"the README example configures nothing:\n{block}"
        elif block.lstrip().startswith("api:"):
            assert settings.api.token is not None, block
        elif block.startswith("store:"):
            assert settings.store.url != Settings().store.url, block
        else:
            assert settings.notifications.channels or settings.servicenow, block
