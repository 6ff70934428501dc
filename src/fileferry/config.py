"""Settings: one YAML file, ``${ENV}`` expanded, validated with errors that name the key.

The file is ``--config``, else ``$FILEFERRY_CONFIG``, else ``./fileferry.yaml``.
The seed's ``transfer.*`` keys are kept with their names and defaults.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import pydantic
import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from fileferry.agent.settings import AgentSettings
from fileferry.automation.settings import PgpSettings, RouteSettings, check_routes
from fileferry.errors import ConfigError
from fileferry.identity.settings import PolicySettings, SecretsManagerSettings, SsoSettings
from fileferry.integrations.notify import NotificationsSettings
from fileferry.integrations.servicenow import ServiceNowSettings

__all__ = [
    "ApiSettings",
    "DestinationSettings",
    "DestinationUrl",
    "S3Settings",
    "Settings",
    "StoreSettings",
    "TransferSettings",
    "WorkflowSettings",
    "config_path",
    "load_settings",
    "parse_settings",
]

DEFAULT_STORE_URL = "sqlite:///~/.local/share/fileferry/fileferry.db"
DEFAULT_KNOWN_HOSTS = "~/.fileferry/known_hosts"
SUPPORTED_SCHEMES = ("sftp", "ftps", "ftp")
DEFAULT_PORTS = {"sftp": 22, "ftp": 21, "ftps": 21}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Model):
    endpoint_url: str | None = None
    region: str = "us-east-1"


MiB = 1024 * 1024


class TransferSettings(_Model):
    """Sizes take bytes or units: ``104857600``, ``100MiB``, ``1GiB``."""

    small_file_threshold: ByteSize = Field(default=ByteSize(100 * MiB), ge=0)
    large_file_threshold: ByteSize = Field(default=ByteSize(1024 * MiB), ge=1)
    default_chunk_size: ByteSize = Field(default=ByteSize(10 * MiB), ge=64 * 1024,
                                         le=256 * MiB)
    max_parallel_threads: int = Field(default=5, ge=1, le=64)
    enable_compression: bool = False
    memory_budget: ByteSize = Field(default=ByteSize(256 * MiB), ge=MiB)
    """Bytes read from S3 and not yet written, across every file in flight."""
    min_range_size: ByteSize = Field(default=ByteSize(64 * MiB), ge=64 * 1024)
    """Smallest slice of a large file sent as one parallel range (one streamed GET)."""
    max_ranges: int = Field(default=4, ge=1, le=32)
    """Parallel ranges per large file (SFTP)."""

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> TransferSettings:
        if self.small_file_threshold > self.large_file_threshold:
            raise ValueError("small_file_threshold must not exceed large_file_threshold")
        return self


class DestinationUrl(_Model):
    """A destination URL taken apart. ``path`` is absolute, or starts with ``~`` (login dir)."""

    scheme: str
    username: str | None
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"{self.scheme}://{user}{self.host}:{self.port}{path}"


def parse_destination_url(url: str) -> DestinationUrl:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(f"scheme {scheme or '(none)'!r} is not supported; use one of "
                         + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES))
    if not parts.hostname:
        raise ValueError("the URL has no host, e.g. sftp://user@host:22/inbound/")
    if parts.password is not None:
        raise ValueError("do not put a password in the URL; use the destination's "
                         "password key, e.g. password: ${PARTNER_PASSWORD}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError(f"invalid port: {exc}") from None
    raw = unquote(parts.path) or "/"
    path = raw[1:] if raw.startswith("/~") else raw
    return DestinationUrl(scheme=scheme, username=unquote(parts.username or "") or None,
                          host=parts.hostname, port=port, path=path)


class DestinationSettings(_Model):
    url: str
    password: SecretStr | None = None
    private_key_file: Path | None = None
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None
    verify: Literal["auto", "readback", "size", "none"] = "auto"
    on_conflict: Literal["fail", "overwrite", "rename"] = "fail"
    connect_timeout: float = Field(default=15.0, gt=0)
    retry_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff: float = Field(default=1.0, ge=0)
    """Seconds before the first retry; doubles each time, with jitter."""
    retry_max_backoff: float = Field(default=30.0, ge=0)
    max_sessions: int | None = Field(default=None, ge=1, le=64)
    """Concurrent connections to this partner (default: SFTP 4, FTP one per file + 1)."""
    bandwidth_limit: ByteSize | None = None
    """Bytes per second across all files to this destination, e.g. ``10MiB``."""
    # FTP and FTPS only
    implicit: bool = False
    ca_file: Path | None = None
    allow_insecure: bool = False
    passive: bool = True
    # Where the credentials come from instead of ``password`` (identity/secrets.py)
    secret_arn: str | None = None
    """AWS Secrets Manager secret: JSON {"password": ..., "private_key": ...}."""
    password_env: str | None = None
    """Name of an environment variable holding the password (read at use, not at load)."""
    credentials_file: Path | None = None
    """JSON file like the secret; refused unless only its owner can read it (0600/0400)."""
    private_key: SecretStr | None = None
    """Key text, filled in from a secret at use; in YAML prefer private_key_file."""
    # every file sent here is encrypted to the partner's OpenPGP key (routes may override)
    encryption: PgpSettings | None = None

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        parse_destination_url(value)
        return value

    @field_validator("host_key_fingerprint")
    @classmethod
    def _fingerprint_form(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("SHA256:"):
            raise ValueError("must look like SHA256:... (as `ssh-keygen -lf` or "
                             "`fileferry hostkey NAME` prints it)")
        return value

    @model_validator(mode="after")
    def _options_fit_the_scheme(self) -> DestinationSettings:
        scheme = self.parsed.scheme
        misplaced = [key for key, wrong in (
            ("implicit", self.implicit and scheme != "ftps"),
            ("ca_file", self.ca_file is not None and scheme != "ftps"),
            ("allow_insecure", self.allow_insecure and scheme != "ftp"),
            ("passive", not self.passive and scheme == "sftp"),
            ("private_key_file", self.private_key_file is not None and scheme != "sftp"),
            ("host_key_fingerprint", self.host_key_fingerprint is not None
             and scheme != "sftp"),
        ) if wrong]
        if misplaced:
            raise ValueError(f"{', '.join(misplaced)} do(es) not apply to {scheme}:// "
                             "destinations")
        return self

    @field_validator("private_key_file", "known_hosts", "ca_file", "credentials_file")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @model_validator(mode="after")
    def _one_credential_source(self) -> DestinationSettings:
        given = [key for key in ("password", "secret_arn", "password_env", "credentials_file")
                 if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"{' and '.join(given)}: give the credentials one way only")
        return self

    @property
    def parsed(self) -> DestinationUrl:
        return parse_destination_url(self.url)

    @property
    def known_hosts_path(self) -> Path:
        """Where pinned keys are read from and ``hostkey --pin`` writes to."""
        return self.known_hosts or Path(DEFAULT_KNOWN_HOSTS).expanduser()


class StoreSettings(_Model):
    url: str = DEFAULT_STORE_URL

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        # Imported here: the store package is not needed to read a configuration.
        from fileferry.store.urls import parse_store_url

        parse_store_url(value)  # its ValueError says the accepted forms
        return value


class WorkflowSettings(_Model):
    """Where transfers run: the embedded runner, or the deployed Step Functions machine."""

    engine: Literal["embedded", "stepfunctions"] = "embedded"
    state_machine_arn: str | None = None
    """The SAM stack's ``StateMachineArn`` output (``engine: stepfunctions``)."""
    endpoint_url: str | None = None
    """Another Step Functions endpoint (a VPC endpoint, or a local stand-in)."""
    poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between ``DescribeExecution`` calls while ``transfer`` waits."""

    @model_validator(mode="after")
    def _arn_for_stepfunctions(self) -> WorkflowSettings:
        arn = self.state_machine_arn
        if arn is not None and not re.fullmatch(r"arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:"
                                                r"stateMachine:[A-Za-z0-9_-]+", arn):
            raise ValueError("state_machine_arn must look like arn:aws:states:REGION:ACCOUNT:"
                             "stateMachine:NAME (the stack's StateMachineArn output)")
        if self.engine == "stepfunctions" and arn is None:
            raise ValueError("engine: stepfunctions needs state_machine_arn (the SAM stack's "
                             "StateMachineArn output)")
        return self


class ApiSettings(_Model):
    """``fileferry serve``: where it listens, its workers, and its bearer token.

    Without ``token`` the server uses ``token_file`` (default: ``api-token`` beside a
    SQLite store, else ``~/.config/fileferry/api-token``), generating it (mode 0600)
    when it does not exist.
    """

    token: SecretStr | None = None
    token_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=4, ge=1, le=64)
    """Transfers the server runs at once; more wait in its queue."""

    @field_validator("token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 24`); "
                             "or leave it out and the server generates one")
        return value

    @field_validator("token_file")
    @classmethod
    def _expand_token_file(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class Settings(_Model):
    s3: S3Settings = S3Settings()
    transfer: TransferSettings = TransferSettings()
    destinations: dict[str, DestinationSettings] = Field(default_factory=dict)
    store: StoreSettings = StoreSettings()
    notifications: NotificationsSettings = Field(default_factory=NotificationsSettings)
    servicenow: ServiceNowSettings | None = None
    sso: SsoSettings | None = None
    """OIDC sign-in; when set, FileFerry runs in server mode (policies deny by default)."""
    policies: list[PolicySettings] = Field(default_factory=list)
    secrets_manager: SecretsManagerSettings = Field(default_factory=SecretsManagerSettings)
    workflow: WorkflowSettings = WorkflowSettings()
    api: ApiSettings = ApiSettings()
    agent: AgentSettings = Field(default_factory=AgentSettings)
    """The chat agent: Bedrock when ``agent.model_id`` is set, else the offline planner."""

    routes: dict[str, RouteSettings] = Field(default_factory=dict)

    @field_validator("policies")
    @classmethod
    def _policy_names(cls, value: list[PolicySettings]) -> list[PolicySettings]:
        names = [p.name for p in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"policy names must be unique: {', '.join(twice)}")
        return value
    @model_validator(mode="after")
    def _routes_known(self) -> Settings:
        check_routes(self.routes, set(self.destinations))
        return self

    @field_validator("destinations")
    @classmethod
    def _names(cls, value: dict[str, DestinationSettings]) -> dict[str, DestinationSettings]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(f"destination name {name!r} may hold only letters, "
                                 "digits, '_', '.' and '-'")
        return value


def _expand_env(node: Any, where: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        value = os.environ.get(var)
        if value is None:
            if default is None:
                raise ConfigError(f"{where}: environment variable {var} is not set; "
                                  f"export it or write ${{{var}:-default}}")
            return default
        return value

    return _ENV_REF.sub(sub, node)


def _describe(error: pydantic.ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the README's configuration reference)"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def parse_settings(data: Any, source: str = "configuration") -> Settings:
    """Validate an already-parsed YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return Settings.model_validate(_expand_env(data, ""))
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    env = os.environ.get("FILEFERRY_CONFIG")
    return Path(env).expanduser() if env else Path("fileferry.yaml")


def load_settings(explicit: Path | None = None) -> Settings:
    """Load the configuration file; every problem is a ``ConfigError`` naming the key."""
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no configuration file at {path}: pass --config FILE, set "
                          "FILEFERRY_CONFIG, or create ./fileferry.yaml "
                          "(`fileferry demo` writes an example)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: "
                          f"{getattr(exc, 'problem', exc)}") from None
    return parse_settings(data, str(path))
