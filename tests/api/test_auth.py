"""Never open by default: every route but /healthz needs the bearer token."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from fileferry.api.auth import api_token, default_token_file
from fileferry.api.server import BackgroundServer
from fileferry.config import parse_settings
from fileferry.errors import ConfigError
from tests.api.conftest import TOKEN

GUARDED = [("GET", "/api/transfers"), ("POST", "/api/transfers"),
           ("GET", "/api/transfers/tr-0000000000000000"),
           ("POST", "/api/transfers/tr-0000000000000000/cancel"),
           ("GET", "/api/transfers/tr-0000000000000000/events"), ("GET", "/api/events"),
           ("GET", "/api/destinations"), ("GET", "/metrics"), ("GET", "/openapi.json")]


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token-of-enough-length",
                                    f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_without_the_token_every_route_is_401(api_server: BackgroundServer, method: str,
                                               path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = httpx.request(method, api_server.url + path, headers=headers, json={})
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["type"] == "Unauthorized"


def test_healthz_is_open_and_says_nothing_else(api_server: BackgroundServer) -> None:
    answer = httpx.get(api_server.url + "/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_openapi_lists_the_routes_and_schemas(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/api/transfers", "/api/transfers/{transfer_id}",
            "/api/transfers/{transfer_id}/cancel", "/api/transfers/{transfer_id}/events",
            "/healthz", "/metrics", "/api/events"} <= set(doc["paths"])
    assert {"TransferCreate", "TransferPublic", "TransfersPublic"} <= \
        set(doc["components"]["schemas"])


def test_the_dashboard_shell_holds_no_data(api_server: BackgroundServer) -> None:
    page = httpx.get(api_server.url + "/")
    assert page.status_code == 200 and "app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(api_server.url + "/static/app.js").status_code == 200


def test_a_generated_token_file_is_private_and_kept(tmp_path: Path) -> None:
    settings = parse_settings({"store": {"url": f"sqlite:///{tmp_path}/db/fileferry.db"}})
    first = api_token(settings)
    assert first.generated and first.path == tmp_path / "db" / "api-token"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert first.path.read_text().strip() == first.value and len(first.value) >= 32
    again = api_token(settings)
    assert again.value == first.value and not again.generated


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 40)
    path.chmod(0o644)
    settings = parse_settings({"api": {"token_file": str(path)}})
    assert default_token_file(settings) == path
    with pytest.raises(ConfigError, match="chmod 600"):
        api_token(settings)


def test_a_short_configured_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"api\.token: .*16 characters"):
        parse_settings({"api": {"token": "short"}})


def test_the_configured_token_wins_and_writes_no_file(tmp_path: Path) -> None:
    settings = parse_settings({"store": {"url": f"sqlite:///{tmp_path}/fileferry.db"},
                               "api": {"token": TOKEN}})
    token = api_token(settings)
    assert token.value == TOKEN and token.path is None
    assert not (tmp_path / "api-token").exists()
